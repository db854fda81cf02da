"""etcd snapshots: the commands that take them, where they land, and how many the operator's machine keeps.

kubeadm: etcd runs as a static pod whose client certificates are on the host (/etc/kubernetes/pki/etcd); the
snapshot is ``etcdctl snapshot save`` against https://127.0.0.1:2379 with them ("Operating etcd clusters for
Kubernetes", kubernetes.io, "Snapshot using etcdctl options"). etcdctl is not installed by kubeadm: when the host
has none, the one inside the etcd container is used (``crictl exec``), writing into /var/lib/etcd, which the static
pod mounts from the host. RKE2: ``rke2 etcd-snapshot save`` on a server (docs.rke2.io "Backup and Restore"),
``--dir`` and ``--name`` choosing where; the file gets the node name and a timestamp appended, so the newest is
moved to a fixed path for the fetch.

Either way the snapshot holds every Secret of the cluster: it is made 0600 on the host (umask), fetched 0600, and
its content is never shown.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

BACKUP_DIR = "/var/lib/vmstation/backups"             # the host keeps only the newest snapshot here
ETCD_PKI = "/etc/kubernetes/pki/etcd"
ETCD_DATA = "/var/lib/etcd"                             # mounted into the etcd static pod from the host
RKE2_SNAPSHOT_NAME = "vmstation"
# An RPM install puts rke2 in /usr/bin, the tarball in /usr/local/bin, which sudo's secure_path on RHEL leaves out.
RKE2_BINARY = "rke2=$(command -v rke2 || echo /usr/local/bin/rke2)"
RETENTION = 7                                           # snapshots kept per cluster on the operator's machine
_LOCAL_NAME = re.compile(r"^etcd-\d{8}T\d{6}Z\.db$")


def host_path(stamp: str) -> str:
    """Where the snapshot of the run stamped ``stamp`` lands on the host (and is fetched from)."""
    return f"{BACKUP_DIR}/etcd-{stamp}.db"


def kubeadm_snapshot_command(stamp: str) -> str:
    """etcdctl with the static pod's certificates; the host's etcdctl if there is one, else the container's."""
    snapshot = host_path(stamp)
    flags = (f"--endpoints=https://127.0.0.1:2379 --cacert={ETCD_PKI}/ca.crt "
             f"--cert={ETCD_PKI}/server.crt --key={ETCD_PKI}/server.key")
    inside = f"{ETCD_DATA}/vmstation-snapshot.db"
    return "\n".join([
        "umask 077",
        f"mkdir -p {BACKUP_DIR}",
        f"rm -f {BACKUP_DIR}/etcd-*.db {BACKUP_DIR}/etcd-*.db.part",
        "if command -v etcdctl >/dev/null 2>&1; then",
        f"  ETCDCTL_API=3 etcdctl {flags} snapshot save {snapshot}.part",
        "else",
        "  id=$(crictl ps --name '^etcd$' -q | head -n 1)",
        "  if [ -z \"$id\" ]; then echo 'no etcd container is running (crictl ps --name etcd)' >&2; exit 1; fi",
        f"  crictl exec \"$id\" etcdctl {flags} snapshot save {inside}",
        f"  mv {inside} {snapshot}.part",
        "fi",
        f"chmod 0600 {snapshot}.part",
        f"mv {snapshot}.part {snapshot}",
    ])


def rke2_snapshot_command(stamp: str) -> str:
    """``rke2 etcd-snapshot save`` into the backup directory; the newest file becomes ``host_path(stamp)``."""
    return "\n".join([
        "umask 077",
        f"mkdir -p {BACKUP_DIR}/rke2",
        f"rm -f {BACKUP_DIR}/etcd-*.db {BACKUP_DIR}/rke2/{RKE2_SNAPSHOT_NAME}-*",
        RKE2_BINARY,
        f"\"$rke2\" etcd-snapshot save --dir {BACKUP_DIR}/rke2 --name {RKE2_SNAPSHOT_NAME}",
        f"newest=$(ls -1t {BACKUP_DIR}/rke2/{RKE2_SNAPSHOT_NAME}-* | head -n 1)",
        "if [ -z \"$newest\" ]; then echo 'rke2 etcd-snapshot save left no file' >&2; exit 1; fi",
        "chmod 0600 \"$newest\"",
        f"mv \"$newest\" {host_path(stamp)}",
    ])


def new_stamp(moment: datetime | None = None) -> str:
    """``20261128T110000Z``: one per run, names the snapshot on the host and on the operator's machine."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y%m%dT%H%M%SZ")


def local_path(artifacts_dir: Path, cluster: str, stamp: str) -> Path:
    """``<artifacts>/backups/<cluster>/etcd-<stamp>.db`` on the operator's machine (0600)."""
    return Path(artifacts_dir) / "backups" / cluster / f"etcd-{stamp}.db"


# Is there an etcd to snapshot? A host without one (never deployed, reset) skips, saying so, and nothing is fetched.
KUBEADM_HAS_ETCD = "[ -e /etc/kubernetes/manifests/etcd.yaml ]"
RKE2_HAS_ETCD = "[ -d /var/lib/rancher/rke2/server/db/etcd ]"


def to_prune(names: list[str], keep: int = RETENTION) -> list[str]:
    """The snapshot files beyond the ``keep`` newest (``keep`` >= 1; other files are never touched)."""
    ours = sorted(name for name in names if _LOCAL_NAME.match(name))
    return ours[:-keep] if len(ours) > keep else []


def prune(directory: Path, keep: int = RETENTION) -> list[Path]:
    """Remove the snapshots beyond the ``keep`` newest in ``directory``; the removed paths."""
    if not directory.is_dir():
        return []
    removed = [directory / name for name in to_prune([p.name for p in directory.iterdir()], keep)]
    for path in removed:
        path.unlink()
    return removed


RESTORE_PROCEDURE = """\
Restoring an etcd snapshot replaces the whole cluster state; vmstation does not do it for you, because a restore
on a running control plane loses everything written since the snapshot and must stop the API server first.

kubeadm (kubernetes.io, "Operating etcd clusters for Kubernetes", "Restoring an etcd cluster"), on the control plane:
  1. copy the snapshot there (0600): scp SNAPSHOT root@CONTROL_PLANE:/var/lib/vmstation/backups/restore.db
  2. mkdir -p /etc/kubernetes/parked && mv /etc/kubernetes/manifests/*.yaml /etc/kubernetes/parked/   (stops it)
  3. etcdutl snapshot restore /var/lib/vmstation/backups/restore.db --data-dir /var/lib/etcd-restored
  4. mv /var/lib/etcd /var/lib/etcd-before-restore && mv /var/lib/etcd-restored /var/lib/etcd
  5. mv /etc/kubernetes/parked/*.yaml /etc/kubernetes/manifests/   (starts the control plane again)
  6. vmstation status: every node Ready again
RKE2 (docs.rke2.io, "Backup and Restore"), on the first server, other servers stopped:
  1. systemctl stop rke2-server
  2. rke2 server --cluster-reset --cluster-reset-restore-path=SNAPSHOT
  3. systemctl start rke2-server; on each other server: rm -rf /var/lib/rancher/rke2/server/db, then start it
"""
