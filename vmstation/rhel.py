"""The RKE2 host on RHEL (and its family): what to ask it, what to run on it, what to write to it.

Pure functions: facts in (os-release text, a cluster), command strings out. Every value that reaches a
shell goes through ``shlex.quote``. Commands are meant to run as root (the transport adds sudo).
Nothing here opens a connection; the deploy-rke2 phases call these and run what they return.

Sources: docs.rke2.io (install methods and paths, air-gap install, known issues: NetworkManager,
nm-cloud-setup, firewalld), the install script's environment variables (get.rke2.io), and findings.md.
Which install method and SELinux policy a (release, RHEL major) gets: ``vmstation.versions`` (RKE2_EL_RPMS).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

from vmstation import versions
from vmstation.errors import InputError
from vmstation.facts import os_family, parse_os_release  # noqa: F401  (re-exported: one parser, one rule)

RKE2_CONFIG = "/etc/rancher/rke2/config.yaml"
RKE2_KUBECONFIG = "/etc/rancher/rke2/rke2.yaml"
RKE2_KUBECTL = "/var/lib/rancher/rke2/bin/kubectl"
RKE2_SERVICE = "rke2-server.service"
RKE2_SERVICES = {"server": "rke2-server.service", "agent": "rke2-agent.service"}
RKE2_NODE_TOKEN = "/var/lib/rancher/rke2/server/node-token"   # written by the first server (docs: install/ha)
RKE2_SUPERVISOR_PORT = 9345
RKE2_PROFILE = "/etc/profile.d/vmstation-rke2.sh"
INSTALL_SCRIPT_URL = versions.RKE2_INSTALL_SCRIPT_URL    # get.rke2.io's script, at a pinned commit

# Ports of a single RKE2 server with Canal (docs.rke2.io/install/requirements#inbound-network-rules),
# plus node-exporter on the host network.
FIREWALLD_PORTS = (
    "6443/tcp",          # Kubernetes API
    "9345/tcp",          # RKE2 supervisor (agents and servers join here)
    "10250/tcp",         # kubelet
    "2379-2380/tcp",     # etcd client and peer
    "8472/udp",          # Canal / flannel VXLAN
    "9099/tcp",          # Canal health checks
    "30000-32767/tcp",   # NodePorts (Prometheus 30090)
    "9100/tcp",          # node-exporter
)

_RKE2_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:\+rke2r(\d+))?$")


@dataclass(frozen=True)
class ManagedFile:
    """A file deploy-rke2 renders and writes on the host."""

    path: str
    template: str
    mode: str


# What deploy-rke2 writes, with the mode each must have. config.yaml is 0600 because it may carry the
# join token; rke2 itself writes rke2.yaml with write-kubeconfig-mode "0600".
RKE2_HOST_FILES = (
    ManagedFile(RKE2_CONFIG, "rke2/config.yaml.j2", "0600"),
    ManagedFile("/etc/sysctl.d/90-rke2.conf", "rhel/90-rke2.conf.j2", "0644"),
    ManagedFile("/etc/modules-load.d/rke2.conf", "rhel/modules-load-rke2.conf.j2", "0644"),
    # Wherever NetworkManager runs it must leave the CNI interfaces alone; where it is absent the file is inert.
    ManagedFile("/etc/NetworkManager/conf.d/rke2-canal.conf", "rhel/rke2-canal.conf.j2", "0644"),
)

# Applied with kubectl (or dropped into /var/lib/rancher/rke2/server/manifests/ for RKE2 to apply), in order.
RKE2_MONITORING_MANIFESTS = (
    "rke2-monitoring/namespace.yaml.j2",
    "rke2-monitoring/node-exporter.yaml.j2",
    "rke2-monitoring/prometheus-rbac.yaml.j2",
    "rke2-monitoring/prometheus-config.yaml.j2",
    "rke2-monitoring/prometheus.yaml.j2",
)


# ---------------------------------------------------------------------------
# Facts: /etc/os-release and what follows from it
# ---------------------------------------------------------------------------


def major_version(os_release: dict[str, str]) -> int | None:
    """The major of VERSION_ID ("10.0" -> 10); None when absent (CentOS Stream says "10")."""
    match = re.match(r"(\d+)", os_release.get("VERSION_ID", ""))
    return int(match.group(1)) if match else None


def preflight_warnings(os_release: dict[str, str], rke2_version: str, selinux: bool = True) -> list[str]:
    """What the operator should know before installing ``rke2_version`` here; [] when nothing."""
    name = os_release.get("PRETTY_NAME") or os_release.get("NAME") or os_release.get("ID", "unknown OS")
    family = os_family(os_release)
    warnings = []
    major = major_version(os_release) or 0
    if family == "rhel" and not rpms_published(rke2_version, major):
        warnings.append(f"{name}: RKE2 {rke2_version} publishes no RPMs for RHEL {major}: installed from the "
                        f"tarball (INSTALL_RKE2_METHOD=tar, binaries in /usr/local/bin, units in "
                        f"/usr/local/lib/systemd/system, PATH in {RKE2_PROFILE})"
                        + ("" if selinux else "; selinux = false: containers run without SELinux labels"))
    if family == "other":
        warnings.append(f"{name}: neither RHEL- nor Debian-family; RKE2 installs from the tarball, untested here")
    return warnings


def rpms_published(version: str, rhel_major: int) -> bool:
    """Whether rancher publishes RKE2 ``version`` as RPMs for RHEL ``rhel_major`` (versions.RKE2_EL_RPMS)."""
    first_patches = versions.RKE2_EL_RPMS.get(rhel_major)
    if first_patches is None:
        return True
    major, minor, patch = parse_rke2_version(version)[:3]
    if (major, minor) in first_patches:
        return patch >= first_patches[(major, minor)]
    return (major, minor) > max(first_patches)


def first_releases_with_rpms(rhel_major: int) -> str:
    """"v1.32.11+rke2r1, v1.33.7+rke2r1, ..." for messages: the first release of each line with RPMs."""
    lines = sorted(versions.RKE2_EL_RPMS.get(rhel_major, {}).items())
    return ", ".join(f"v{major}.{minor}.{patch}+rke2r1" for (major, minor), patch in lines)


def selinux_policy_problem(version: str, family: str, rhel_major: int, selinux: bool) -> str | None:
    """Why ``selinux: true`` cannot be honoured for ``version`` on this RHEL major; None when it can.

    The policy (rke2-selinux) comes with the RPMs; rancher publishes it for a major only alongside releases
    that have RPMs there (versions.RKE2_EL_RPMS), so a release without them has no policy to install.
    """
    if family != "rhel" or not selinux or rpms_published(version, rhel_major):
        return None
    return (f"RKE2 {version} publishes no RPMs and no SELinux policy (rke2-selinux) for RHEL {rhel_major}; "
            f"either set version to a release that has them ({first_releases_with_rpms(rhel_major)} or later "
            f"in their lines), or set selinux = false (RKE2 then installs from the tarball and containerd labels "
            f"no container: pods run without SELinux confinement while the host stays enforcing)")


def parse_rke2_version(version: str) -> tuple[int, int, int, int]:
    """"v1.29.15+rke2r1" -> (1, 29, 15, 1); InputError when it is not an RKE2 version."""
    match = _RKE2_VERSION.match(version.strip())
    if not match:
        raise InputError(f"RKE2 version {version!r} is not of the form v1.29.15+rke2r1")
    return tuple(int(part or 0) for part in match.groups())  # type: ignore[return-value]


# ---------------------------------------------------------------------------
# Packages, services, firewall
# ---------------------------------------------------------------------------


def rhel_packages(os_release: dict[str, str], kernel_release: str | None = None) -> tuple[str, ...]:
    """Packages to install from the OS repositories before RKE2.

    rke2-selinux is not here: it comes from the Rancher RPM repository that the install script writes
    (/etc/yum.repos.d/rancher-rke2.repo) as a dependency of rke2-server. Air-gapped, install it from
    the artifacts directory with ``local_rpm_install_command``. No iptables package: RKE2's components
    bring their own. RHEL 10 moved modules Canal needs (xt_* matches, vxlan helpers) to
    kernel-modules-extra; pinned to the running kernel when ``kernel_release`` (``uname -r``) is known,
    so they load without a reboot.
    """
    packages = ["container-selinux"]
    if (major_version(os_release) or 0) >= 10:
        packages.append(f"kernel-modules-extra-{kernel_release}" if kernel_release else "kernel-modules-extra")
    return tuple(packages)


def dnf_install_command(packages: tuple[str, ...] | list[str]) -> str:
    """``dnf install -y`` of ``packages`` (already installed ones are a no-op for dnf)."""
    if not packages:
        raise ValueError("dnf_install_command needs at least one package")
    return "dnf install -y " + " ".join(shlex.quote(p) for p in packages)


def local_rpm_install_command(rpm_path: str) -> str:
    """Install one RPM copied to the host (air-gapped rke2-selinux), dependencies from the OS repositories."""
    return f"dnf install -y {shlex.quote(rpm_path)}"


def nm_cloud_setup_disable_commands() -> list[str]:
    """Disable nm-cloud-setup where present: it rewrites routes under Canal (RKE2 known issues)."""
    return [_if_unit_exists(unit, f"systemctl disable --now {shlex.quote(unit)}")
            for unit in ("nm-cloud-setup.service", "nm-cloud-setup.timer")]


def networkmanager_reload_command() -> str:
    """Make NetworkManager read conf.d again (after rke2-canal.conf changed)."""
    return _if_unit_exists("NetworkManager.service", "systemctl reload NetworkManager.service")


def firewall_commands(firewall: str, pod_cidr: str, service_cidr: str, zone: str | None = None) -> list[str]:
    """What to run for ``Cluster.firewall``: "open-ports" opens FIREWALLD_PORTS, "disabled" stops firewalld.

    Open ports alone do not let pods reach the host through firewalld: the pod and service CIDRs go
    into the trusted zone, as the K3s/RKE2 docs advise for firewalld hosts.
    """
    if firewall == "disabled":
        return [_if_unit_exists("firewalld.service", "systemctl disable --now firewalld.service")]
    if firewall != "open-ports":
        raise InputError(f"firewall {firewall!r} is not one of 'open-ports', 'disabled'")
    zone_option = f" --zone={shlex.quote(zone)}" if zone else ""
    ports = " ".join(f"--add-port={shlex.quote(port)}" for port in FIREWALLD_PORTS)
    sources = " ".join(f"--add-source={shlex.quote(cidr)}" for cidr in (pod_cidr, service_cidr))
    return [
        f"firewall-cmd --permanent{zone_option} {ports}",
        f"firewall-cmd --permanent --zone=trusted {sources}",
        "firewall-cmd --reload",
    ]


def firewall_ports_query(zone: str | None = None) -> str:
    """The fact: the ports open in the permanent configuration, space-separated on one line."""
    return "firewall-cmd --permanent" + (f" --zone={shlex.quote(zone)}" if zone else "") + " --list-ports"


def missing_firewall_ports(listed: str) -> tuple[str, ...]:
    """FIREWALLD_PORTS not in the output of ``firewall_ports_query``: () means nothing to do."""
    open_ports = set(listed.split())
    return tuple(port for port in FIREWALLD_PORTS if port not in open_ports)


# ---------------------------------------------------------------------------
# Wake-on-LAN, persistent through NetworkManager (no dispatcher script, no ethtool at boot)
# ---------------------------------------------------------------------------


def default_interface_query() -> str:
    """The fact used when the inventory names no interface: the IPv4 default route."""
    return "ip -o -4 route show default"


def parse_default_interface(text: str) -> str | None:
    """The ``dev`` of the first default route (``default via 192.0.2.1 dev eno1 proto dhcp ...``)."""
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["default"] and "dev" in words[:-1]:
            return words[words.index("dev") + 1]
    return None


def nm_connection_query(interface: str) -> str:
    """The fact: the name of the NetworkManager connection active on ``interface``."""
    return f"nmcli -g GENERAL.CONNECTION device show {shlex.quote(interface)}"


def wol_query(connection: str) -> str:
    """The fact: the connection's wake-on-lan setting ("magic" once armed)."""
    return f"nmcli -g 802-3-ethernet.wake-on-lan connection show {shlex.quote(connection)}"


