"""Certificates: their expiry checked before a deploy or an upgrade, and renewed on demand.

    certs.expiry        on each kubeadm control plane that has one: `kubeadm certs check-expiration`; a warning
                        within 30 days, a failure (which blocks what needs it) when one has expired, since
                        a deploy would leave an expired control plane behind; skipped before `kubeadm init`
    certs.rke2-expiry   the same on each RKE2 server, read from its certificate files with openssl, ahead of
                        deploy-rke2 (upgrade-rke2's preflight asks it too); skipped before rke2-server's first
                        start, a warning where the deploy is what starts a stopped rke2-server (see below)
    certs.renew         `kubeadm certs renew all`, then each control-plane static pod restarted (its manifest
                        moved away and back, as kubernetes.io says), then the API server waited for
    certs.kubeconfig    admin.conf fetched again (0600): the renewal made a new one
    certs.rke2-rotate   RKE2 servers: `rke2 certificate rotate` with the service stopped, then started

Parsing and commands: vmstation.certs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

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


def _rke2_enddates_probe() -> str:
    """The expiry of each RKE2 server certificate, or NOT_INITIALISED before rke2-server first started (it makes
    them then)."""
    return (f"if ls {certs.RKE2_TLS_DIR}/*.crt >/dev/null 2>&1; then {certs.rke2_enddates_command()}; "
            f"else echo {NOT_INITIALISED}; fi")


@dataclass(frozen=True)
class ExpiryReading:
    """How one kind of control plane's certificate expiry is read, and what the operator is told about it."""

    subject: str                                        # "the control plane's", "the RKE2 server's"
    kind: str                                           # the cluster's: its verdicts name `vmstation certs renew X`
    probe: str                                          # prints the expiry, or NOT_INITIALISED before the first install
    parse: Callable[[str], list[certs.Certificate]]
    not_yet: str                                        # why there is nothing to judge before the first install
    remedy: str = ""                                    # said after the verdict's `vmstation certs renew X`


KUBEADM = ExpiryReading("the control plane's", "kubeadm", _expiration_probe(), certs.parse_check_expiration,
                        "no control plane yet (kubeadm init makes the certificates)")
# docs.rke2.io "Certificate Management": "Any certificates that are expired or within 120 days of expiring are
# automatically renewed every time RKE2 starts" (90 days before the May 2025 releases); `rke2 certificate rotate`
# (what `vmstation certs renew rke2` runs on RKE2 servers) makes new ones with the service stopped.
RKE2 = ExpiryReading("the RKE2 server's", "rke2", _rke2_enddates_probe(), certs.parse_enddates,
                     "no RKE2 server certificates yet (rke2-server makes them when it first starts)",
                     remedy=", or restart rke2-server on this server: RKE2 renews expired certificates whenever "
                            "it starts")


@dataclass(frozen=True)
class CertificateExpiry(Operation):
    """The control plane's certificates judged: ok, a warning within ``warn_days``, a failure once expired.

    ``started_when_stopped`` names the service the run starts where it is not running (deploy-rke2's rke2-server):
    RKE2 renews expired certificates when it starts, so there an expired one is a warning, not a refusal.
    ``refusal`` says why the run cannot go on over an expired control plane.
    """

    reading: ExpiryReading = KUBEADM
    warn_days: int = certs.WARN_DAYS
    now: datetime | None = None          # tests fix the moment; None: the time of the decision
    started_when_stopped: str = ""
    refusal: str = "a deploy or an upgrade would leave it so"

    @property
    def label(self) -> str:
        return "certificate expiry"

    def probe(self, detail: bool) -> str:
        if not self.started_when_stopped:
            return self.reading.probe
        return f"{self.reading.probe}; echo \"service=$(systemctl is-active {self.started_when_stopped})\""

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        if NOT_INITIALISED in fact.split():
            return Step(self.label, SKIP, self.reading.not_yet)
        verdict, sentence = certs.verdict(self.reading.parse(fact), self.now or datetime.now(timezone.utc),
                                          self.warn_days, kind=self.reading.kind)
        if verdict == "expired" and self.started_when_stopped and "service=active" not in fact.split():
            return Step(self.label, WARN, f"{sentence}; {self.started_when_stopped} is not running: this run "
                                          "starts it, and RKE2 renews expired certificates when it starts")
        if verdict == "expired":
            raise HostError("", f"{self.reading.subject} certificates have expired ({sentence}"
                                f"{self.reading.remedy}); {self.refusal}")
        if verdict in ("warn", "unknown"):
            return Step(self.label, WARN, sentence + (self.reading.remedy if verdict == "warn" else ""))
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
        _verdict, sentence = certs.verdict(certs.parse_check_expiration(fact), datetime.now(timezone.utc),
                                           kind="kubeadm")
        return Step(self.label, CHANGE, f"now: {sentence}", deadline=600,
                    commands=(certs.kubeadm_renew_command(), certs.restart_static_pods_command()))


def expiry(ctx: HostContext):
    yield CertificateExpiry()


# Why a deploy refuses an expired RKE2 server that runs: deploy-rke2 restarts rke2-server only when its
# config.yaml changed (rke2.configure) and starts it only where it is stopped (rke2.start, rke2.join-start), and
# RKE2 renews expired certificates only when it starts (docs.rke2.io "Certificate Management"). So a deploy over a
# running server would leave the certificates expired, and its monitoring and Ready checks would fail on them;
# over a stopped one, the deploy's own start renews them (a warning).
RKE2_DEPLOY_REFUSAL = ("this deploy restarts rke2-server only when its config.yaml changes, so it would leave "
                       "them expired")


def rke2_expiry(ctx: HostContext):
    yield CertificateExpiry(RKE2, started_when_stopped="rke2-server", refusal=RKE2_DEPLOY_REFUSAL)


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
    Phase("certs.rke2-expiry", "RKE2 server certificates not expired (warn within 30 days)",
          hosts_with_role("rke2", "server"), rke2_expiry),
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
