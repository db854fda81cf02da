"""deploy-rke2: the RKE2 cluster on RHEL 10 (a first server, more servers, agents), in the architecture's phases.

    certs.rke2-expiry   (vmstation.phases.certs) first: a running server whose certificates expired is refused
    rke2.system-prep    packages (dnf), NetworkManager, nm-cloud-setup, firewalld, SELinux, modules, sysctls, WoL
    rke2.install        RKE2 at the cluster's version, server or agent by role: RPMs where rancher publishes
                        them for the OS major, else the tarball; or checked files from the artifacts directory
    rke2.configure      the first server's config.yaml (0600), checked before it is pushed; restart on change
    rke2.start          rke2-server on the first server, its node Ready (bounded wait)
    rke2.join-configure the other servers' and the agents' config.yaml (0600) with `server: https://FIRST:9345`
                        and the cluster token read from the first server (a secret: never shown, never in argv)
    rke2.join-start     rke2-server / rke2-agent on them, running
    rke2.nodes-ready    every node of the cluster Ready, seen from the first server
    rke2.monitoring     node-exporter and Prometheus, dropped into RKE2's own auto-deploy directory
    rke2.artifacts      kubeconfig (rewritten to the host's address), config and journal, local 0600
    rke2.join-artifacts the same from the other nodes (a kubeconfig from servers only)

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

from vmstation import rhel, support, versions
from vmstation.artifacts import check_pinned, verified_files
from vmstation.config_checks import check_manifests
from vmstation.context import HostContext
from vmstation.errors import HostError, InputError, InventoryError, Unsupported
from vmstation.fetched import check_kubeconfig
from vmstation.graph import Phase, Target, hosts_of_kind
from vmstation.rke2_topology import cluster_token, first_server, first_servers, joining_nodes, node_type
from vmstation.operations import (CHANGE, CHECK, OK, SKIP, Command, Directory, Fetch, File, KernelModule,
                                  LocalFile, LocalWrite, Notice, Operation, Package, Service, Step, Sysctl, line,
                                  local_file, sh, wait_until)
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


# -- 1. system prep ---------------------------------------------------------------------------------


def system_prep(ctx: HostContext):
    facts = ctx.facts
    _refuse_selinux_without_policy(ctx)
    for warning in rhel.preflight_warnings(facts.os_release, ctx.cluster.version, _selinux(ctx)):
        yield Notice(warning)
    notice = support.rke2_notice(ctx.cluster.version, ctx.run.today)
    if notice:
        yield Notice(notice)
    if facts.os_family == "rhel":
        yield from _rhel_packages(ctx)
    else:
        yield Notice(f"{_os_name(ctx)} is not RHEL-family: generic prep only (no dnf packages, firewalld or "
                     "SELinux steps); RKE2 installs from its tarball")
    yield from _kernel(ctx)
    yield from _network_manager(ctx)
    yield from _firewall(ctx)
    if facts.os_family == "rhel":
        yield from _selinux_enforcing(ctx)
    if ctx.host.mac and not ctx.host.always_on:
        yield NmWakeOnLan(ctx.host.interface, ctx.host.mac)


def _refuse_selinux_without_policy(ctx: HostContext) -> None:
    """Bad input, before any host is touched (preflight renders this offline): selinux without a policy."""
    problem = rhel.selinux_policy_problem(ctx.cluster.version, ctx.facts.os_family, ctx.facts.os_major_version,
                                          ctx.cluster.selinux)
    if problem:
        raise InventoryError(ctx.inventory.path, f"{problem} ({_os_name(ctx)} on {ctx.host.name})",
                             key=f"clusters.{ctx.cluster.name}.version")


def _selinux(ctx: HostContext) -> bool:
    """``selinux: true`` in config.yaml: a RHEL-family host of a cluster that keeps it (the default)."""
    return ctx.facts.os_family == "rhel" and ctx.cluster.selinux


def _rhel_packages(ctx: HostContext):
    yield Package(("container-selinux",), manager="dnf")
    if ctx.host.has_role("server"):
        # The RKE2 certificate expiry check (certs.rke2-expiry before each deploy and upgrade, and `vmstation
        # status`) reads the server's certificates with the openssl command, which RHEL ships in its own
        # package, apart from the openssl-libs everything links against. Nothing upstream says RHEL 10's
        # minimal install carries it; minimal installs have gone without it (CentOS 7 minimal:
        # geerlingguy/ansible-role-gitlab#63) and openshift/microshift's RHEL 10 bootc images install it
        # explicitly (openshift/microshift#6782). So it is installed here, as container-selinux is; a deploy's
        # first expiry check comes before it but has no certificates to read then (rke2-server makes them).
        yield Package(("openssl",), manager="dnf")
    if ctx.facts.os_major_version >= 10:
        # Pinned to the running kernel so the extra modules load now, without a reboot into a newer kernel.
        package = f"kernel-modules-extra-{ctx.facts.kernel}"
        yield Command(rhel.dnf_install_command((package,)), f"install {package} (RHEL 10 keeps vxlan there)",
                      unless=sh("rpm -q {}", package))


def _kernel(ctx: HostContext):
    yield _managed_file(ctx, "/etc/modules-load.d/rke2.conf")
    overlay, br_netfilter = KernelModule("overlay"), KernelModule("br_netfilter")
    yield overlay
    yield br_netfilter
    sysctl_file = _managed_file(ctx, "/etc/sysctl.d/90-rke2.conf")
    yield sysctl_file
    for key, value in sysctl_settings(sysctl_file.content):
        # br_netfilter may load in this very phase, after the probes ran: its keys are set once it has.
        yield Sysctl(key, value, needs_module=br_netfilter if key.startswith("net.bridge.") else None)


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
                  when_changed=(conf,))
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
                      "stop and disable firewalld (RKE2 known issue: firewalld conflicts with Canal)",
                      onlyif="systemctl is-enabled --quiet firewalld || systemctl is-active --quiet firewalld")
        return
    yield Notice(f"firewall = \"open-ports\" keeps firewalld running: RKE2 documents that firewalld conflicts "
                 f"with Canal and should be disabled ({versions.RKE2_FIREWALLD_KNOWN_ISSUE}); ports and the pod "
                 "and service networks are opened, but Canal's own rules may still be overridden")
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


def _selinux_enforcing(ctx: HostContext):
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
    family, major = ctx.facts.os_family, ctx.facts.os_major_version
    version, kind = ctx.cluster.version, node_type(ctx.host)
    if not ctx.cluster.artifacts_dir:
        method = rhel.install_method(version, family, major)
        if method == "tar" and family == "rhel":
            yield _path_profile()
        script = rhel.install_command(version, family, rhel_major=major, node_type=kind)
        yield Rke2Installed(version, family, script, f"get.rke2.io, {method}, {kind}")
        return
    files = ctx.run.shared(f"rke2-artifacts:{ctx.cluster.name}", lambda: airgap_files(ctx))
    yield Directory(REMOTE_ARTIFACTS, mode="0700")
    for name, content in files.items():
        yield File(f"{REMOTE_ARTIFACTS}/{name}", content, mode="0600", source=f"artifacts_dir/{name}")
    if family == "rhel":
        yield _path_profile()
        if _selinux(ctx):
            # Before install.sh: it restores the SELinux contexts of what it unpacks only when rke2-selinux is
            # installed (rancher/rke2 install.sh, do_restorecon_tar).
            yield from _selinux_policy_rpm(ctx, files)
    script = rhel.install_command(version, family, artifact_path=REMOTE_ARTIFACTS, node_type=kind)
    yield Rke2Installed(version, family, script, f"air-gapped from {ctx.cluster.artifacts_dir}, {kind}")


def _path_profile() -> File:
    """The tarball's binaries on login shells' PATH (install.sh only prints the hint; sudo's secure_path on
    RHEL still leaves /usr/local/bin out, so vmstation itself always calls RKE2's tools by full path)."""
    return File(rhel.RKE2_PROFILE, 'PATH="$PATH:/usr/local/bin:/var/lib/rancher/rke2/bin"\nexport PATH\n',
                source="rke2 tarball PATH")


def airgap_files(ctx: HostContext) -> dict[str, "bytes | LocalFile"]:
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
    for path in sorted(base.glob("rke2-selinux-*.rpm")):
        files[path.name] = local_file(path)
        check_pinned(ctx.host.name, path, files[path.name], selinux_rpm_pins(base, path.name), "rke2-selinux RPM",
                     "vmstation/versions.py, or the release's sha256sum-*-noarch.txt in artifacts_dir")
    return files


def selinux_rpm_pins(base: Path, name: str) -> dict[str, str]:
    """Accepted digests of the RPM ``name``: pinned in versions.py, or listed in the checksum file that
    rke2-selinux's release publishes beside its RPMs (``sha256sum-<os>-noarch.txt``), like the tarballs'."""
    pins = {digest: "versions.RKE2_SELINUX_RPMS" for rpm, digest in versions.RKE2_SELINUX_RPMS.items() if rpm == name}
    for sums in sorted(base.glob("sha256sum-*-noarch.txt")):
        for raw in sums.read_text(errors="replace").splitlines():
            parts = raw.split()
            if len(parts) == 2 and Path(parts[1].lstrip("*")).name == name:
                pins[parts[0].lower()] = sums.name
    return pins


def _selinux_policy_rpm(ctx: HostContext, files: dict[str, bytes]):
    """The policy air-gapped: `selinux: true` without it would start containers under a policy that is not there."""
    major = ctx.facts.os_major_version
    rpms = [name for name in files if name.startswith("rke2-selinux-") and f".el{major}." in name]
    if not rpms:
        raise InventoryError(ctx.inventory.path, f"selinux is on but artifacts_dir {ctx.cluster.artifacts_dir} "
                             f"holds no rke2-selinux-*.el{major}.noarch.rpm (rpm.rancher.io/rke2/stable/common/"
                             f"centos/{major}/noarch); put it there, or set selinux = false",
                             key=f"clusters.{ctx.cluster.name}.artifacts_dir")
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
    """The first server's config: no `server`, no `token` (it generates the token under server/node-token)."""
    yield from _config(ctx)


def join_configure(ctx: HostContext):
    """Another server's or an agent's config: the first server's supervisor URL and the cluster token."""
    first = first_server(ctx.inventory, ctx.cluster.name)
    token = cluster_token(ctx, first)
    yield from _config(ctx, server_url=rhel.server_url(first.address), token=token)


def _config(ctx: HostContext, server_url: str | None = None, token=None):
    kind = node_type(ctx.host)
    extra = {"server_url": server_url, "token": token.reveal()} if token is not None else {}
    text = ctx.render("rke2/config.yaml.j2", os_family=ctx.facts.os_family, role=kind, selinux=_selinux(ctx),
                      checked_by=lambda text: check_rke2_config(text, role=kind, joining=token is not None), **extra)
    yield Directory("/etc/rancher/rke2")
    # Secret when it holds the token: uploaded as content over SFTP, 0600 root, never diffed or shown.
    config = File(rhel.RKE2_CONFIG, text, mode="0600", secret=token is not None, source="rke2/config.yaml.j2")
    yield config
    # Restart only a node that runs: a fresh host is started once, by its start phase, with this config.
    service = rhel.RKE2_SERVICES[kind]
    yield Command(sh("systemctl restart {}", service), f"restart {service.removesuffix('.service')} (config changed)",
                  when_changed=(config,), onlyif=sh("systemctl is-active --quiet {}", service))


# -- 4. start --------------------------------------------------------------------------------------------


def start(ctx: HostContext):
    yield Service(rhel.RKE2_SERVICE)
    ready = (f"{KUBECTL} get node {shlex.quote(ctx.host.name)} "
             "-o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True")
    yield wait_until(ready, f"node {ctx.host.name} Ready", timeout=600, interval=10,
                     show=f"{KUBECTL} get nodes --no-headers")


def join_start(ctx: HostContext):
    service = rhel.RKE2_SERVICES[node_type(ctx.host)]
    yield Service(service)
    yield wait_until(sh("systemctl is-active --quiet {}", service), f"{service} active", timeout=600, interval=10)


def nodes_ready(ctx: HostContext):
    """Every node of the cluster Ready, asked on the first server (agents have no kubeconfig)."""
    expected = len(ctx.inventory.hosts_of(ctx.cluster.name))
    ready = f"[ \"$({KUBECTL} get nodes --no-headers | awk '$2 ~ /^Ready/' | wc -l)\" -ge {expected} ]"
    yield wait_until(ready, f"{expected} nodes Ready", timeout=600, interval=10,
                     show=f"{KUBECTL} get nodes --no-headers")


# -- 5. monitoring ---------------------------------------------------------------------------------------


def monitoring(ctx: HostContext):
    """Manifests in RKE2's auto-deploy directory: the server applies them itself, at start and on change.

    Chosen over `kubectl apply`: no kubeconfig or kubectl round trip from here, a second run compares
    files only (0 changed without asking the API), and RKE2 re-applies them after a restart or a reset.
    """
    kubernetes = support.minor_of(ctx.cluster.version) + ".0"
    for template in rhel.RKE2_MONITORING_MANIFESTS:
        text = ctx.render(template, checked_by=lambda text: check_manifests(text, kubernetes_version=kubernetes))
        name = Path(template).name.removesuffix(".j2")
        yield File(f"{AUTO_DEPLOY_DIR}/vmstation-monitoring-{name}", text, mode="0600", source=template)
    yield wait_until(f"{KUBECTL} -n monitoring rollout status deployment/prometheus --timeout=10s",
                     "Prometheus available", timeout=600, interval=10,
                     show=f"{KUBECTL} -n monitoring get pods --no-headers")


# -- 6. artifacts ----------------------------------------------------------------------------------------


def artifacts(ctx: HostContext):
    local = inside(ctx.run.artifacts_dir, ctx.host.name)
    service = rhel.RKE2_SERVICES[node_type(ctx.host)]
    if ctx.host.has_role("server"):         # agents have no kubeconfig
        yield Fetch(rhel.RKE2_KUBECONFIG, str(local / "rke2.yaml"), transform=_kubeconfig_for(ctx.host))
    # A joining node's config holds the cluster token: the copy here keeps everything but that value.
    yield Fetch(rhel.RKE2_CONFIG, str(local / "config.yaml"), transform=without_token)
    yield JournalCopy(service, str(local / f"{service.removesuffix('.service')}.journal"))


def without_token(content: bytes) -> bytes:
    """config.yaml with the value of its top-level `token:` replaced by a note (vmstation writes it on one line)."""
    return re.sub(rb"(?m)^token:.*$", b'token: "(not copied: the cluster token stays on the node)"', content)


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
          system_prep, needs=("certs.rke2-expiry",)),     # nothing is touched over an expired server
    Phase("rke2.install", "RKE2 installed at the cluster's version (server or agent)", rke2_hosts, install,
          needs=("rke2.system-prep",)),
    Phase("rke2.configure", "first server's /etc/rancher/rke2/config.yaml (0600)", first_servers, configure,
          needs=("rke2.system-prep",)),
    Phase("rke2.start", "rke2-server running on the first server, node Ready", first_servers, start,
          needs=("rke2.install", "rke2.configure")),
    Phase("rke2.join-configure", "config.yaml (0600) with server and token on the other nodes", joining_nodes,
          join_configure, needs=("rke2.system-prep", "rke2.start")),
    Phase("rke2.join-start", "rke2-server / rke2-agent running on the other nodes", joining_nodes, join_start,
          needs=("rke2.install", "rke2.join-configure")),
    Phase("rke2.nodes-ready", "every node of the cluster Ready", first_servers, nodes_ready,
          needs=("rke2.start", "rke2.join-start")),
    Phase("rke2.monitoring", "node-exporter and Prometheus (RKE2 auto-deploy)", first_servers, monitoring,
          needs=("rke2.start",)),
    Phase("rke2.artifacts", "kubeconfig (0600), config and rke2-server journal fetched", first_servers, artifacts,
          needs=("rke2.configure",)),
    Phase("rke2.join-artifacts", "config, journal (and a server's kubeconfig) fetched from the other nodes",
          joining_nodes, artifacts, needs=("rke2.join-configure",)),
]

TARGETS = [
    Target("deploy-rke2", "the RKE2 cluster on RHEL 10 with its monitoring",
           ("rke2.artifacts", "rke2.join-artifacts", "rke2.monitoring", "rke2.nodes-ready"),
           command="Deploy the RKE2 cluster: RHEL prep, install, configure, start, monitoring, artifacts."),
]
