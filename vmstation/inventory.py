"""The inventory: hosts.toml turned into plain frozen dataclasses.

Every rule is checked at load time and every error names the file, the host and
the key (``vmstation.errors.InventoryError``). Secrets are references
(``vault:NAME``), never values; ``vmstation.secrets`` resolves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------------------
# The data (the contract every other module reads)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str                      # inventory key, also the Kubernetes node name
    address: str                   # IPv4/IPv6 address SSH connects to (validated)
    cluster: str                   # name of a [clusters.X] table
    roles: tuple[str, ...]         # e.g. ("control-plane",), ("worker", "jellyfin"), ("server",)
    ssh_user: str = "root"
    ssh_port: int = 22
    ssh_key: str | None = None     # path to a private key (~ expanded); None = agent / ssh config
    become_password: str | None = None   # a secret reference "vault:NAME" (sudo password), never a value
    mac: str | None = None         # normalised lower-case aa:bb:cc:dd:ee:ff
    interface: str | None = None   # NIC that carries the cluster network (flannel --iface, node-ip)
    always_on: bool = False        # never put to sleep, never woken
    sleep_method: str = "shutdown" # "shutdown" | "suspend"
    media_path: str | None = None  # Jellyfin media on this host (storage worker)
    apt_proxy: str | None = None   # http://host:port used by apt on this host
    os_family: str | None = None   # "debian" | "rhel"; None = detect from /etc/os-release

    @property
    def is_root(self) -> bool:
        return self.ssh_user == "root"

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Cluster:
    name: str
    kind: str                              # "kubeadm" | "rke2"
    version: str                           # "1.29.15" (kubeadm) or "v1.29.15+rke2r1" (rke2)
    pod_cidr: str
    service_cidr: str
    api_endpoint: str                      # "192.168.4.63:6443"
    cni: str                               # "flannel" (kubeadm) | "canal" (rke2)
    cri_socket: str = "unix:///var/run/containerd/containerd.sock"
    containerd_source: str = "debian"      # "debian" | "docker" | "tarball" (kubeadm only)
    artifacts_dir: str | None = None       # air-gapped installs: directory on the operator's machine
    firewall: str = "open-ports"           # "open-ports" | "disabled" (rke2 on RHEL: firewalld)
    dns_domain: str = "cluster.local"


@dataclass(frozen=True)
class Power:
    idle_hours: float = 2.0
    cpu_threshold_percent: float = 20.0
    check_interval: str = "hourly"         # systemd OnCalendar value for the scheduled check
    wol_broadcast: str | None = None       # subnet-directed broadcast, e.g. "192.168.4.255"
    wol_port: int = 9
    wol_interface: str | None = None       # interface on the sender (masternode) to send from
    jellyfin_url: str | None = None        # e.g. "http://192.168.4.61:30096"
    jellyfin_api_key: str | None = None    # secret reference "vault:NAME"


@dataclass(frozen=True)
class Inventory:
    path: str                              # the file it came from (for messages)
    hosts: tuple[Host, ...]
    clusters: tuple[Cluster, ...]
    power: Power = field(default_factory=Power)
    vault: str | None = None               # path of the Ansible Vault file (resolved against path's dir)
    known_hosts: str = "~/.ssh/known_hosts"

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

    def hosts_of(self, cluster: str) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.cluster == cluster)

    def clusters_of_kind(self, kind: str) -> tuple[Cluster, ...]:
        return tuple(c for c in self.clusters if c.kind == kind)
