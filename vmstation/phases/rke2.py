"""deploy-rke2: the single-node RKE2 cluster on RHEL 10, in the six phases of the homelab's architecture.

    rke2.system-prep  packages (dnf), NetworkManager, nm-cloud-setup, firewalld, SELinux, modules, sysctls, WoL
    rke2.install      RKE2 at the cluster's version: get.rke2.io, or checked files from the artifacts directory
    rke2.configure    /etc/rancher/rke2/config.yaml (0600), checked before it is pushed; restart only on change
    rke2.start        rke2-server enabled and running, the node Ready (bounded wait)
    rke2.monitoring   node-exporter and Prometheus, dropped into RKE2's own auto-deploy directory
    rke2.artifacts    kubeconfig (rewritten to the host's address), config and the server's journal, local 0600

The OS comes from the host's facts: RHEL and its family get the RHEL path; any other
family gets the generic one (files, modules, sysctls) and the plan says so. configure
needs only system-prep (RKE2 reads its config at first start, so it may be written
before the install), and artifacts needs only configure: the server's journal is
wanted most when rke2-server did not come up.
"""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from vmstation import rhel, versions
from vmstation.artifacts import check_pinned, verified_files
from vmstation.config_checks import check_manifests
from vmstation.context import HostContext
from vmstation.errors import HostError, InputError, Unsupported
from vmstation.fetched import check_kubeconfig
from vmstation.graph import Phase, Target, hosts_of_kind, hosts_with_role
from vmstation.operations import (CHANGE, CHECK, OK, SKIP, Command, Directory, Fetch, File, KernelModule,
                                  LocalWrite, Notice, Operation, Package, Service, Step, Sysctl, line, sh,
                                  wait_until)
from vmstation.rke2_checks import check_rke2_config
from vmstation.values import inside

KUBECTL = f"{rhel.RKE2_KUBECTL} --kubeconfig {rhel.RKE2_KUBECONFIG}"
AUTO_DEPLOY_DIR = "/var/lib/rancher/rke2/server/manifests"
REMOTE_ARTIFACTS = "/var/lib/vmstation/artifacts/rke2"
AIRGAP_FILES = ("install.sh", "rke2.linux-amd64.tar.gz", "rke2-images.linux-amd64.tar.zst", "sha256sum-amd64.txt")
CHECKSUMMED = ["rke2.linux-amd64.tar.gz", "rke2-images.linux-amd64.tar.zst"]   # install.sh: pinned in versions
NM_CONF = "/etc/NetworkManager/conf.d/rke2-canal.conf"
NM_CLOUD_SETUP = "/usr/lib/systemd/system/nm-cloud-setup.service"
JOURNAL_LINES = 2000

rke2_hosts = hosts_of_kind("rke2")
servers = hosts_with_role("rke2", "server")


# -- 1. system prep ---------------------------------------------------------------------------------


def system_prep(ctx: HostContext):
    facts = ctx.facts
    for warning in rhel.preflight_warnings(facts.os_release, ctx.cluster.version):
        yield Notice(warning)
    if ctx.host.has_role("agent"):
        yield Notice(f"{ctx.host.name} is an RKE2 agent: vmstation prepares it but deploys servers only")
    if facts.os_family == "rhel":
        yield from _rhel_packages(ctx)
    else:
        yield Notice(f"{_os_name(ctx)} is not RHEL-family: generic prep only (no dnf packages, firewalld or "
                     "SELinux steps); RKE2 installs from its tarball")
    yield from _kernel(ctx)
    yield from _network_manager(ctx)
    yield from _firewall(ctx)
    if facts.os_family == "rhel":
        yield from _selinux(ctx)
    if ctx.host.mac and not ctx.host.always_on:
        yield NmWakeOnLan(ctx.host.interface, ctx.host.mac)