def wol_persist_command(connection: str) -> str:
    """Arm magic-packet wake in the connection profile: NetworkManager applies it at every activation."""
    return f"nmcli connection modify {shlex.quote(connection)} 802-3-ethernet.wake-on-lan magic"


def wol_arm_now_command(interface: str) -> str:
    """Arm the NIC for this boot too, without re-activating the connection under an SSH session."""
    return f"ethtool -s {shlex.quote(interface)} wol g"


# ---------------------------------------------------------------------------
# Install, where it lands, uninstall
# ---------------------------------------------------------------------------


def install_method(version: str, family: str, rhel_major: int, airgapped: bool = False) -> str:
    """"rpm" where rancher publishes RPMs of ``version`` for this RHEL major (online), else "tar"."""
    return "rpm" if family == "rhel" and not airgapped and rpms_published(version, rhel_major) else "tar"


def install_command(version: str, family: str, artifact_path: str | None = None, rhel_major: int = 10,
                    node_type: str = "server", script_sha256: str = versions.RKE2_INSTALL_SCRIPT_SHA256) -> str:
    """The official install script for an RKE2 ``node_type`` ("server" or "agent") at ``version``.

    Online it is fetched to a fresh mktemp file first: ``curl | sh`` would run an empty script after a
    failed download and report success, and a fixed name in a shared directory could be planted by
    another user. It comes from a pinned commit and runs only when its sha256 is ``script_sha256``.
    RHEL family with RPMs for its major: INSTALL_RKE2_METHOD=rpm (binaries in /usr/bin,
    rke2-selinux pulled in). Without them, and air-gapped (``artifact_path``: a directory on the host
    holding install.sh, rke2.linux-amd64.tar.gz, rke2-images.linux-amd64.tar.zst, sha256sum-amd64.txt):
    INSTALL_RKE2_METHOD=tar, binaries under /usr/local/bin, units in /usr/local/lib/systemd/system (moved
    to /etc/systemd/system when /usr/local is read-only and /opt/rke2 is used), and install.sh runs
    restorecon on them when rke2-selinux is installed (rancher/rke2 install.sh do_restorecon_tar).
    """
    parse_rke2_version(version)
    if node_type not in RKE2_SERVICES:
        raise ValueError(f"node_type {node_type!r} is not server or agent")
    env = {"INSTALL_RKE2_VERSION": version, "INSTALL_RKE2_TYPE": node_type}
    if artifact_path:
        env.update(INSTALL_RKE2_ARTIFACT_PATH=artifact_path, INSTALL_RKE2_METHOD="tar")
        return f"{_env_words(env)} sh {shlex.quote(artifact_path.rstrip('/') + '/install.sh')}"
    if family == "rhel":
        env["INSTALL_RKE2_METHOD"] = install_method(version, family, rhel_major)
    # The script runs only if its sha256 is the pinned one (versions.py): a moved or altered script never runs.
    check = f'printf "%s  %s\\n" {shlex.quote(script_sha256)} "$script" | sha256sum -c --status'
    return (f'script=$(mktemp) && curl -sfL --retry 3 -o "$script" {shlex.quote(INSTALL_SCRIPT_URL)} && '
            f'{{ {check} || {{ echo "install.sh: sha256 differs from the pinned one" >&2; false; }}; }} && '
            f'{_env_words(env)} sh "$script"; status=$?; rm -f "$script"; exit $status')


