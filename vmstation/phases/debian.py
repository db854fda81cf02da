"""deploy-debian: the kubeadm cluster, in the eight phases of the homelab's architecture.

    debian.system-prep        swap off, modules, sysctls (everyone)
    debian.containerd         containerd from the inventory's source (everyone)
    debian.containerd-config  the rendered config for the installed version, restart on change
    debian.cni-plugins        /opt/cni/bin (Debian's plugins, or a tarball from the artifacts directory)
    debian.kube-binaries      kubeadm, kubelet, kubectl 1.29.15 (pkgs.k8s.io, or the artifacts directory)
    debian.kubeadm-config     /etc/kubernetes/kubeadm-init.yaml (v1beta3 before 1.31, v1beta4 from 1.31), checked
                              against that API's fields before it is pushed
    debian.control-plane-init kubeadm init (skipped when admin.conf exists), API answering
    debian.worker-join        kubeadm join with a fresh token (skipped when kubelet.conf exists)
    debian.flannel            Flannel v0.27.4, applied server-side when it differs
    debian.nodes-ready        every node of the inventory Ready (bounded, conditions shown)
    debian.apps               monitoring, logging and Jellyfin, applied server-side when they differ
    debian.kubeconfig         admin.conf fetched to the operator's machine, mode 0600

On a machine where the Kubernetes binaries cannot be had, debian.kube-binaries
stops with Unsupported and the phases that need it are reported as blocked.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from vmstation import dashboards, support, versions
from vmstation.artifacts import verified_files
from vmstation.config_checks import check_containerd_config, check_kubeadm_config, check_manifests
from vmstation.context import HostContext
from vmstation.errors import HostError, InventoryError, Unsupported
from vmstation.fetched import check_kubeconfig
from vmstation.graph import Phase, Target, hosts_of_kind, hosts_with_role
from vmstation.handles import ReadFrom
from vmstation.operations import (Check, Command, Directory, Edit, File, KernelModule, Notice, Package, Service,
                                  Sysctl, sh, wait_until)
from vmstation.secrets import Secret
from vmstation.values import inside

ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
KUBECTL = f"kubectl --kubeconfig={ADMIN_CONF}"
MANIFEST_DIR = "/etc/vmstation/manifests"
KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
KUBE_BINARIES = ("kubeadm", "kubelet", "kubectl")
SYSCTLS = {"net.bridge.bridge-nf-call-iptables": "1", "net.bridge.bridge-nf-call-ip6tables": "1",
           "net.ipv4.ip_forward": "1"}
APPS = ("namespaces", "node-exporter", "kube-state-metrics", "prometheus", "loki", "promtail", "grafana-dashboards",
        "grafana", "jellyfin")
READY_COLUMNS = ('{range .items[*]}{.metadata.name}{" Ready="}{.status.conditions[?(@.type=="Ready")].status}'
                 '{" "}{.status.conditions[?(@.type=="Ready")].reason}{"\\n"}{end}')
PLAN_JOIN = {"token": Secret("planpl.aceholder0000000"), "ca_cert_hash": "sha256:" + "0" * 64}

KUBERNETES_SCHEMAS = functools.partial(check_manifests, kubernetes_version="1.29.0")

kubeadm_hosts = hosts_of_kind("kubeadm")
control_planes = hosts_with_role("kubeadm", "control-plane")
workers = hosts_with_role("kubeadm", "worker")


# -- 2. system prep --------------------------------------------------------------------------------


def system_prep(ctx: HostContext):
    notice = support.kubernetes_notice(ctx.cluster.version, ctx.run.today)
    if notice:
        yield Notice(notice)
    if ctx.cluster.proxy_mode == "nftables":
        yield Check(nftables_kernel_check(), "kernel ready for kube-proxy and Flannel in nftables mode "
                    f"(>= {NFTABLES_KERNEL}, nf_tables)")
    if ctx.host.apt_proxy:
        yield File("/etc/apt/apt.conf.d/90vmstation-proxy", ctx.render("system/90vmstation-proxy.j2"))
    yield Command("swapoff -a", "swap off now", onlyif="[ \"$(tail -n +2 /proc/swaps | wc -l)\" -gt 0 ]")
    yield Edit("/etc/fstab", comment_out_swap, "swap lines commented out")
    yield File("/etc/modules-load.d/kubernetes.conf", ctx.render("system/modules-kubernetes.conf.j2"))
    overlay, br_netfilter = KernelModule("overlay"), KernelModule("br_netfilter")
    yield overlay
    yield br_netfilter
    yield File("/etc/sysctl.d/99-kubernetes.conf", ctx.render("system/99-kubernetes.conf.j2"))
    for key, value in SYSCTLS.items():
        yield Sysctl(key, value, needs_module=br_netfilter if key.startswith("net.bridge.") else None)


# kube-proxy's nftables mode refuses kernels older than 5.13 from 1.31 on ("kube-proxy in nftables mode
# requires kernel 5.13 or later", kubernetes/kubernetes pkg/proxy/nftables, utilkernel.
# NFTablesKubeProxyKernelVersion, kubernetes/kubernetes#124152); 1.29's alpha probed nft features instead and
# needed about 5.6.9 (kubernetes/kubernetes#122572). vmstation asks for 5.13 either way, so an upgrade does not
# break a node. Both kube-proxy and Flannel's EnableNFTables need nf_tables in the kernel (built in or a
# module); they run `nft` from their own images (Flannel's: images/Dockerfile at v0.27.4, `apk add ... nftables`),
# so the host needs no nftables package.
NFTABLES_KERNEL = "5.13"


def nftables_kernel_check() -> str:
    """A check that fails, saying why, on a kernel nftables mode cannot use; prints nothing when it can.

    Steps run under pipefail: `grep -c` reads all of gzip's output, where `grep -q` would stop early and leave
    gzip dying of SIGPIPE, failing the pipeline on a kernel that has nf_tables built in."""
    why_old = sh("{}", f"is older than {NFTABLES_KERNEL}, which kube-proxy's nftables mode needs: upgrade the "
                       'kernel or set proxy_mode = "iptables" in hosts.toml')
    why_missing = sh("{}", 'has no nf_tables (not built in, no module): set proxy_mode = "iptables" in hosts.toml')
    return (f'k=$(uname -r); [ "$(printf \'%s\\n\' {NFTABLES_KERNEL} "${{k%%-*}}" | sort -V | head -n 1)" = '
            f'{NFTABLES_KERNEL} ] || {{ echo "kernel $k "{why_old} >&2; exit 1; }}; '
            '{ [ -d /sys/module/nf_tables ] || grep -qs "/nf_tables.ko" "/lib/modules/$k/modules.dep" '
            '"/lib/modules/$k/modules.builtin" || { [ -r /proc/config.gz ] && gzip -dc /proc/config.gz | '
            f'grep -c "^CONFIG_NF_TABLES=[ym]" >/dev/null; }}; }} || {{ echo "kernel $k "{why_missing} >&2; exit 1; }}')


def comment_out_swap(fstab: str) -> str:
    """fstab with every active swap entry commented out (kubelet refuses to run with swap on)."""
    lines = []
    for line in fstab.splitlines():
        fields = line.split()
        active = line.strip() and not line.lstrip().startswith("#")
        lines.append(f"# {line}  # swap off for kubelet (vmstation)" if active and len(fields) > 2
                     and fields[2] == "swap" else line)
    return "\n".join(lines) + ("\n" if fstab.endswith("\n") or lines else "")


# -- 1a. containerd -----------------------------------------------------------------------------------


def containerd(ctx: HostContext):
    source = ctx.cluster.containerd_source
    if source == "debian":
        _refuse_debian12_containerd(ctx)
        yield Package(("containerd",))
    elif source == "docker":
        yield from _docker_repository(ctx)
        yield Package(("containerd.io",))
    else:
        yield from _containerd_tarball(ctx)
    yield Directory("/etc/containerd")


def containerd_config(ctx: HostContext):
    installed = ctx.facts.containerd_version
    if installed:
        warning = containerd_version_warning(installed, ctx.cluster.version)
        if warning and not ctx.cluster.accept_old_containerd:
            raise HostError(ctx.host.name, f"{warning}; or accept it with accept_old_containerd = true")
        if warning:
            yield Notice(f"{warning} (accepted: accept_old_containerd = true)")
    installed = installed or ctx.assumed(versions.DEBIAN12_CONTAINERD, "containerd is not installed, so its "
                                                                       "config version cannot be chosen")
    config_version = 3 if int(installed.split(".")[0]) >= 2 else 2
    text = ctx.render("containerd/config.toml.j2", containerd_config_version=config_version,
                      checked_by=lambda text: check_containerd_config(text, config_version))
    config = File("/etc/containerd/config.toml", text, source="containerd/config.toml.j2")
    yield config
    yield Service("containerd", restart_on=(config,))


def containerd_version_warning(installed: str, kubernetes: str = versions.KUBERNETES) -> str:
    """Why containerd ``installed`` is below the floor for ``kubernetes`` (containerd's RELEASES.md); "" if not.

    The floor is per containerd series; a series the table does not list for this Kubernetes minor is below
    the floor when it is older than every series listed (1.5 for 1.29), and not judged when it is newer.
    """
    minor = support.minor_of(kubernetes)
    floors = versions.CONTAINERD_MINIMUM_BY_KUBERNETES.get(minor, {})
    series = support.minor_of(installed)
    floor = floors.get(series) or (min(floors.values(), key=_version_tuple) if floors and all(
        _version_tuple(series) < _version_tuple(s) for s in floors) else None)
    if floor and _version_tuple(installed) < _version_tuple(floor):
        return (f"containerd {installed} is older than {floor}, which Kubernetes {kubernetes} expects; "
                "set containerd_source = \"docker\" or \"tarball\" in hosts.toml for a newer one")
    if _version_tuple(installed) < (1, 6, 0):
        return f"containerd {installed} is too old for Kubernetes {kubernetes}"
    return ""


def _refuse_debian12_containerd(ctx: HostContext) -> None:
    """Bad input before any host is touched: Debian 12's containerd is below the floor unless accepted."""
    if ctx.cluster.accept_old_containerd or ctx.facts.os_release.get("VERSION_ID") != "12":
        return
    warning = containerd_version_warning(versions.DEBIAN12_CONTAINERD, ctx.cluster.version)
    if warning:
        raise InventoryError(ctx.inventory.path, f"containerd_source \"debian\" installs Debian 12's "
                             f"{warning.removeprefix('containerd ')}; or accept it with accept_old_containerd = true",
                             key=f"clusters.{ctx.cluster.name}.containerd_source")


def _docker_repository(ctx: HostContext):
    keyring = "/etc/apt/keyrings/docker.asc"
    yield Directory("/etc/apt/keyrings")
    yield Command(sh("curl -fsSL https://download.docker.com/linux/debian/gpg -o {}", keyring),
                  "fetch Docker's apt key", creates=keyring)
    codename = ctx.facts.os_release.get("VERSION_CODENAME", "bookworm")
    yield File("/etc/apt/sources.list.d/docker.list",
               f"deb [signed-by={keyring}] https://download.docker.com/linux/debian {codename} stable\n")


def _containerd_tarball(ctx: HostContext):
    """containerd's release tarball plus runc (the tarball does not carry it), both checked before upload."""
    name = f"containerd-{versions.CONTAINERD_TARBALL}-linux-amd64.tar.gz"
    files = verified_files(ctx.host.name, _artifacts(ctx, "containerd"), [name, "runc.amd64"],
                           "containerd release tarball and runc")
    tarball = File(f"/var/lib/vmstation/artifacts/{name}", files[name])
    yield tarball
    yield Command(sh("tar -C /usr/local -xzf {}", tarball.path), "unpack containerd into /usr/local",
                  unless=sh("/usr/local/bin/containerd --version | grep -qF {}", f" v{versions.CONTAINERD_TARBALL} "))
    yield File("/usr/local/sbin/runc", files["runc.amd64"], mode="0755")
    unit = File("/etc/systemd/system/containerd.service", ctx.render("containerd/containerd.service.j2"))
    yield unit
    yield Service("containerd", daemon_reload=True, restart_on=(tarball, unit))


# -- 3. CNI plugins -----------------------------------------------------------------------------------


CNI_BIN = "/opt/cni/bin"
CNI_TARBALL = f"cni-plugins-linux-amd64-{versions.CNI_PLUGINS}.tgz"


def cni_source(ctx: HostContext) -> str:
    """Where /opt/cni/bin's plugins come from, decided once for the cluster, so two sources never mix.

    "kubernetes-cni": kubelet from pkgs.k8s.io depends on kubernetes-cni (>= 1.2.0 for kubelet >= 1.28,
    kubernetes/release cmd/krel/templates/latest/metadata.yaml), whose package fills /opt/cni/bin
    (kubernetes-cni.spec: `cp -a %{_arch}/* %{buildroot}/opt/cni/bin/`). Air-gapped, kubelet is a bare binary
    and brings none: "tarball" when the artifacts directory has the plugins' release tarball, else "debian"
    (Debian's containernetworking-plugins, linked from /usr/lib/cni).
    """
    directory = _artifacts(ctx, "cni", required=False)
    if not ctx.cluster.artifacts_dir:
        return "kubernetes-cni"
    return "tarball" if directory and (Path(directory) / CNI_TARBALL).exists() else "debian"


def cni_plugins(ctx: HostContext):
    yield Directory(CNI_BIN)
    source = cni_source(ctx)
    if source == "kubernetes-cni":
        return      # installed with kubelet in debian.kube-binaries, checked there
    if source == "tarball":
        files = verified_files(ctx.host.name, _artifacts(ctx, "cni"), [CNI_TARBALL], "CNI plugins tarball")
        staged = File(f"/var/lib/vmstation/artifacts/{CNI_TARBALL}", files[CNI_TARBALL])
        yield staged
        yield Command(unpack_cni_tarball(staged.path), f"unpack the CNI plugins into {CNI_BIN} (never over a file)",
                      when_changed=(staged,), unless=f"[ -x {CNI_BIN}/bridge ] && [ -x {CNI_BIN}/portmap ]")
        return
    # Debian ships the reference plugins under /usr/lib/cni; kubelet and flannel look in /opt/cni/bin.
    yield Package(("containernetworking-plugins",))
    yield Command(link_debian_plugins(), f"link Debian's CNI plugins into {CNI_BIN} (never over a file)",
                  unless=f"for p in /usr/lib/cni/*; do [ -e \"{CNI_BIN}/$(basename \"$p\")\" ] || exit 1; done")


def link_debian_plugins(source: str = "/usr/lib/cni", target: str = CNI_BIN) -> str:
    """Link each of Debian's plugins where no file of that name is: what is there stays (no ``ln -f``)."""
    return sh('for p in {}/*; do t={}/"$(basename "$p")"; [ -e "$t" ] || [ -L "$t" ] || ln -s "$p" "$t"; done',
              source, target)


def unpack_cni_tarball(tarball: str, target: str = CNI_BIN) -> str:
    """Unpack the plugins' release tarball without replacing a file already there (GNU tar --skip-old-files)."""
    return sh("tar -C {} --skip-old-files -xzf {}", target, tarball)


# -- 1b. kubeadm, kubelet, kubectl -------------------------------------------------------------------------


def kube_binaries(ctx: HostContext):
    if ctx.cluster.artifacts_dir:
        yield from _kube_binaries_from_artifacts(ctx)
    else:
        yield from _kube_binaries_from_apt(ctx)
    yield File("/etc/default/kubelet", ctx.render("kubernetes/kubelet.default.j2"))


def _kube_binaries_from_apt(ctx: HostContext):
    yield Package(("apt-transport-https", "ca-certificates", "curl", "gpg"))
    yield Directory("/etc/apt/keyrings")
    # The cluster's own version (an upgrade moves it on: `vmstation upgrade debian`), from its minor's repository.
    minor = support.minor_of(ctx.cluster.version)
    repo = f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
    yield Command(sh("curl -fsSL {} | gpg --dearmor -o {}", repo + "Release.key", KEYRING),
                  f"fetch the pkgs.k8s.io v{minor} signing key", creates=KEYRING)
    yield File("/etc/apt/sources.list.d/kubernetes.list", ctx.render("kubernetes/kubernetes.list.j2", apt_repo=repo))
    yield Package(KUBE_BINARIES, version=f"{ctx.cluster.version.lstrip('v')}-1.1", hold=True)
    # The cluster's one CNI source (cni_source): kubelet's dependency kubernetes-cni filled /opt/cni/bin.
    yield Check(f"dpkg-query -W kubernetes-cni >/dev/null && [ -x {CNI_BIN}/bridge ] && [ -x {CNI_BIN}/portmap ]",
                f"CNI plugins from kubernetes-cni (kubelet's dependency) in {CNI_BIN}")


def _kube_binaries_from_artifacts(ctx: HostContext):
    # Unsupported where they are missing: a plan shows that and goes on to the later phases (the runner's rule)
    files = verified_files(ctx.host.name, _artifacts(ctx, "kubernetes"), list(KUBE_BINARIES),
                           f"Kubernetes {versions.KUBERNETES} binaries")
    yield from (File(f"/usr/local/bin/{name}", files[name], mode="0755") for name in KUBE_BINARIES)
    unit = File("/etc/systemd/system/kubelet.service", ctx.render("kubernetes/kubelet.service.j2"))
    dropin = File("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", ctx.render("kubernetes/10-kubeadm.conf.j2"))
    yield unit
    yield dropin
    # not started here (kubeadm init/join starts it), and never stopped: a second run must leave it running
    yield Service("kubelet", running=None, daemon_reload=True)


# -- 4. control plane -------------------------------------------------------------------------------------


def kubeadm_config(ctx: HostContext):
    text = ctx.render("kubeadm/init.yaml.j2",
                      checked_by=lambda rendered: check_kubeadm_config(rendered, ctx.cluster.version))
    yield File("/etc/kubernetes/kubeadm-init.yaml", text, mode="0600", source="kubeadm/init.yaml.j2")


def control_plane_init(ctx: HostContext):
    yield Command("kubeadm init --config /etc/kubernetes/kubeadm-init.yaml --skip-token-print",
                  "kubeadm init", creates=ADMIN_CONF)
    yield Service("kubelet")
    yield wait_until(f"{KUBECTL} get --raw=/readyz", "the API server to answer", timeout=300)


# -- 5. workers ----------------------------------------------------------------------------------------------


def worker_join(ctx: HostContext):
    if ctx.facts.exists(KUBELET_CONF):
        return  # joined already: nothing to ask the control plane for
    join = ctx.read(JOIN_COMMAND)
    text = ctx.render("kubeadm/join.yaml.j2", join={**join, "token": join["token"].reveal()},
                      checked_by=lambda rendered: check_kubeadm_config(rendered, ctx.cluster.version))
    config = File("/etc/kubernetes/kubeadm-join.yaml", text, mode="0600", secret=True, source="kubeadm/join.yaml.j2")
    yield config
    yield Command("kubeadm join --config /etc/kubernetes/kubeadm-join.yaml && rm -f /etc/kubernetes/kubeadm-join.yaml",
                  "kubeadm join (then remove the file holding the token)", creates=KUBELET_CONF)
    yield Service("kubelet")


def parse_join_command(output: str) -> dict | None:
    """``{"token": Secret, "ca_cert_hash": str}`` from ``kubeadm token create --print-join-command``; None if absent."""
    token = re.search(r"--token\s+(\S+)", output)
    ca_hash = re.search(r"--discovery-token-ca-cert-hash\s+(sha256:[0-9a-f]{64})", output)
    if not token or not ca_hash:
        return None
    return {"token": Secret(token.group(1)), "ca_cert_hash": ca_hash.group(1)}


# A fresh bootstrap token from the control plane, once per run and cluster, for every joining worker.
# Creating it changes the control plane, so a plan shows PLAN_JOIN instead (and never its token).
JOIN_COMMAND = ReadFrom("the kubeadm join command", secret=True,
                        source=lambda ctx: ctx.hosts_with_role("control-plane")[0],
                        script="kubeadm token create --ttl 30m --print-join-command\n", parse=parse_join_command,
                        placeholder=PLAN_JOIN, changes_host=True,
                        missing="the control plane {source} did not print a join command (is kubeadm init done?)")


# -- 6-8. cluster workloads ----------------------------------------------------------------------------------


def flannel(ctx: HostContext):
    yield from _applied(ctx, "flannel", "flannel/kube-flannel.yaml.j2")


def nodes_ready(ctx: HostContext):
    expected = len(ctx.inventory.hosts_of(ctx.cluster.name))
    ready = f"[ \"$({KUBECTL} get nodes --no-headers | awk '$2 ~ /^Ready/' | wc -l)\" -ge {expected} ]"
    show = f"{KUBECTL} get nodes -o jsonpath=" + sh("{}", READY_COLUMNS)
    yield wait_until(ready, f"{expected} nodes Ready", timeout=600, interval=10, show=show)


def apps(ctx: HostContext):
    yield Directory("/srv/monitoring_data")
    namespaces, *others = APPS
    yield from _applied(ctx, f"app-{namespaces}", f"apps/{namespaces}.yaml.j2")
    yield Command(_grafana_secret_script(), "create the Grafana admin Secret (random password, kept in the cluster)",
                  unless=f"{KUBECTL} -n monitoring get secret grafana-admin")
    boards = dashboards.provisioned(ctx.inventory, ctx.cluster)
    for name in others:
        extra = {"dashboards": boards} if name.startswith("grafana") else {}
        yield from _applied(ctx, f"app-{name}", f"apps/{name}.yaml.j2", **extra)


def jellyfin_storage(ctx: HostContext):
    for path in ("/var/lib/jellyfin/config", "/var/lib/jellyfin/cache"):
        yield Directory(path)
    if ctx.host.media_path:
        yield Check(sh("test -d {}", ctx.host.media_path), f"media directory {ctx.host.media_path} is there")


def kubeconfig(ctx: HostContext):
    from vmstation.operations import Fetch

    destination = inside(ctx.run.artifacts_dir, ctx.cluster.name, "admin.conf")
    host = ctx.host.name
    yield Fetch(ADMIN_CONF, str(destination), transform=lambda content: check_kubeconfig(content, host, ADMIN_CONF))


def _applied(ctx: HostContext, name: str, template: str, **extra):
    """A manifest placed on the control plane and applied server-side whenever the cluster differs from it."""
    manifest = ctx.render(template, checked_by=KUBERNETES_SCHEMAS, **extra)
    path = f"{MANIFEST_DIR}/{name}.yaml"
    yield File(path, manifest, mode="0600")
    yield Command(f"{KUBECTL} apply --server-side --force-conflicts --field-manager=vmstation -f {sh('{}', path)}",
                  f"apply {name}", unless=f"{KUBECTL} diff --server-side --field-manager=vmstation -f {sh('{}', path)}")


def _grafana_secret_script() -> str:
    return (f"umask 077; d=$(mktemp -d); head -c 18 /dev/urandom | base64 > \"$d/admin-password\"; "
            f"printf admin > \"$d/admin-user\"; {KUBECTL} -n monitoring create secret generic grafana-admin "
            f"--from-file=\"$d/admin-user\" --from-file=\"$d/admin-password\" >/dev/null; rm -rf -- \"$d\"")


def _artifacts(ctx: HostContext, component: str, required: bool = True) -> str | None:
    base = ctx.cluster.artifacts_dir
    if not base:
        if required:
            raise Unsupported(ctx.host.name, f"no artifacts_dir in the inventory for {component}")
        return None
    return str(Path(base).expanduser() / component)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


PHASES = [
    Phase("debian.system-prep", "swap off, kernel modules, sysctls", kubeadm_hosts, system_prep),
    Phase("debian.containerd", "containerd installed", kubeadm_hosts, containerd),
    Phase("debian.containerd-config", "containerd config for its version", kubeadm_hosts, containerd_config,
          needs=("debian.containerd",)),
    Phase("debian.cni-plugins", "CNI plugins in /opt/cni/bin", kubeadm_hosts, cni_plugins),
    Phase("debian.kube-binaries", f"kubeadm, kubelet, kubectl {versions.KUBERNETES}", kubeadm_hosts, kube_binaries),
    Phase("debian.kubeadm-config", "kubeadm init config (v1beta3, v1beta4 from 1.31)", control_planes,
          kubeadm_config),
    Phase("debian.control-plane-init", "kubeadm init", control_planes, control_plane_init,
          needs=("debian.system-prep", "debian.containerd-config", "debian.cni-plugins", "debian.kube-binaries",
                 "debian.kubeadm-config", "certs.expiry")),
    Phase("debian.worker-join", "kubeadm join", workers, worker_join,
          needs=("debian.system-prep", "debian.containerd-config", "debian.cni-plugins", "debian.kube-binaries",
                 "debian.control-plane-init")),
    Phase("debian.flannel", f"Flannel {versions.FLANNEL_IMAGE.rsplit(':', 1)[1]}", control_planes, flannel,
          needs=("debian.control-plane-init",)),
    Phase("debian.nodes-ready", "every node Ready", control_planes, nodes_ready,
          needs=("debian.flannel", "debian.worker-join")),
    Phase("debian.jellyfin-storage", "Jellyfin config and cache directories", hosts_with_role("kubeadm", "jellyfin"),
          jellyfin_storage),
    Phase("debian.apps", "monitoring, logging, Jellyfin", control_planes, apps,
          needs=("debian.nodes-ready", "debian.jellyfin-storage")),
    Phase("debian.kubeconfig", "admin kubeconfig fetched (0600)", control_planes, kubeconfig,
          needs=("debian.control-plane-init",)),
]

TARGETS = [
    Target("deploy-debian", "the Debian kubeadm cluster with its apps",
           ("debian.apps", "debian.kubeconfig", "debian.power"),
           command="Deploy the Debian kubeadm cluster: binaries, prep, CNI, init, join, Flannel, Ready, apps."),
]
