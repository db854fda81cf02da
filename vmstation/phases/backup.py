"""backup: an etcd snapshot of every cluster, taken on its control plane (first RKE2 server) and fetched 0600.

    backup.snapshot   etcdctl through the etcd static pod's certificates (kubeadm), `rke2 etcd-snapshot save`
                      (RKE2), into /var/lib/vmstation/backups/etcd-<stamp>.db; a host without etcd skips
    backup.fetch      that file to <artifacts>/backups/<cluster>/etcd-<stamp>.db on the operator's machine

The upgrade targets need backup.fetch, so no control plane changes before its snapshot is on the operator's
machine; `vmstation reset` and `vmstation node remove` run this target first. The retention count is applied by
the use case after the run (``vmstation.backup.prune``). Commands: vmstation.backup.
"""

from __future__ import annotations

from vmstation import backup
from vmstation.context import HostContext
from vmstation.graph import Phase, Target
from vmstation.inventory import Host, Inventory
from vmstation.operations import Command, Fetch

LEADER_ROLES = {"kubeadm": "control-plane", "rke2": "server"}


def leaders(inventory: Inventory) -> tuple[Host, ...]:
    """Each cluster's control plane (kubeadm) or first server (RKE2): where its etcd is snapshotted."""
    found = []
    for cluster in inventory.clusters:
        hosts = [h for h in inventory.hosts_of(cluster.name) if h.has_role(LEADER_ROLES[cluster.kind])]
        found += hosts[:1]
    return tuple(found)


def snapshot(ctx: HostContext):
    stamp = ctx.run.backup_stamp
    if ctx.cluster.kind == "kubeadm":
        yield Command(backup.kubeadm_snapshot_command(stamp), f"etcd snapshot to {backup.host_path(stamp)}",
                      onlyif=backup.KUBEADM_HAS_ETCD, deadline=600)
    else:
        yield Command(backup.rke2_snapshot_command(stamp), f"rke2 etcd-snapshot save to {backup.host_path(stamp)}",
                      onlyif=backup.RKE2_HAS_ETCD, deadline=600)


def fetch(ctx: HostContext):
    stamp = ctx.run.backup_stamp
    yield Fetch(backup.host_path(stamp), str(backup.local_path(ctx.run.artifacts_dir, ctx.cluster.name, stamp)))


PHASES = [
    Phase("backup.snapshot", "etcd snapshot on the control plane / first server", leaders, snapshot),
    Phase("backup.fetch", "snapshot fetched to the operator's machine (0600)", leaders, fetch,
          needs=("backup.snapshot",)),
]

TARGETS = [
    Target("backup", "an etcd snapshot of every cluster, fetched 0600 under .vmstation/artifacts/backups",
           ("backup.fetch",)),
]
