"""Day-two use cases over the engine: backups with a retention count, upgrades step by step, certificate renewal.

Each returns results; printing belongs to the callers (cli.py). An upgrade is a chain of minor steps
(vmstation.upgrades); each step is runs of the ``upgrade-debian`` target: the control plane's part, then each
worker alone, in inventory order. The first run that does not finish stops the chain: ``Upgrade.stopped``
says where, and ``--resume`` starts again from the cluster's own version (the API server's image tag), so
the steps done drop out of the chain and the phases finished in the stopped run are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from vmstation import backup
from vmstation.upgrades import UpgradeStep, kubeadm_chain, resolve, rke2_chain

# The version a kubeadm cluster is at: the lowest of its API server's (the static pod's image tag; kubeadm's own
# before there is one) and every node's kubelet as the cluster reports it, so that workers a stopped run left
# behind are part of the chain again.
CURRENT_VERSION_SCRIPT = (
    "api=$(sed -n 's/.*image: .*kube-apiserver:v\\([0-9][0-9.]*\\).*/\\1/p' "
    "/etc/kubernetes/manifests/kube-apiserver.yaml 2>/dev/null | head -n 1)\n"
    "if [ -z \"$api\" ]; then api=$(kubeadm version -o short 2>/dev/null | sed 's/^v//'); fi\n"
    "kubelets=$(kubectl --kubeconfig=/etc/kubernetes/admin.conf get nodes "
    "-o jsonpath='{.items[*].status.nodeInfo.kubeletVersion}' 2>/dev/null | tr ' ' '\\n' | sed 's/^v//')\n"
    "printf '%s\\n' $api $kubelets | grep -E '^[0-9]+[.][0-9]+[.][0-9]+$' | sort -V | head -n 1\n")
# The release an RKE2 cluster is at: the lowest of the first server's rke2 and every node's kubelet as the cluster
# reports it (an RKE2 node's kubelet version is its release: `kubectl get nodes` shows v1.28.2+rke2r1 in
# rancher/rke2 issue #3645), so that agents a stopped run left behind are part of the chain again, as for kubeadm.
RKE2_VERSION_SCRIPT = (
    "(rke2 --version || /usr/local/bin/rke2 --version) 2>/dev/null | head -n 1\n"
    "/var/lib/rancher/rke2/bin/kubectl --kubeconfig /etc/rancher/rke2/rke2.yaml get nodes "
    "-o jsonpath='{.items[*].status.nodeInfo.kubeletVersion}' 2>/dev/null\n")


@dataclass
class Part:
    step: UpgradeStep
    where: str                     # "control plane masternode" | "worker storagenodet3500" | "server homelab"
    result: object                 # runner.RunResult


@dataclass
class Upgrade:
    kind: str
    current: str
    to: str
    chain: list[UpgradeStep]
    parts: list[Part] = field(default_factory=list)
    pruned: list[Path] = field(default_factory=list)
    plan: bool = False             # a plan: its stop says what a run would meet, with nothing to resume

    @property
    def stopped(self) -> Part | None:
        return next((p for p in self.parts if p.result.exit_code), None)

    @property
    def exit_code(self) -> int:
        return self.stopped.result.exit_code if self.stopped else 0


def upgrade(session, kind: str, to: str, *, plan: bool = False, resume: bool = False, listener=None,
            keep: int = backup.RETENTION, current: str | None = None) -> Upgrade:
    """Plan the chain from the cluster's version to ``to`` and run (or plan) it step by step."""
    from vmstation.app import load_inventory

    resolve(kind, to)              # a --to that names no version is bad input before any host is asked
    inventory = load_inventory(session)
    cluster = _cluster_of_kind(inventory, kind)
    current = current or cluster_version(session, inventory, cluster)
    chain = (kubeadm_chain if kind == "kubeadm" else rke2_chain)(current, to)
    result = Upgrade(kind, current, to, chain, plan=plan)
    for step in chain:
        for where, limit, only in _parts(inventory, cluster, kind):
            stamp = backup.new_stamp()
            run = _run(session, kind, plan=plan, resume=resume, listener=listener, limit=limit, only=only,
                       settings={"upgrade_to": step.to_version, "backup_stamp": stamp})
            result.parts.append(Part(step, where, run))
            if run.exit_code:
                return result
    if not plan:
        result.pruned = backup.prune(_backups(inventory, cluster), keep)
    return result


def take_backup(session, *, plan: bool = False, keep: int = backup.RETENTION, listener=None, limit=()):
    """The ``backup`` target with a fresh stamp, then the retention count applied per cluster: (result, pruned)."""
    from vmstation.app import load_inventory, run_target

    result = run_target(session, "backup", plan=plan, listener=listener, limit=limit,
                        settings={"backup_stamp": backup.new_stamp()})
    pruned: list[Path] = []
    if not plan and not result.exit_code:
        inventory = load_inventory(session)
        for cluster in inventory.clusters:
            pruned += backup.prune(_backups(inventory, cluster), keep)
    return result, pruned