def _rhel_packages(ctx: HostContext):
    yield Package(("container-selinux",), manager="dnf")
    if ctx.facts.os_major_version >= 10:
        # Pinned to the running kernel so the extra modules load now, without a reboot into a newer kernel.
        package = f"kernel-modules-extra-{ctx.facts.kernel}"
        yield Command(rhel.dnf_install_command((package,)), f"install {package} (RHEL 10 keeps vxlan there)",
                      unless=sh("rpm -q {}", package))


def _kernel(ctx: HostContext):
    yield _managed_file(ctx, "/etc/modules-load.d/rke2.conf")
    for module in ("overlay", "br_netfilter"):
        yield KernelModule(module)
    sysctl_file = _managed_file(ctx, "/etc/sysctl.d/90-rke2.conf")
    yield sysctl_file
    for key, value in sysctl_settings(sysctl_file.content):
        # br_netfilter may load in this very phase, after the probes ran: its keys are set once it has.
        yield Sysctl(key, value, needs_module="br_netfilter" if key.startswith("net.bridge.") else None)


def sysctl_settings(text: str) -> list[tuple[str, str]]:
    """``key = value`` pairs of a sysctl.d file, so the file and the live values come from one template."""
    pairs = []
    for raw in text.splitlines():
        if raw.strip() and not raw.lstrip().startswith(("#", ";")) and "=" in raw:
            key, _, value = raw.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def _network_manager(ctx: HostContext):
    # Written on every family: inert where NetworkManager is absent, needed wherever it manages the NICs.
    conf = File(NM_CONF, ctx.render("rhel/rke2-canal.conf.j2"), source="rhel/rke2-canal.conf.j2")
    yield conf
    yield Command(rhel.networkmanager_reload_command(), "reload NetworkManager (CNI interfaces unmanaged)",
                  when_changed=(conf.label,))
    if ctx.facts.exists(NM_CLOUD_SETUP):
        yield Command("; ".join(rhel.nm_cloud_setup_disable_commands()), "disable nm-cloud-setup (service, timer)",
                      onlyif="systemctl is-enabled --quiet nm-cloud-setup.service || "
                             "systemctl is-enabled --quiet nm-cloud-setup.timer || "
                             "systemctl is-active --quiet nm-cloud-setup.timer")


def _firewall(ctx: HostContext):
    if not ctx.facts.exists("/usr/sbin/firewalld"):
        return
    cluster = ctx.cluster
    if cluster.firewall == "disabled":
        yield Command(rhel.firewall_commands("disabled", cluster.pod_cidr, cluster.service_cidr)[0],
                      "stop and disable firewalld (inventory: firewall = disabled)",
                      onlyif="systemctl is-enabled --quiet firewalld || systemctl is-active --quiet firewalld")
        return
    commands = rhel.firewall_commands("open-ports", cluster.pod_cidr, cluster.service_cidr)
    yield Command(" && ".join(commands), "open the RKE2 ports in firewalld, pod and service networks trusted",
                  unless=_firewall_open_test(cluster.pod_cidr, cluster.service_cidr),
                  onlyif="systemctl is-active --quiet firewalld")


def _firewall_open_test(pod_cidr: str, service_cidr: str) -> str:
    ports = " ".join(shlex.quote(p) for p in rhel.FIREWALLD_PORTS)
    sources = " ".join(shlex.quote(c) for c in (pod_cidr, service_cidr))
    return (f'ports=" $({rhel.firewall_ports_query()}) "; '
            f'trusted=" $(firewall-cmd --permanent --zone=trusted --list-sources) "; '
            f'for p in {ports}; do case "$ports" in *" $p "*) ;; *) exit 1;; esac; done; '
            f'for s in {sources}; do case "$trusted" in *" $s "*) ;; *) exit 1;; esac; done')