def rke2_installed_paths(family: str) -> tuple[str, ...]:
    """Where an installed ``rke2`` binary can be, most likely first.

    RPMs (RHEL family, online) put it in /usr/bin; the tarball (other families, and air-gapped RHEL)
    in /usr/local/bin, or /opt/rke2/bin where /usr/local is read-only.
    """
    tarball = ("/usr/local/bin/rke2", "/opt/rke2/bin/rke2")
    return ("/usr/bin/rke2", *tarball) if family == "rhel" else tarball


def installed_version_query(family: str) -> str:
    """The fact: ``rke2 --version`` of the first installed binary; exit 1 and no output when none is."""
    paths = " ".join(shlex.quote(p) for p in rke2_installed_paths(family))
    return f'for p in {paths}; do if [ -x "$p" ]; then exec "$p" --version; fi; done; exit 1'


def parse_installed_version(text: str) -> str | None:
    """"rke2 version v1.29.15+rke2r1 (abc)" -> "v1.29.15+rke2r1"; None when not installed."""
    match = re.search(r"rke2 version (v\S+)", text)
    return match.group(1) if match else None


def uninstall_script_paths() -> tuple[str, ...]:
    """Where rke2-uninstall.sh can be: beside the binary of either install method."""
    return tuple(path + "-uninstall.sh" for path in rke2_installed_paths("rhel"))


