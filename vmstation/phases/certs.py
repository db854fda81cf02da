"""Certificates: their expiry checked before a deploy or an upgrade, and renewed on demand.

    certs.expiry        on each kubeadm control plane that has one: `kubeadm certs check-expiration`; a warning
                        within 30 days, a failure (which blocks what needs it) when one has expired, since
                        a deploy would leave an expired control plane behind; skipped before `kubeadm init`
    certs.renew         `kubeadm certs renew all`, then each control-plane static pod restarted (its manifest
                        moved away and back, as kubernetes.io says), then the API server waited for
    certs.kubeconfig    admin.conf fetched again (0600): the renewal made a new one
    certs.rke2-rotate   RKE2 servers: `rke2 certificate rotate` with the service stopped, then started

Parsing and commands: vmstation.certs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from vmstation import certs, rhel
from vmstation.context import HostContext
from vmstation.errors import HostError
from vmstation.graph import Phase, Target, hosts_with_role
from vmstation.operations import CHANGE, OK, SKIP, WARN, Check, Command, Operation, Step, wait_until
from vmstation.phases import debian

ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBECTL = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"
NOT_INITIALISED = "no-control-plane"


def _expiration_probe() -> str:
    """kubeadm's own expiration table, or NOT_INITIALISED where no control plane was made yet."""
    return f"if [ -e {ADMIN_CONF} ]; then {certs.kubeadm_check_command()}; else echo {NOT_INITIALISED}; fi"


@dataclass(frozen=True)
class CertificateExpiry(Operation):
    """The control plane's certificates judged: ok, a warning within ``warn_days``, a failure once expired."""

    warn_days: int = certs.WARN_DAYS
    now: datetime | None = None          # tests fix the moment; None: the time of the decision

    @property
    def label(self) -> str:
        return "certificate expiry"

    def probe(self, detail: bool) -> str:
        return _expiration_probe()

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        if fact.strip() == NOT_INITIALISED:
            return Step(self.label, SKIP, "no control plane yet (kubeadm init makes the certificates)")
        verdict, sentence = certs.verdict(certs.parse_check_expiration(fact),
                                          self.now or datetime.now(timezone.utc), self.warn_days)
        if verdict == "expired":
            raise HostError("", f"the control plane's certificates have expired ({sentence}); a deploy or an "
                                "upgrade would leave it so")
        if verdict in ("warn", "unknown"):
            return Step(self.label, WARN, sentence)
        return Step(self.label, OK, sentence)


@dataclass(frozen=True)
class Renewal(Operation):
    """``kubeadm certs renew all`` and the static pods restarted; says which certificates expire when."""

    @property
    def label(self) -> str:
        return "renew every kubeadm certificate and restart the control-plane static pods"

    def probe(self, detail: bool) -> str:
        return _expiration_probe()

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        if fact.strip() == NOT_INITIALISED:
            return Step(self.label, SKIP, "no control plane here (kubeadm init has not run)")
        _verdict, sentence = certs.verdict(certs.parse_check_expiration(fact), datetime.now(timezone.utc))
        return Step(self.label, CHANGE, f"now: {sentence}", deadline=600,
                    commands=(certs.kubeadm_renew_command(), certs.restart_static_pods_command()))


def expiry(ctx: HostContext):
    yield CertificateExpiry()


def renew(ctx: HostContext):
    yield Renewal()
    yield _if_there(ADMIN_CONF, wait_until(f"{KUBECTL} get --raw=/readyz",
                                           "the API server to answer with its new certificates", timeout=300))


def rke2_rotate(ctx: HostContext):
    yield Command(certs.rke2_rotate_command(), "rke2 certificate rotate (service stopped, then started)",
                  onlyif=f"[ -e {rhel.RKE2_KUBECONFIG} ]", deadline=600)
    yield _if_there(rhel.RKE2_KUBECONFIG, wait_until(
        f"{rhel.RKE2_KUBECTL} --kubeconfig {rhel.RKE2_KUBECONFIG} get --raw=/readyz", "the RKE2 API server to answer",
        timeout=300))


def _if_there(path: str, wait: Check) -> Check:
    """``wait`` only where there is a cluster to wait for (a host never deployed has nothing to renew)."""
    return Check(f"if [ -e {path} ]; then {wait.script}; fi", wait.description, deadline=wait.deadline)


PHASES = [
    Phase("certs.expiry", "control-plane certificates not expired (warn within 30 days)",
          hosts_with_role("kubeadm", "control-plane"), expiry),
    Phase("certs.renew", "kubeadm certs renew all, static pods restarted", hosts_with_role("kubeadm", "control-plane"),
          renew),
    Phase("certs.kubeconfig", "admin kubeconfig fetched again (0600)", hosts_with_role("kubeadm", "control-plane"),
          debian.kubeconfig, needs=("certs.renew",)),
    Phase("certs.rke2-rotate", "rke2 certificate rotate on each server", hosts_with_role("rke2", "server"),
          rke2_rotate),
]

TARGETS = [
    Target("certs-renew", "renew the kubeadm certificates (static pods restarted, admin.conf fetched again)",
           ("certs.kubeconfig",)),
    Target("certs-rotate-rke2", "rotate RKE2's certificates, one server at a time", ("certs.rke2-rotate",)),
]