def _selinux(ctx: HostContext):
    if ctx.facts.selinux == "Disabled":
        yield Notice("SELinux is disabled on this host: turning it on needs a relabel and a reboot "
                     "(SELINUX=permissive, touch /.autorelabel, reboot, then enforcing); RKE2 runs without it")
        return
    yield line("/etc/selinux/config", "SELINUX=enforcing", r"^SELINUX=")
    if ctx.facts.selinux == "Permissive":
        yield Command("setenforce 1", "SELinux enforcing now", onlyif='[ "$(getenforce)" = Permissive ]')


@dataclass(frozen=True)
class NmWakeOnLan(Operation):
    """Magic-packet wake armed in the NetworkManager profile of the NIC (persists across reboots)."""

    interface: str | None
    mac: str

    @property
    def label(self) -> str:
        return f"wake-on-lan magic on {self.interface or self.mac}"

    def probe(self, detail: bool) -> str:
        find = (sh("i={}", self.interface) if self.interface else
                sh('i=; for d in /sys/class/net/*; do [ "$(cat "$d/address")" = {} ] && i=${{d##*/}}; done', self.mac))
        return (f'if ! command -v nmcli >/dev/null; then echo no-nmcli; else {find}; '
                f'c=$(nmcli -g GENERAL.CONNECTION device show "$i"); echo "interface=$i"; echo "connection=$c"; '
                f'echo "wol=$(nmcli -g 802-3-ethernet.wake-on-lan connection show "$c")"; fi')

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        if fact.strip() == "no-nmcli":
            return Step(self.label, SKIP, "nmcli not found: NetworkManager does not run here, Wake-on-LAN not armed")
        values = dict(row.split("=", 1) for row in fact.splitlines() if "=" in row)
        interface, connection = values.get("interface", ""), values.get("connection", "")
        if not interface or not connection:
            return Step(self.label, SKIP, f"no NetworkManager connection on the NIC with MAC {self.mac}")
        if "magic" in re.split(r"[,\s]+", values.get("wol", "")):
            return Step(self.label, OK, f"armed in connection {connection!r}")
        arm_now = f"if command -v ethtool >/dev/null; then {rhel.wol_arm_now_command(interface)}; fi"
        return Step(self.label, CHANGE, f"connection {connection!r} has wake-on-lan {values.get('wol') or 'unset'}",
                    commands=(rhel.wol_persist_command(connection), arm_now))


# -- 2. install ------------------------------------------------------------------------------------------


def install(ctx: HostContext):
    family = ctx.facts.os_family
    version = ctx.cluster.version
    if not ctx.cluster.artifacts_dir:
        method = "rpm" if family == "rhel" else "tarball"
        yield Rke2Installed(version, family, rhel.install_command(version, family), f"get.rke2.io, {method}")
        return
    files = ctx.run.shared(f"rke2-artifacts:{ctx.cluster.name}", lambda: airgap_files(ctx))
    yield Directory(REMOTE_ARTIFACTS, mode="0700")
    for name, content in files.items():
        yield File(f"{REMOTE_ARTIFACTS}/{name}", content, mode="0600", source=f"artifacts_dir/{name}")
    script = rhel.install_command(version, family, artifact_path=REMOTE_ARTIFACTS)
    yield Rke2Installed(version, family, script, f"air-gapped from {ctx.cluster.artifacts_dir}")
    if family == "rhel":
        yield from _selinux_policy_rpm(ctx, files)


def airgap_files(ctx: HostContext) -> dict[str, bytes]:
    """The air-gap files, every one present and the release files matching sha256sum-amd64.txt, before upload."""
    base = Path(ctx.cluster.artifacts_dir).expanduser()
    missing = [name for name in AIRGAP_FILES if not (base / name).is_file()]
    if missing:
        raise Unsupported(ctx.host.name, f"RKE2 {ctx.cluster.version} air-gapped: {', '.join(missing)} missing in "
                          f"artifacts_dir {base} (get them from the RKE2 release page and get.rke2.io)")
    files = verified_files(ctx.host.name, base, CHECKSUMMED, f"RKE2 {ctx.cluster.version} release files")
    files.update({name: (base / name).read_bytes() for name in ("install.sh", "sha256sum-amd64.txt")})
    check_pinned(ctx.host.name, base / "install.sh", files["install.sh"], versions.RKE2_INSTALL_SCRIPTS,
                 "RKE2 install.sh")
    for path in sorted(base.glob("rke2-selinux-*.rpm"))[-1:]:
        files[path.name] = path.read_bytes()
        pinned = {digest: name for name, digest in versions.RKE2_SELINUX_RPMS.items() if name == path.name}
        check_pinned(ctx.host.name, path, files[path.name], pinned, "rke2-selinux RPM")
    return files


