"""upgrade-debian: one kubeadm minor step (``ctx.run.upgrade_to``), as kubernetes.io "Upgrading kubeadm clusters"
describes it; the use case (vmstation.upgrade_run) plans the chain and runs this target once per step, the
control plane first, then each worker alone (``--limit``), stopping at the first failure.

    upgrade-debian.preflight       every host: free disk; the control plane: every node Ready, kubeadm one minor
                                   behind (or at) the step, every node's kubelet inside the Version Skew Policy
                                   once the step is done (vmstation.skew), certificates not expired
    upgrade-debian.snapshot, .fetch  the etcd snapshot on the operator's machine before anything changes
    upgrade-debian.control-plane   the new minor's pkgs.k8s.io repository (one per minor), kubeadm at the step's
                                   version (or from the artifacts directory), `kubeadm upgrade plan`, then
                                   `kubeadm upgrade apply` unless the API server already runs that version
    upgrade-debian.control-plane-node   drain it, kubelet and kubectl, restart kubelet, uncordon, wait Ready
    upgrade-debian.workers         per worker: kubeadm, drain (on the control plane), `kubeadm upgrade node`,
                                   kubelet and kubectl, restart kubelet, uncordon and wait Ready (on the control
                                   plane)

Every change has a guard that looks at the evidence (the API server's image tag, the node's kubelet version as
the cluster reports it, installed package versions), so a run after a failure, or `--resume`, goes on where
the last one stopped and a finished step changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmstation import skew, support, versions
from vmstation.artifacts import verified_files
from vmstation.context import HostContext
from vmstation.errors import HostError, InputError, Unsupported
from vmstation.graph import Phase, Target, hosts_of_kind, hosts_with_role
from vmstation.operations import (CHANGE, OK, WARN, Check, Command, File, Notice, On, Operation, Package, Service,
                                  Step, sh, wait_until)
from vmstation.phases import backup
from vmstation.phases.certs import CertificateExpiry

KUBECTL = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"
APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
FREE_DISK_KB = 2 * 1024 * 1024          # kubeadm pulls the new control-plane images; apt keeps the packages
DRAIN_TIMEOUT = 300
READY_TIMEOUT = 600
control_planes = hosts_with_role("kubeadm", "control-plane")
workers = hosts_with_role("kubeadm", "worker")


def step_version(ctx: HostContext) -> str:
    if not ctx.run.upgrade_to:
        raise InputError("upgrade-debian runs one step of a chain: `vmstation upgrade debian --to VERSION` sets it")
    return ctx.run.upgrade_to


def release_of(version: str) -> versions.KubernetesRelease:
    minor = support.minor_of(version)
    if minor not in versions.KUBERNETES_RELEASES:
        raise InputError(f"--to {version}: Kubernetes {minor} is not in versions.KUBERNETES_RELEASES")
    return versions.KUBERNETES_RELEASES[minor]


# -- preflight ------------------------------------------------------------------------------------------------


def preflight(ctx: HostContext):
    to = step_version(ctx)
    yield Check(f"avail=$(df -Pk /var/lib | awk 'NR==2 {{print $4}}'); if [ \"$avail\" -lt {FREE_DISK_KB} ]; then "
                f"echo \"only $avail kB free under /var/lib; the upgrade needs {FREE_DISK_KB} kB\" >&2; exit 1; fi",
                "at least 2 GB free under /var/lib")
    running, expected = versions.pause_image(ctx.cluster.version), versions.pause_image(to)
    if running != expected:
        # kubeadm warns when containerd's sandbox image is not its own; deploy-debian renders the one of the
        # cluster's version, so the deploy after the upgrade (version set in hosts.toml) moves containerd to it.
        yield Notice(f"containerd's sandbox image is {running}; kubeadm {to} expects {expected}: pods still "
                     f"start and kubeadm warns; the deploy-debian after the upgrade (with version = \"{to}\" in "
                     "hosts.toml) sets it, restarting containerd")
    if not ctx.host.has_role("control-plane"):
        return
    minor = support.minor_of(to)
    before = f"{minor.split('.')[0]}.{int(minor.split('.')[1]) - 1}"
    yield Check(f"v=$(kubeadm version -o short); case \"$v\" in v{before}.*|v{minor}.*) ;; *) echo \"kubeadm is "
                f"$v: a step to {to} starts from {before} (kubeadm upgrades one minor at a time)\" >&2; exit 1;; esac",
                f"the cluster is at {before} or {minor} (one minor per step)")
    yield KubeletSkew(to)
    yield Check(f"not_ready=$({KUBECTL} get nodes --no-headers | awk '$2 != \"Ready\" {{print $1}}'); "
                "if [ -n \"$not_ready\" ]; then echo \"not Ready: $not_ready (wake sleeping workers first: "
                "vmstation wake)\" >&2; exit 1; fi", "every node Ready")
    yield CertificateExpiry()


# -- packages: the new minor's repository, or the artifacts directory ---------------------------------------


def repository(ctx: HostContext):
    """The new minor's pkgs.k8s.io repository and its key (one repository per minor); none from an artifacts dir."""
    if ctx.cluster.artifacts_dir:
        return
    release = release_of(step_version(ctx))
    minor = support.minor_of(release.patch)
    keyring = f"/etc/apt/keyrings/kubernetes-v{minor}.gpg"
    yield Command(sh("curl -fsSL {} | gpg --dearmor -o {}", release.apt_repo() + "Release.key", keyring),
                  f"fetch the pkgs.k8s.io v{minor} signing key", creates=keyring)
    yield File("/etc/apt/sources.list.d/kubernetes.list",
               f"# Managed by vmstation: /etc/apt/sources.list.d/kubernetes.list (Kubernetes {minor})\n"
               f"deb [signed-by={keyring}] {release.apt_repo()} /\n")


