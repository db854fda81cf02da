"""`vmstation verify`: testinfra checks of each host's state, per deploy phase.

The checks use testinfra's modules (``host.file``, ``host.service``,
``host.package``, ``host.sysctl``) over vmstation's own checked SSH connection:
testinfra's paramiko backend accepts unknown host keys (WarningPolicy) and cannot
answer a sudo password, so ``EngineBackend`` hands its commands to
``HostConnection.run`` instead. The same checks run in the test suite against
boxes, against Vagrant VMs and, through this command, against the homelab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vmstation.inventory import Cluster, Host


@dataclass(frozen=True)
class StateCheck:
    phase: str
    name: str
    test: Callable[..., bool]          # (testinfra host) -> passed


UNREACHABLE = "cannot check"      # the name of the one result of a host that could not be reached


@dataclass(frozen=True)
class CheckResult:
    host: str
    phase: str
    name: str
    passed: bool
    detail: str = ""


def host_for_testinfra(connection):
    """A testinfra Host whose commands run over ``connection`` (root, via sudo where needed)."""
    import testinfra.host

    return testinfra.host.Host(_engine_backend_class()(connection))


def run_checks(connection, checks: list[StateCheck]) -> list[CheckResult]:
    host = host_for_testinfra(connection)
    results = []
    for check in checks:
        try:
            passed, detail = bool(check.test(host)), ""
        except Exception as exc:  # a check that cannot even look is a failed check, with the reason
            passed, detail = False, f"{type(exc).__name__}: {exc}"
        results.append(CheckResult(connection.host.name, check.phase, check.name, passed, detail))
    return results


def checks_for(host: Host, cluster: Cluster, phases: set[str] | None = None,
               first_server: str | None = None) -> list[StateCheck]:
    """The checks of every phase that applies to ``host`` (all phases, or only ``phases``).

    RKE2 checks go by role: ``first_server`` names the server that initialised the cluster (by default any
    server is taken for it, as in a one-server cluster); other servers and agents are checked as joined.
    """
    first = host.has_role("server") if first_server is None else host.name == first_server
    catalogue = DEBIAN_CHECKS if cluster.kind == "kubeadm" else rke2_checks(host, first)
    selected = []
    for phase, (applies, checks) in catalogue.items():
        if (phases is None or phase in phases) and applies(host):
            selected.extend(StateCheck(phase, name, test) for name, test in checks)
    return selected


def verify(session, target: str) -> list[CheckResult]:
    """Connect to each host of the target and run its checks: the results (a host that cannot be reached is one
    failed result saying why). Printing is the caller's (``vmstation.report.format_checks``)."""
    from vmstation.app import load_inventory, open_secrets
    from vmstation.errors import HostError
    from vmstation.transport import SshOptions, connect

    inventory = load_inventory(session)
    secrets = open_secrets(session, inventory)
    kinds = {"deploy-debian": {"kubeadm"}, "deploy-rke2": {"rke2"}}.get(target, {"kubeadm", "rke2"})
    options = SshOptions(known_hosts=inventory.known_hosts, trust_new_host_keys=session.trust_new_host_keys,
                         ssh_config=session.ssh_config)
    results: list[CheckResult] = []
    for host in inventory.hosts:
        cluster = inventory.cluster(host.cluster)
        if cluster.kind not in kinds:
            continue
        first = next((h.name for h in inventory.hosts_of(cluster.name) if h.has_role("server")), None)
        password = secrets.resolve(host.become_password) if host.become_password and not host.is_root else None
        try:
            connection = connect(host, options, password)
        except HostError as exc:
            results.append(CheckResult(host.name, "", UNREACHABLE, False, exc.message))
            continue
        try:
            results += run_checks(connection, checks_for(host, cluster, first_server=first))
        finally:
            connection.close()
    return results


def _engine_backend_class():
    import testinfra.backend.base

    class EngineBackend(testinfra.backend.base.BaseBackend):
        """testinfra over a vmstation HostConnection (host keys checked, sudo password on stdin)."""

        NAME = "vmstation"

        def __init__(self, connection, *args, **kwargs):
            self.connection = connection
            super().__init__(connection.host.name, *args, **kwargs)

        def run(self, command: str, *args: str, **kwargs):
            command = self.get_command(command, *args)
            result = self.connection.run(command + "\n", check=False)
            return self.result(result.exit_code, self.encode(command), result.stdout.encode(),
                               result.stderr.encode())

    return EngineBackend


# -- the checks, per phase ------------------------------------------------------------------------------

def _everyone(host: Host) -> bool:
    return True


def _role(role: str) -> Callable[[Host], bool]:
    return lambda host: host.has_role(role)


