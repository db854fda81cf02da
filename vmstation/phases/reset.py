"""reset and node-remove: take the clusters (or one node) down, so that a deploy starts from a clean host.

    reset.kubeadm        kubeadm reset -f, CNI config and state, flannel.1/cni0, the iptables and nftables
                         rules kube-proxy and flannel made, /etc/kubernetes (every kubeadm host)
    reset.rke2           rke2-killall.sh, rke2-uninstall.sh from wherever the install put it, /etc/rancher/rke2
    node-remove.drain    the control plane (or the first RKE2 server) drains the node and deletes it from the
                         cluster; deleting a server's Node also removes its etcd member (k3s-io/k3s#3973, the
                         etcd member management controller RKE2 shares)
    node-remove.reset    then the node is reset as above

Every command has a guard that looks at the host first, so a second reset changes
nothing. node-remove runs on the hosts of the run's limit (``vmstation node remove
HOST``); the drain itself is declared to run on the cluster's control plane (``On``:
the executor asks and runs it there), and refuses to run without a limit or against a control plane.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmstation import rhel
from vmstation.context import HostContext
from vmstation.errors import InputError
from vmstation.graph import Phase, Target, all_hosts, hosts_of_kind
from vmstation.operations import CHANGE, OK, Command, On, Operation, Step, sh

CNI_PATHS = ("/etc/cni/net.d", "/var/lib/cni")
CNI_LINKS = ("flannel.1", "cni0")
# Chains kube-proxy (KUBE-*), flannel (FLANNEL-*) and the CNI portmap/bridge plugins (CNI-*) create.
RULE_PATTERNS = ("KUBE-", "FLANNEL-", "CNI-")
# nftables tables of flannel's EnableNFTables mode and of kube-proxy's nftables mode.
NFT_TABLES = (("ip", "flannel-ipv4"), ("ip6", "flannel-ipv6"), ("ip", "kube-proxy"), ("ip6", "kube-proxy"))
UNINSTALL_SCRIPTS = ("/usr/bin/rke2-uninstall.sh", "/usr/local/bin/rke2-uninstall.sh",   # RPM, tarball,
                     "/opt/rke2/bin/rke2-uninstall.sh")                                    # tarball, /usr/local ro
LEADER_ROLES = {"kubeadm": "control-plane", "rke2": "server"}
KUBECTL = {"kubeadm": "kubectl --kubeconfig=/etc/kubernetes/admin.conf",
           "rke2": f"{rhel.RKE2_KUBECTL} --kubeconfig {rhel.RKE2_KUBECONFIG}"}


def reset_kubeadm(ctx: HostContext):
    marks = " || ".join(sh("[ -e {} ]", p) for p in ("/etc/kubernetes/kubelet.conf", "/etc/kubernetes/admin.conf",
                                                     "/var/lib/etcd/member"))
    yield Command(sh("kubeadm reset -f --cri-socket={}", ctx.cluster.cri_socket), "kubeadm reset -f",
                  onlyif=f"command -v kubeadm && {{ {marks} || [ -n \"$(ls -A /etc/kubernetes/manifests)\" ]; }}")
    yield Command(sh("rm -rf --" + " {}" * len(CNI_PATHS), *CNI_PATHS), "remove CNI config and state",
                  onlyif=" || ".join(sh("[ -e {} ]", p) for p in CNI_PATHS))
    for link in CNI_LINKS:
        yield Command(sh("ip link delete {}", link), f"delete interface {link}", onlyif=sh("ip link show {}", link))
    for tool in ("iptables", "ip6tables"):   # grep -c reads all its input: no SIGPIPE for -save under pipefail
        yield Command(f"{tool}-save | grep -v {_rule_grep()} | {tool}-restore",
                      f"remove the {tool} rules of kube-proxy, flannel and CNI",
                      onlyif=f"{tool}-save | grep -c {_rule_grep()} >/dev/null")
    for family, table in NFT_TABLES:
        yield Command(sh("nft delete table {} {}", family, table), f"delete nftables table {family} {table}",
                      onlyif=sh("nft list table {} {}", family, table))
    yield Command("rm -rf -- /etc/kubernetes", "remove /etc/kubernetes", removes="/etc/kubernetes")


def reset_rke2(ctx: HostContext):
    # rke2-uninstall.sh removes itself with the rest, so its presence is the guard of a second reset.
    found = [path for path in UNINSTALL_SCRIPTS if ctx.facts.exists(path)]
    script = found[0] if found else UNINSTALL_SCRIPTS[0 if ctx.facts.os_family == "rhel" else 1]
    # Stop rke2 and every container it started first, so the uninstall removes nothing in use.
    killall = [path.replace("-uninstall.sh", "-killall.sh") for path in UNINSTALL_SCRIPTS]
    yield Command(rhel.killall_command(), "stop RKE2 and its containers (rke2-killall.sh)",
                  onlyif=" || ".join(sh("[ -x {} ]", path) for path in killall))
    yield Command(sh("{}", script), f"uninstall RKE2 ({script})", removes=script)
    # A config written before RKE2 was ever installed is not the uninstall script's to remove.
    yield Command("rm -rf -- /etc/rancher/rke2", "remove /etc/rancher/rke2", removes="/etc/rancher/rke2")


def reset_host(ctx: HostContext):
    if ctx.cluster.kind == "kubeadm":
        yield from reset_kubeadm(ctx)
    else:
        yield from reset_rke2(ctx)


def drain(ctx: HostContext):
    """Drain this host and delete its Node, from the cluster's control plane (or first RKE2 server)."""
    yield On(_leader(ctx), NodeRemoval(ctx.host.name, KUBECTL[ctx.cluster.kind]))