def packages(ctx: HostContext, names: tuple[str, ...]):
    """``names`` at the step's version: apt packages held there, or files from the artifacts directory."""
    to = step_version(ctx)
    if ctx.cluster.artifacts_dir:
        yield from _from_artifacts(ctx, names, to)
    else:
        yield Package(names, version=f"{to}-1.1", hold=True)     # pkgs.k8s.io's revision of every release


def _from_artifacts(ctx: HostContext, names: tuple[str, ...], to: str):
    directory = str(Path(ctx.cluster.artifacts_dir).expanduser() / f"kubernetes-{to}")
    try:
        files = verified_files(ctx.host.name, directory, list(names), f"Kubernetes {to} binaries")
    except Unsupported as exc:
        if not ctx.plan:
            raise
        yield Notice(f"cannot run here: {exc.message}")
        return
    for name in names:
        yield File(f"/usr/local/bin/{name}", files[name], mode="0755")


# -- the control plane -------------------------------------------------------------------------------------


def control_plane(ctx: HostContext):
    to = step_version(ctx)
    yield from repository(ctx)
    yield from packages(ctx, ("kubeadm",))
    yield Check(sh("kubeadm upgrade plan {}", f"v{to}"), f"kubeadm upgrade plan v{to}")
    yield Command(sh("kubeadm upgrade apply {} --yes", f"v{to}"), f"kubeadm upgrade apply v{to}",
                  unless=sh("grep -q {} {}", f"kube-apiserver:v{to}$", APISERVER_MANIFEST), deadline=900)


def control_plane_node(ctx: HostContext):
    yield from repository(ctx)
    yield from _node_steps(ctx, ctx.host, lambda operation: operation)


def worker(ctx: HostContext):
    leader = control_planes(ctx.inventory)[0]
    yield from repository(ctx)
    yield from packages(ctx, ("kubeadm",))
    yield from _node_steps(ctx, leader, lambda operation: On(leader, operation), upgrade_node=True)


def _node_steps(ctx: HostContext, leader, there, upgrade_node: bool = False):
    """Drain, (kubeadm upgrade node), kubelet and kubectl, restart, uncordon, wait Ready; ``there`` wraps what
    the control plane does (``On(leader, ...)`` for a worker, itself for the control plane's own node)."""
    to, node = step_version(ctx), ctx.host.name
    drain = there(Drain(node, f"v{to}"))
    yield drain
    if upgrade_node:
        yield Command("kubeadm upgrade node", "kubeadm upgrade node",
                      unless=sh("kubelet --version | grep -qx {}", f"Kubernetes v{to}"), deadline=600)
    installed = list(packages(ctx, ("kubelet", "kubectl")))
    yield from installed
    changes = tuple(op for op in installed if isinstance(op, (Package, File)))
    yield Service("kubelet", daemon_reload=True, restart_on=changes)
    yield there(Uncordon(node, drained=drain.label))
    yield there(wait_until(sh(f"{KUBECTL} get node {{}} -o jsonpath={{}} | grep -qx True", node,
                              '{.status.conditions[?(@.type=="Ready")].status}'),
                           f"node {node} Ready", timeout=READY_TIMEOUT))