def _selinux_policy_rpm(ctx: HostContext, files: dict[str, bytes]):
    rpms = [name for name in files if name.startswith("rke2-selinux-")]
    if not rpms:
        yield Notice(f"no rke2-selinux-*.rpm in artifacts_dir {ctx.cluster.artifacts_dir}: the tarball install "
                     "brings no SELinux policy for RKE2 (put the el10 RPM there)")
        return
    yield Command(rhel.local_rpm_install_command(f"{REMOTE_ARTIFACTS}/{rpms[0]}"), f"install {rpms[0]}",
                  unless="rpm -q rke2-selinux")


@dataclass(frozen=True)
class Rke2Installed(Operation):
    """RKE2 at ``version``, found under /usr/bin (RPM) or /usr/local/bin (tarball); else ``script`` installs it."""

    version: str
    family: str
    script: str
    source: str

    @property
    def label(self) -> str:
        return f"install RKE2 {self.version} ({self.source})"

    def probe(self, detail: bool) -> str:
        return f"( {rhel.installed_version_query(self.family)} )"   # a subshell: its exit ends only itself

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        installed = rhel.parse_installed_version(fact)
        if installed == self.version:
            return Step(self.label, OK, f"rke2 {installed} installed")
        reason = f"rke2 {installed} installed" if installed else "rke2 not installed"
        return Step(self.label, CHANGE, reason, commands=(self.script,))


# -- 3. configure ----------------------------------------------------------------------------------------


def configure(ctx: HostContext):
    text = ctx.render("rke2/config.yaml.j2", os_family=ctx.facts.os_family)
    problems = check_rke2_config(text)
    if problems:
        raise InputError(f"templates/rke2/config.yaml.j2 for {ctx.host.name}: " + "; ".join(problems))
    yield Directory("/etc/rancher/rke2")
    config = File(rhel.RKE2_CONFIG, text, mode="0600", source="rke2/config.yaml.j2")
    yield config
    # Restart only a server that runs: a fresh host is started once, by rke2.start, with this config.
    yield Command(sh("systemctl restart {}", rhel.RKE2_SERVICE), "restart rke2-server (config changed)",
                  when_changed=(config.label,), onlyif=sh("systemctl is-active --quiet {}", rhel.RKE2_SERVICE))


# -- 4. start --------------------------------------------------------------------------------------------


def start(ctx: HostContext):
    yield Service(rhel.RKE2_SERVICE)
    ready = (f"{KUBECTL} get node {shlex.quote(ctx.host.name)} "
             "-o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True")
    yield wait_until(ready, f"node {ctx.host.name} Ready", timeout=600, interval=10,
                     show=f"{KUBECTL} get nodes --no-headers")


# -- 5. monitoring ---------------------------------------------------------------------------------------