@dataclass(frozen=True)
class NodeRemoval(Operation):
    """A node drained and deleted from its cluster, by ``kubectl`` where it runs (declared ``On`` the leader)."""

    node: str
    kubectl: str

    @property
    def label(self) -> str:
        return f"drain and delete node {self.node}"

    def probe(self, detail: bool) -> str:
        return sh(f"if {self.kubectl} get node {{}} >/dev/null 2>&1; then echo present; fi", self.node)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        if fact.strip() != "present":
            return Step(self.label, OK, f"{self.node} is not a node of the cluster (removed already)")
        removal = sh(f"{self.kubectl} drain {{0}} --ignore-daemonsets --delete-emptydir-data --timeout=300s >&2 && "
                     f"{self.kubectl} delete node {{0}} >&2", self.node)
        return Step(self.label, CHANGE, "a node of the cluster", commands=(removal,), deadline=360)


def _leader(ctx: HostContext):
    if not ctx.run.limit:
        raise InputError("node-remove needs the node to remove: vmstation node remove HOST (--limit HOST)")
    leaders = ctx.hosts_with_role(LEADER_ROLES[ctx.cluster.kind])
    if ctx.host == leaders[0] or (ctx.cluster.kind == "kubeadm" and ctx.host in leaders):
        raise InputError(f"{ctx.inventory.path}: host {ctx.host.name!r} is the {LEADER_ROLES[ctx.cluster.kind]} of "
                         f"cluster {ctx.cluster.name!r}; node-remove is for the other nodes: use "
                         f"`vmstation reset --limit {ctx.host.name}` to take the whole cluster down")
    return leaders[0]


def _rule_grep() -> str:
    return " ".join(sh("-e {}", pattern) for pattern in RULE_PATTERNS)


PHASES = [
    Phase("reset.kubeadm", "kubeadm reset, CNI leftovers, kube-proxy and flannel rules", hosts_of_kind("kubeadm"),
          reset_kubeadm),
    Phase("reset.rke2", "rke2-uninstall.sh", hosts_of_kind("rke2"), reset_rke2),
    Phase("node-remove.drain", "node drained and deleted on its control plane", all_hosts, drain),
    Phase("node-remove.reset", "node reset", all_hosts, reset_host, needs=("node-remove.drain",)),
]

TARGETS = [
    Target("reset", "take both clusters down on every host (or --limit)", ("reset.kubeadm", "reset.rke2")),
    Target("node-remove", "drain one node, delete it from its cluster, reset it", ("node-remove.reset",)),
]