@dataclass(frozen=True)
class KubeletSkew(Operation):
    """Every node's kubelet against the API server, now and once the step is done (vmstation.skew): asked once,
    judged here; a node outside the Version Skew Policy fails the preflight before anything changes."""

    to: str                # the step's version, "1.31.14"

    @property
    def label(self) -> str:
        return f"kubelet version skew before the step to {self.to}"

    def probe(self, detail: bool) -> str:
        return (f"{KUBECTL} get --raw=/version; echo; echo {skew.NODES_MARKER}; "
                + sh(f"{KUBECTL} get nodes -o jsonpath={{}}",
                     '{range .items[*]}{.metadata.name}{"\\t"}{.status.nodeInfo.kubeletVersion}{"\\n"}{end}'))

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        try:
            api_server, nodes = skew.parse(fact)
            verdict = skew.judge(api_server, nodes, self.to)
        except skew.Unreadable as exc:
            raise HostError("", f"cannot judge the kubelet version skew before the step to {self.to}: {exc}; "
                                "nothing was changed") from None
        if verdict.refusals:
            raise HostError("", "; ".join(verdict.refusals) + f"; nothing was changed (step to {self.to})")
        if verdict.warnings:
            return Step(self.label, WARN, "; ".join(verdict.warnings))
        return Step(self.label, OK, f"every kubelet within the Version Skew Policy: {verdict.summary}")


@dataclass(frozen=True)
class Drain(Operation):
    """The node drained, unless the cluster says its kubelet already runs the step's version."""

    node: str
    version: str           # "v1.30.14"

    @property
    def label(self) -> str:
        return f"drain node {self.node}"

    def probe(self, detail: bool) -> str:
        return sh(f"{KUBECTL} get node {{}} -o jsonpath={{}}", self.node, "{.status.nodeInfo.kubeletVersion}")

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        if fact.strip() == self.version:
            return Step(self.label, OK, f"its kubelet runs {self.version} already")
        command = sh(f"{KUBECTL} drain {{}} --ignore-daemonsets --delete-emptydir-data --timeout={DRAIN_TIMEOUT}s",
                     self.node)
        return Step(self.label, CHANGE, f"kubelet {fact.strip() or 'unknown'}, upgrading to {self.version}",
                    commands=(command,), deadline=DRAIN_TIMEOUT + 60)


@dataclass(frozen=True)
class Uncordon(Operation):
    """The node uncordoned when this phase drained it, or when it is still cordoned (a run cut after a drain)."""

    node: str
    drained: str           # the label of the Drain step of the same phase

    @property
    def label(self) -> str:
        return f"uncordon node {self.node}"

    def probe(self, detail: bool) -> str:
        return sh(f"{KUBECTL} get node {{}} -o jsonpath={{}}", self.node, "{.spec.unschedulable}")

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        if self.drained not in changed and fact.strip() != "true":
            return Step(self.label, OK, "schedulable")
        reason = "drained above" if self.drained in changed else "still cordoned"
        return Step(self.label, CHANGE, reason, commands=(sh(f"{KUBECTL} uncordon {{}}", self.node),))


PREFLIGHT, SNAPSHOT, FETCH, CONTROL_PLANE, CONTROL_PLANE_NODE, WORKERS = (
    "upgrade-debian.preflight", "upgrade-debian.snapshot", "upgrade-debian.fetch", "upgrade-debian.control-plane",
    "upgrade-debian.control-plane-node", "upgrade-debian.workers")

PHASES = [
    Phase(PREFLIGHT, "free disk; nodes Ready, one minor per step, kubelet skew, certificates (control plane)",
          hosts_of_kind("kubeadm"), preflight),
    Phase(SNAPSHOT, "etcd snapshot (after the preflight passed)", control_planes, backup.snapshot,
          needs=(PREFLIGHT,)),
    Phase(FETCH, "snapshot fetched to the operator's machine (0600)", control_planes, backup.fetch, needs=(SNAPSHOT,)),
    Phase(CONTROL_PLANE, "repository of the new minor, kubeadm, kubeadm upgrade plan and apply", control_planes,
          control_plane, needs=(FETCH,)),
    Phase(CONTROL_PLANE_NODE, "drained, kubelet and kubectl, restarted, uncordoned, Ready", control_planes,
          control_plane_node, needs=(CONTROL_PLANE,)),
    Phase(WORKERS, "each worker: kubeadm, drain, kubeadm upgrade node, kubelet and kubectl, uncordon, Ready",
          workers, worker, needs=(CONTROL_PLANE_NODE,)),
]

TARGETS = [
    Target("upgrade-debian", "one kubeadm minor step: backup, control plane, then each worker", (WORKERS,)),
]
