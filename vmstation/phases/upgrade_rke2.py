"""upgrade-rke2: one RKE2 minor step (``ctx.run.upgrade_to``, a release such as v1.34.10+rke2r1), the way
docs.rke2.io "Manual Upgrades" says: servers one at a time, then agents, each by the install script with the new
INSTALL_RKE2_VERSION and its service restarted. The install goes through the method the release and the host's
RHEL major allow (vmstation.rhel.install_method: RPMs where the release publishes them, else the tarball), by
rke2.install itself at the step's version. The use case (vmstation.maintenance) runs it node by node.

    upgrade-rke2.preflight   every node: free disk; the release pairs with an SELinux policy for the host's RHEL
                             major; each server: its certificates not expired (vmstation.phases.certs); the
                             first server: every node Ready
    upgrade-rke2.snapshot, .fetch   `rke2 etcd-snapshot save` on the first server, fetched 0600
    upgrade-rke2.node        the release installed, rke2-server / rke2-agent restarted, the node Ready (asked
                             on the first server)

Air-gapped: the step's release files in ``<artifacts_dir>/<release>/`` when that directory exists, else in
artifacts_dir itself (which then must hold that release).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vmstation import rhel
from vmstation.context import HostContext
from vmstation.errors import InputError, InventoryError
from vmstation.graph import Phase, Target, hosts_of_kind
from vmstation.operations import Check, On, Service, sh, wait_until
from vmstation.phases import backup, rke2
from vmstation.phases.certs import RKE2 as RKE2_CERTIFICATES
from vmstation.phases.certs import CertificateExpiry
from vmstation.rke2_topology import first_server, first_servers, node_type

KUBECTL = rke2.KUBECTL
FREE_DISK_KB = 2 * 1024 * 1024
READY_TIMEOUT = 600
# The node step restarts rke2-server, and RKE2 renews expired certificates when it starts (docs.rke2.io
# "Certificate Management"); but the first server's "every node Ready" check and its etcd snapshot go through
# those certificates before anything restarts, and a server already at the step's release (a resumed step) is
# not restarted at all. So an upgrade does not count on renewing them itself: an expired server is refused.
UPGRADE_REFUSAL = ("the upgrade checks the nodes and takes its etcd snapshot through them before it restarts "
                   "anything")


class AtVersion(HostContext):
    """``ctx`` with its cluster at the step's release (and that release's artifacts directory, when it has one)."""

    def __init__(self, ctx: HostContext, version: str):
        self.__dict__.update(ctx.__dict__)
        self._version = version

    @property
    def cluster(self):
        cluster = super().cluster
        artifacts = cluster.artifacts_dir
        if artifacts and (Path(artifacts).expanduser() / self._version).is_dir():
            artifacts = str(Path(artifacts).expanduser() / self._version)
        return dataclasses.replace(cluster, version=self._version, artifacts_dir=artifacts)


def step_version(ctx: HostContext) -> str:
    if not ctx.run.upgrade_to:
        raise InputError("upgrade-rke2 runs one step of a chain: `vmstation upgrade rke2 --to RELEASE` sets it")
    return ctx.run.upgrade_to


def preflight(ctx: HostContext):
    to = step_version(ctx)
    yield Check(f"avail=$(df -Pk /var/lib | awk 'NR==2 {{print $4}}'); if [ \"$avail\" -lt {FREE_DISK_KB} ]; then "
                f"echo \"only $avail kB free under /var/lib; the upgrade needs {FREE_DISK_KB} kB\" >&2; exit 1; fi",
                "at least 2 GB free under /var/lib")
    problem = rhel.selinux_policy_problem(to, ctx.facts.os_family, ctx.facts.os_major_version, ctx.cluster.selinux)
    if problem:
        raise InventoryError(ctx.inventory.path, f"--to {to}: {problem} ({ctx.host.name})",
                             key=f"clusters.{ctx.cluster.name}.selinux")
    if ctx.host.has_role("server"):
        yield CertificateExpiry(RKE2_CERTIFICATES, refusal=UPGRADE_REFUSAL)
    if ctx.host == first_server(ctx.inventory, ctx.cluster.name):
        yield Check(f"not_ready=$({KUBECTL} get nodes --no-headers | awk '$2 != \"Ready\" {{print $1}}'); "
                    "if [ -n \"$not_ready\" ]; then echo \"not Ready: $not_ready\" >&2; exit 1; fi", "every node Ready")


def node(ctx: HostContext):
    to = step_version(ctx)
    stepped = AtVersion(ctx, to)
    installed = [op for op in rke2.install(stepped)]
    yield from installed
    yield Service(rhel.RKE2_SERVICES[node_type(ctx.host)], restart_on=tuple(installed))
    leader = first_server(ctx.inventory, ctx.cluster.name)
    # The release as well as Ready: right after a restart the API still shows the old kubelet's Ready condition.
    ready = wait_until(sh(f"{KUBECTL} get node {{}} -o jsonpath={{}} | grep -qx {{}}", ctx.host.name,
                          '{.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status}',
                          f"{to} True"),
                       f"node {ctx.host.name} Ready at {to}", timeout=READY_TIMEOUT, interval=10)
    yield ready if ctx.host == leader else On(leader, ready)


PREFLIGHT, SNAPSHOT, FETCH, NODE = ("upgrade-rke2.preflight", "upgrade-rke2.snapshot", "upgrade-rke2.fetch",
                                    "upgrade-rke2.node")

PHASES = [
    Phase(PREFLIGHT, "free disk, SELinux policy for the release, certificates, nodes Ready", hosts_of_kind("rke2"),
          preflight),
    Phase(SNAPSHOT, "rke2 etcd-snapshot save (after the preflight passed)", first_servers, backup.snapshot,
          needs=(PREFLIGHT,)),
    Phase(FETCH, "snapshot fetched to the operator's machine (0600)", first_servers, backup.fetch, needs=(SNAPSHOT,)),
    Phase(NODE, "the release installed, the service restarted, the node Ready", hosts_of_kind("rke2"), node,
          needs=(PREFLIGHT, FETCH)),
]

TARGETS = [
    Target("upgrade-rke2", "one RKE2 minor step: snapshot, then each server, then each agent", (NODE,)),
]