def uninstall_command() -> str:
    """Run the first uninstall script found; exit 0 with nothing to do when RKE2 is not installed."""
    paths = " ".join(shlex.quote(p) for p in uninstall_script_paths())
    return f'for p in {paths}; do if [ -x "$p" ]; then exec "$p"; fi; done; exit 0'


def killall_command() -> str:
    """Stop RKE2 and every container it started (rke2-killall.sh beside the binary); exit 0 when absent."""
    paths = " ".join(shlex.quote(p + "-killall.sh") for p in rke2_installed_paths("rhel"))
    return f'for p in {paths}; do if [ -x "$p" ]; then exec "$p"; fi; done; exit 0'


def server_url(address: str) -> str:
    """The supervisor URL joining nodes register with: https://FIRST:9345 (docs.rke2.io/install/ha)."""
    return f"https://{host_in_url(address)}:{RKE2_SUPERVISOR_PORT}"


def node_token_query() -> str:
    """The fact read on the first server: its node token, nothing else printed; exit 1 while there is none."""
    return f"cat -- {shlex.quote(RKE2_NODE_TOKEN)}"


def parse_node_token(text: str) -> str | None:
    """The token from ``node_token_query``'s output (one line, "K10<hash>::server:<secret>"); None if empty."""
    token = text.strip()
    return token if token and "\n" not in token and " " not in token else None


