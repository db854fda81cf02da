"""Control-plane certificates: when they expire, and the commands that renew them.

kubeadm's certificates last one year from ``kubeadm init`` (its CA ten); ``kubeadm upgrade apply`` renews
them, and ``kubeadm certs renew all`` does so on demand, after which the control-plane static pods must be
restarted to load them and admin.conf is new ("Certificate Management with kubeadm", kubernetes.io:
"you must restart the control plane Pods ... temporarily remove their manifest file from
/etc/kubernetes/manifests/ and wait 20 seconds"). RKE2 renews its own on start when they expire within
120 days, and ``rke2 certificate rotate`` (service stopped) renews them at once (docs.rke2.io
"Certificate Management").

Pure: the output of ``kubeadm certs check-expiration`` (or of ``openssl x509 -enddate`` for RKE2's files)
in, expiry dates and verdicts out; the commands as strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

WARN_DAYS = 30
KUBEADM_MANIFESTS = "/etc/kubernetes/manifests"
CONTROL_PLANE_PODS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
RKE2_TLS_DIR = "/var/lib/rancher/rke2/server/tls"
# `vmstation certs renew CLUSTER` names the cluster as `vmstation upgrade debian|rke2` does: by its kind.
RENEW_CLUSTERS = {"debian": "kubeadm", "rke2": "rke2"}
# The documented table: "admin.conf   Dec 30, 2020 23:36 UTC   364d   ca   no".
_ROW = re.compile(r"^(?P<name>\S+)\s+(?P<when>[A-Z][a-z]{2} \d{1,2}, \d{4} \d{2}:\d{2} UTC)\s")
_ENDDATE = re.compile(r"^(?P<path>\S+)\s+notAfter=(?P<when>[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4} GMT)$")


@dataclass(frozen=True)
class Certificate:
    name: str
    expires: datetime

    def days_left(self, now: datetime) -> float:
        return (self.expires - now) / timedelta(days=1)


def parse_check_expiration(output: str) -> list[Certificate]:
    """Every certificate and CA row of ``kubeadm certs check-expiration``'s two tables."""
    found = []
    for line in output.splitlines():
        match = _ROW.match(line.strip())
        if match:
            when = datetime.strptime(match["when"], "%b %d, %Y %H:%M UTC").replace(tzinfo=timezone.utc)
            found.append(Certificate(match["name"], when))
    return found


def parse_enddates(output: str) -> list[Certificate]:
    """Lines ``PATH notAfter=Nov 28 10:00:00 2027 GMT`` (RKE2's certificates, read with openssl), each named by
    its file, etcd's with their directory (``etcd/client.crt``: tls/ has a client-*.crt of its own)."""
    found = []
    for line in output.splitlines():
        match = _ENDDATE.match(line.strip())
        if match:
            when = datetime.strptime(" ".join(match["when"].split()), "%b %d %H:%M:%S %Y GMT")
            found.append(Certificate(_tls_name(match["path"]), when.replace(tzinfo=timezone.utc)))
    return found


def _tls_name(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[-2:]) if len(parts) > 1 and parts[-2] == "etcd" else parts[-1]


def renew_command(kind: str) -> str:
    """The command that renews the certificates of a cluster of ``kind`` (and leaves the other cluster alone)."""
    return "vmstation certs renew " + next(word for word, of in RENEW_CLUSTERS.items() if of == kind)


def verdict(certificates: list[Certificate], now: datetime, warn_days: int = WARN_DAYS, *,
            kind: str) -> tuple[str, str]:
    """("ok" | "warn" | "expired" | "unknown", a sentence) for the soonest expiry of a ``kind`` cluster's
    certificates; the sentence names the command that renews that cluster's only."""
    if not certificates:
        return "unknown", "no certificate expiry could be read"
    soonest = min(certificates, key=lambda c: c.expires)
    renew = renew_command(kind)
    left = soonest.days_left(now)
    when = soonest.expires.strftime("%Y-%m-%d")
    if left <= 0:
        return "expired", f"{soonest.name} expired on {when}: run `{renew}`"
    if left <= warn_days:
        return "warn", f"{soonest.name} expires on {when} ({left:.0f} days): run `{renew}`"
    return "ok", f"soonest: {soonest.name} on {when} ({left:.0f} days)"


# -- commands -----------------------------------------------------------------------------------------------


def kubeadm_check_command() -> str:
    return "kubeadm certs check-expiration"


def rke2_enddates_command() -> str:
    """The expiry of each of RKE2's server certificates, one ``PATH notAfter=...`` line each (CAs left out):
    those in tls/ and the embedded etcd's in tls/etcd/ (client.crt, server-client.crt, peer-server-client.crt;
    its CAs are server-ca.crt and peer-ca.crt). `rke2 certificate rotate` renews both sets: docs.rke2.io
    "Certificate Management" lists etcd among the services it rotates, and the rotate command RKE2 shares with
    k3s (k3s-io/k3s pkg/cli/cert/cert.go) removes tls/etcd/{server-client,peer-server-client,client}.crt with
    the others so that the next start issues them anew. A directory without certificates (no etcd/ on a server
    of an external datastore) adds nothing."""
    return (f"for f in {RKE2_TLS_DIR}/*.crt {RKE2_TLS_DIR}/etcd/*.crt; do case \"$f\" in *-ca.crt) continue;; "
            "esac; [ -e \"$f\" ] || continue; printf '%s ' \"$f\"; openssl x509 -noout -enddate -in \"$f\"; done")


def kubeadm_renew_command() -> str:
    return "kubeadm certs renew all"


def restart_static_pods_command(wait_seconds: int = 20) -> str:
    """Move each control-plane manifest away and back, as kubernetes.io says, so the kubelet restarts it.

    The manifests go back on any exit of the script (a trap), so a failure or a cut in between cannot leave
    the control plane without them.
    """
    parking = "/etc/kubernetes/vmstation-manifests-parked"
    put_back = (f"for f in {parking}/*.yaml; do if [ -e \"$f\" ]; then mv \"$f\" {KUBEADM_MANIFESTS}/; fi; done; "
                f"rmdir {parking} 2>/dev/null || true")
    moves = "\n".join(
        f"if [ -e {KUBEADM_MANIFESTS}/{pod}.yaml ]; then mv {KUBEADM_MANIFESTS}/{pod}.yaml {parking}/; fi"
        for pod in CONTROL_PLANE_PODS)
    return f"mkdir -p {parking}\ntrap '{put_back}' EXIT\n{moves}\nsleep {int(wait_seconds)}"


def rke2_rotate_command() -> str:
    """RKE2's own rotation: stop the server, ``rke2 certificate rotate``, start it again."""
    from vmstation.backup import RKE2_BINARY

    return f"{RKE2_BINARY}\nsystemctl stop rke2-server\n\"$rke2\" certificate rotate\nsystemctl start rke2-server"