def cluster_version(session, inventory, cluster) -> str:
    """The version the cluster runs, asked on its control plane (first server); the inventory's if it has none."""
    from vmstation.app import ssh_options
    from vmstation.transport import connect

    leader = _leader(inventory, cluster)
    password = None
    if not leader.is_root and leader.become_password:
        from vmstation.app import open_secrets

        password = open_secrets(session, inventory).resolve(leader.become_password)
    connection = connect(leader, ssh_options(session, inventory), password)
    try:
        script = CURRENT_VERSION_SCRIPT if cluster.kind == "kubeadm" else RKE2_VERSION_SCRIPT
        output = connection.run(script, check=False, timeout=30).stdout.strip()
    finally:
        connection.close()
    if cluster.kind == "rke2":
        return lowest_rke2_release(output) or cluster.version
    return output if re.fullmatch(r"\d+\.\d+\.\d+", output) else cluster.version


def lowest_rke2_release(output: str) -> str | None:
    """The lowest RKE2 release named in ``output`` (RKE2_VERSION_SCRIPT's), by number; None when it names none."""
    found = re.findall(r"v(\d+)\.(\d+)\.(\d+)\+rke2r(\d+)", output)
    lowest = min(found, key=lambda parts: tuple(int(p) for p in parts), default=None)
    return "v{}.{}.{}+rke2r{}".format(*lowest) if lowest else None


def describe_stop(result: Upgrade, to: str) -> str:
    """Where the chain stopped, what failed there, and how to go on."""
    part = result.stopped
    failed = [o for o in part.result.outcomes if not o.succeeded]
    first = failed[0] if failed else None
    what = f"{first.phase} @ {first.host}: {first.message}" if first else "the run did not finish"
    command = "debian" if result.kind == "kubeadm" else "rke2"
    where = (f"step {part.step.number} of {len(result.chain)} ({part.step.from_version} -> {part.step.to_version}), "
             f"{part.where}: {what}")
    if result.plan:
        return (f"the plan stops at {where}\n"
                f"a run would stop there too, with nothing changed: mend that first, then "
                f"vmstation upgrade {command} --to {to}")
    return (f"stopped at {where}\n"
            f"the hosts after it were not touched; nothing was rolled back (kubeadm rolls a failed apply back itself)\n"
            f"go on from there: vmstation upgrade {command} --to {to} --resume")


# -- helpers ---------------------------------------------------------------------------------------------------


def _parts(inventory, cluster, kind: str):
    """(where, --limit, --only) of each run of one step: the control plane (or first server) first, then each
    other node alone, so that one failing node stops the chain before the next one is touched."""
    from vmstation.phases import upgrade as debian_upgrade
    from vmstation.phases import upgrade_rke2

    hosts = inventory.hosts_of(cluster.name)
    if kind == "kubeadm":
        leader = _leader(inventory, cluster)
        yield (f"control plane {leader.name}", (leader.name,),
               (debian_upgrade.PREFLIGHT, debian_upgrade.SNAPSHOT, debian_upgrade.FETCH, debian_upgrade.CONTROL_PLANE,
                debian_upgrade.CONTROL_PLANE_NODE))
        for host in (h for h in hosts if h.has_role("worker")):
            yield f"worker {host.name}", (host.name,), (debian_upgrade.PREFLIGHT, debian_upgrade.WORKERS)
        return
    servers = [h for h in hosts if h.has_role("server")]
    agents = [h for h in hosts if h.has_role("agent")]
    yield (f"server {servers[0].name}", (servers[0].name,),
           (upgrade_rke2.PREFLIGHT, upgrade_rke2.SNAPSHOT, upgrade_rke2.FETCH, upgrade_rke2.NODE))
    for host in servers[1:]:
        yield f"server {host.name}", (host.name,), (upgrade_rke2.PREFLIGHT, upgrade_rke2.NODE)
    for host in agents:
        yield f"agent {host.name}", (host.name,), (upgrade_rke2.PREFLIGHT, upgrade_rke2.NODE)


def _run(session, kind, *, plan, resume, listener, limit, only, settings):
    from vmstation.app import run_target

    target = "upgrade-debian" if kind == "kubeadm" else "upgrade-rke2"
    return run_target(session, target, plan=plan, resume=resume, listener=listener, limit=limit, only=only,
                      settings=settings)


def _cluster_of_kind(inventory, kind: str):
    from vmstation.errors import InventoryError

    clusters = inventory.clusters_of_kind(kind)
    if not clusters:
        raise InventoryError(inventory.path, f"no {kind} cluster to upgrade")
    return clusters[0]


def _leader(inventory, cluster):
    role = "control-plane" if cluster.kind == "kubeadm" else "server"
    return next(h for h in inventory.hosts_of(cluster.name) if h.has_role(role))


def _backups(inventory, cluster) -> Path:
    return backup.local_path(Path(inventory.path).resolve().parent / ".vmstation" / "artifacts", cluster.name,
                             "x").parent