def monitoring(ctx: HostContext):
    """Manifests in RKE2's auto-deploy directory: the server applies them itself, at start and on change.

    Chosen over `kubectl apply`: no kubeconfig or kubectl round trip from here, a second run compares
    files only (0 changed without asking the API), and RKE2 re-applies them after a restart or a reset.
    """
    kubernetes = ".".join(ctx.cluster.version.lstrip("v").split(".")[:2]) + ".0"
    for template in rhel.RKE2_MONITORING_MANIFESTS:
        text = ctx.render(template)
        problems = check_manifests(text, kubernetes_version=kubernetes)
        if problems:
            raise InputError(f"templates/{template} for {ctx.host.name}: " + "; ".join(problems))
        name = Path(template).name.removesuffix(".j2")
        yield File(f"{AUTO_DEPLOY_DIR}/vmstation-monitoring-{name}", text, mode="0600", source=template)
    yield wait_until(f"{KUBECTL} -n monitoring rollout status deployment/prometheus --timeout=10s",
                     "Prometheus available", timeout=600, interval=10,
                     show=f"{KUBECTL} -n monitoring get pods --no-headers")


# -- 6. artifacts ----------------------------------------------------------------------------------------


def artifacts(ctx: HostContext):
    local = inside(ctx.run.artifacts_dir, ctx.host.name)
    yield Fetch(rhel.RKE2_KUBECONFIG, str(local / "rke2.yaml"), transform=_kubeconfig_for(ctx.host))
    yield Fetch(rhel.RKE2_CONFIG, str(local / "config.yaml"))
    yield JournalCopy(rhel.RKE2_SERVICE, str(local / "rke2-server.journal"))


def _kubeconfig_for(host):
    def transform(content: bytes) -> bytes:
        check_kubeconfig(content, host.name, rhel.RKE2_KUBECONFIG)      # no exec plugin reaches this machine
        try:
            return rhel.rewrite_kubeconfig(content.decode(errors="replace"), host.address).encode()
        except InputError as exc:
            raise HostError(host.name, str(exc)) from None
    return transform


@dataclass(frozen=True)
class JournalCopy(Operation):
    """The last lines of a unit's journal, copied to the operator's machine (0600) on every run."""

    unit: str
    local_path: str

    @property
    def label(self) -> str:
        return f"journal of {self.unit} -> {self.local_path}"

    def probe(self, detail: bool) -> str:
        return sh("journalctl -u {} --no-pager -n {} 2>&1 | base64 -w0; echo", self.unit, JOURNAL_LINES)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        content = base64.b64decode(fact.strip() or b"")
        # A check, not a change: the copy is refreshed every run and changes nothing on the host.
        return Step(self.label, CHECK, f"{len(content.splitlines())} lines", secret=True,
                    local_writes=(LocalWrite(self.local_path, content, 0o600),))


# -- helpers -----------------------------------------------------------------------------------------------


def _managed_file(ctx: HostContext, path: str) -> File:
    managed = next(f for f in rhel.RKE2_HOST_FILES if f.path == path)
    return File(path, ctx.render(managed.template), mode=managed.mode, source=managed.template)


def _os_name(ctx: HostContext) -> str:
    release = ctx.facts.os_release
    return release.get("PRETTY_NAME") or release.get("NAME") or release.get("ID") or "this OS"


PHASES = [
    Phase("rke2.system-prep", "RHEL prep: dnf, NetworkManager, firewalld, SELinux, sysctls, Wake-on-LAN", rke2_hosts,
          system_prep),
    Phase("rke2.install", "RKE2 installed at the cluster's version", servers, install, needs=("rke2.system-prep",)),
    Phase("rke2.configure", "/etc/rancher/rke2/config.yaml (0600)", servers, configure, needs=("rke2.system-prep",)),
    Phase("rke2.start", "rke2-server running, node Ready", servers, start, needs=("rke2.install", "rke2.configure")),
    Phase("rke2.monitoring", "node-exporter and Prometheus (RKE2 auto-deploy)", servers, monitoring,
          needs=("rke2.start",)),
    Phase("rke2.artifacts", "kubeconfig (0600), config and rke2-server journal fetched", servers, artifacts,
          needs=("rke2.configure",)),
]

TARGETS = [
    Target("deploy-rke2", "the RKE2 cluster on RHEL 10 with its monitoring", ("rke2.artifacts", "rke2.monitoring")),
]