# ---------------------------------------------------------------------------
# The kubeconfig RKE2 writes, made usable from another machine
# ---------------------------------------------------------------------------

_LOCAL_SERVER = "https://127.0.0.1:6443"


def rewrite_kubeconfig(text: str, address: str) -> str:
    """``rke2.yaml`` with its server https://127.0.0.1:6443 pointed at https://ADDRESS:6443.

    Parsed, not searched: only ``clusters[*].cluster.server`` equal to the local URL changes, the rest
    (certificates, users, contexts, key order) is kept. A kubeconfig with nothing to change comes back
    byte for byte, so fetching it twice changes nothing.
    """
    import yaml

    server = f"https://{host_in_url(address)}:6443"
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{RKE2_KUBECONFIG}: not YAML ({_first_line(exc)})") from None
    if not isinstance(config, dict) or not isinstance(config.get("clusters"), list):
        raise InputError(f"{RKE2_KUBECONFIG}: not a kubeconfig (no 'clusters' list)")
    changed = False
    for entry in config["clusters"]:
        cluster = entry.get("cluster") if isinstance(entry, dict) else None
        if isinstance(cluster, dict) and cluster.get("server") == _LOCAL_SERVER:
            cluster["server"] = server
            changed = True
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False) if changed else text


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _if_unit_exists(unit: str, command: str) -> str:
    """Run ``command`` only where ``unit`` is installed (a missing unit is nothing to do, not a failure)."""
    return f"if systemctl cat {shlex.quote(unit)} >/dev/null 2>&1; then {command}; fi"


def _env_words(env: dict[str, str]) -> str:
    return " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())


def host_in_url(address: str) -> str:
    """``address`` as the host part of a URL (IPv6 in brackets); InputError when it is neither IP nor name."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", address):
            raise InputError(f"address {address!r} is neither an IP address nor a host name") from None
        return address
    return f"[{ip}]" if ip.version == 6 else str(ip)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