def _file(path: str, mode: int, contains: str = "", user: str = "root"):
    def test(th) -> bool:
        f = th.file(path)
        return f.is_file and f.mode == mode and f.user == user and (not contains or f.contains(contains))
    return test


DEBIAN_CHECKS = {
    "debian.system-prep": (_everyone, [
        ("sysctl file in /etc/sysctl.d", _file("/etc/sysctl.d/99-kubernetes.conf", 0o644, "net.ipv4.ip_forward = 1")),
        ("modules file in /etc/modules-load.d", _file("/etc/modules-load.d/kubernetes.conf", 0o644, "br_netfilter")),
        ("net.ipv4.ip_forward = 1", lambda th: th.sysctl("net.ipv4.ip_forward") == 1),
        ("net.bridge.bridge-nf-call-iptables = 1", lambda th: th.sysctl("net.bridge.bridge-nf-call-iptables") == 1),
        ("no swap in use", lambda th: th.run("tail -n +2 /proc/swaps").stdout.strip() == ""),
        ("no active swap line in fstab",
         lambda th: th.run("awk '$1 !~ /^#/ && $3 == \"swap\"' /etc/fstab").stdout.strip() == ""),
    ]),
    "debian.containerd-config": (_everyone, [
        ("containerd config with SystemdCgroup", _file("/etc/containerd/config.toml", 0o644, "SystemdCgroup = true")),
        ("containerd running and enabled",
         lambda th: th.service("containerd").is_running and th.service("containerd").is_enabled),
        ("containerd socket", lambda th: th.file("/run/containerd/containerd.sock").is_socket),
    ]),
    "debian.cni-plugins": (_everyone, [
        ("bridge plugin in /opt/cni/bin", lambda th: th.file("/opt/cni/bin/bridge").exists),
        ("portmap plugin in /opt/cni/bin", lambda th: th.file("/opt/cni/bin/portmap").exists),
    ]),
    "debian.kube-binaries": (_everyone, [
        ("kubeadm 1.29.15", lambda th: "v1.29.15" in th.run("kubeadm version -o short").stdout),
        ("kubelet node-ip pinned", _file("/etc/default/kubelet", 0o644, "--node-ip=")),
    ]),
    "debian.kubeadm-config": (_role("control-plane"), [
        ("kubeadm init config, 0600", _file("/etc/kubernetes/kubeadm-init.yaml", 0o600, "kubeadm.k8s.io/v1beta")),
    ]),
    "debian.control-plane-init": (_role("control-plane"), [
        ("admin.conf, 0600", _file("/etc/kubernetes/admin.conf", 0o600)),
        ("kubelet running", lambda th: th.service("kubelet").is_running),
    ]),
    "debian.worker-join": (_role("worker"), [
        ("kubelet.conf", lambda th: th.file("/etc/kubernetes/kubelet.conf").exists),
        ("no join file with a token left", lambda th: not th.file("/etc/kubernetes/kubeadm-join.yaml").exists),
        ("kubelet running", lambda th: th.service("kubelet").is_running),
    ]),
    "debian.jellyfin-storage": (_role("jellyfin"), [
        ("Jellyfin config directory", lambda th: th.file("/var/lib/jellyfin/config").is_directory),
        ("Jellyfin cache directory", lambda th: th.file("/var/lib/jellyfin/cache").is_directory),
    ]),
}

def rke2_checks(host: Host, first: bool) -> dict:
    """The RKE2 checks for ``host``: the first server initialises; other servers and agents join it."""
    service = "rke2-server" if host.has_role("server") else "rke2-agent"
    running = (f"{service} running and enabled",
               lambda th: th.service(service).is_running and th.service(service).is_enabled)
    config = "/etc/rancher/rke2/config.yaml"
    checks = {
        "rke2.system-prep": (_everyone, [
            ("NetworkManager leaves CNI interfaces alone",
             _file("/etc/NetworkManager/conf.d/rke2-canal.conf", 0o644, "unmanaged-devices=")),
            ("sysctl file for RKE2", _file("/etc/sysctl.d/90-rke2.conf", 0o644, "net.ipv4.ip_forward")),
        ]),
    }
    if first:
        checks["rke2.configure"] = (_everyone, [
            ("config.yaml, 0600, initialising (no server to join)",
             lambda th: _file(config, 0o600, "cni: ")(th) and not th.file(config).contains("^server:")),
        ])
        checks["rke2.start"] = (_everyone, [running])
    else:
        checks["rke2.join-configure"] = (_everyone, [
            ("config.yaml, 0600, joining the first server with a token",
             lambda th: _file(config, 0o600, "^server: \"https://")(th) and th.file(config).contains("^token: ")),
        ])
        checks["rke2.join-start"] = (_everyone, [running])
    return checks
