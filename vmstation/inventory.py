"""The inventory: hosts.toml turned into plain frozen dataclasses.

Every rule is checked at load time and every error names the file, the host and
the key (``vmstation.errors.InventoryError``). Secrets are references
(``vault:NAME``), never values; ``vmstation.secrets`` resolves them.
"""

from __future__ import annotations

import contextvars
import difflib
import ipaddress
import re
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from vmstation import values as _values
from vmstation import versions
from vmstation.errors import InputError, InventoryError

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
    passwordless_sudo: bool = False      # a non-root user whose sudo needs no password (NOPASSWD)
    mac: str | None = None         # normalised lower-case aa:bb:cc:dd:ee:ff
    interface: str | None = None   # NIC that carries the cluster network (flannel --iface, node-ip)
    always_on: bool = False        # never put to sleep, never woken
    sleep_method: str = "shutdown" # "shutdown" | "suspend"
    media_path: str | None = None  # Jellyfin media on this host (storage worker)
    apt_proxy: str | None = None   # http://host:port used by apt on this host
    os_family: str | None = None   # "debian" | "rhel"; None = detect from /etc/os-release
    jellyfin_certificate: str | None = None   # PKCS#12 file on the Jellyfin host: publishes HTTPS (8920/30920)
    # which of ssh_user, ssh_port, ssh_key hosts.toml set (here or in [defaults]); ssh_config fills the others
    ssh_set: frozenset[str] = field(default=frozenset({"ssh_user", "ssh_port", "ssh_key"}), compare=False,
                                    metadata={"derived": True})

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
    containerd_source: str = "docker"      # "debian" | "docker" | "tarball" (kubeadm only)
    artifacts_dir: str | None = None       # air-gapped installs: directory on the operator's machine
    firewall: str = "disabled"             # "disabled" | "open-ports" (rke2 on RHEL: firewalld, see rke2 docs)
    dns_domain: str = "cluster.local"
    selinux: bool = True                   # rke2: `selinux: true` in config.yaml on RHEL (needs rke2-selinux)
    proxy_mode: str = "nftables"           # kubeadm: kube-proxy mode and Flannel's EnableNFTables together
    accept_old_containerd: bool = False    # kubeadm: run a containerd below the floor for its Kubernetes


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

    @property
    def vault_path(self) -> Path | None:
        """The vault file, relative paths taken from the inventory file's directory."""
        if self.vault is None:
            return None
        return Path(self.path).parent / Path(self.vault).expanduser()

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


# ---------------------------------------------------------------------------
# Loading: hosts.toml -> Inventory, every rule checked
# ---------------------------------------------------------------------------

ROLES = ("control-plane", "worker", "jellyfin", "storage", "server", "agent")
NODE_ROLES = {"kubeadm": ("control-plane", "worker"), "rke2": ("server", "agent")}
SECRET_REFERENCE = re.compile(r"^vault:([A-Za-z_][A-Za-z0-9_]*)\Z")

_KIND_DEFAULTS = {
    "kubeadm": {"version": versions.KUBERNETES, "pod_cidr": "10.244.0.0/16",
                "service_cidr": "10.96.0.0/12", "cni": "flannel"},
    "rke2": {"version": versions.RKE2, "pod_cidr": "10.42.0.0/16",
             "service_cidr": "10.43.0.0/16", "cni": "canal"},
}
_VERSION_FORMS = {
    "kubeadm": (re.compile(r"^\d+\.\d+\.\d+\Z"), "a Kubernetes version like '1.29.15' (no leading 'v')"),
    "rke2": (re.compile(r"^v\d+\.\d+\.\d+\+rke2r\d+\Z"), "an RKE2 release like 'v1.29.15+rke2r1'"),
}
# Keys one cluster kind must not set (the other kind's): [clusters.X] with kind = "rke2" and proxy_mode is refused.
_KIND_ONLY_KEYS = {"rke2": ("containerd_source", "proxy_mode", "accept_old_containerd"), "kubeadm": ("selinux",)}
_TOP_KINDS = {"vault": "string", "known_hosts": "string", "defaults": "table", "power": "table",
              "clusters": "table", "hosts": "table"}
_DEFAULT_KINDS = {"ssh_user": "string", "ssh_key": "string", "ssh_port": "integer", "known_hosts": "string"}
_REQUIRED = {"host": ("address", "cluster", "roles"), "cluster": ("kind",)}
_SSH_KEYS = ("ssh_user", "ssh_port", "ssh_key")
_DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}\Z){_DNS_LABEL}(\.{_DNS_LABEL})*\Z")
_MAC = re.compile(r"^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}\Z")


def load(path: str | Path) -> Inventory:
    """Read and check ``path``; raise InventoryError naming the file, host and key of the first broken rule
    (its ``problems`` holds every one, for ``inventory check``)."""
    try:
        # A UTF-8 BOM (Windows editors) is not content; a FIFO or device is refused, never waited on.
        text = _values.read_input_file(path, "inventory").decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InventoryError(str(path), "not UTF-8 text") from None
    except InputError as exc:
        raise InventoryError(str(path), str(exc).removeprefix(f"{path}: ")) from None
    return load_text(text, str(path))


def problems_of(path: str | Path) -> tuple[list[str], Inventory | None]:
    """Every broken rule of ``path``, one line each, and the inventory when there is none."""
    try:
        return [], load(path)
    except InventoryError as exc:
        return [str(problem) for problem in exc.problems], None


def load_text(text: str, path: str = "hosts.toml") -> Inventory:
    """Check an inventory given as text; ``path`` is only used in messages and to find the vault.

    Each host, cluster and section is checked on its own and every broken rule is collected; the first is
    raised, carrying the others (``InventoryError.problems``), so one run of ``inventory check`` shows all.
    """
    with _collecting(path) as problems:
        inventory = _load_checked(text.removeprefix("\ufeff"), path)
    if problems:
        first = problems[0]
        first.problems = list(problems)
        raise first
    return inventory


def _load_checked(text: str, path: str) -> Inventory | None:
    data = _parse_toml(text, path)
    top = _Place(path)
    _check_keys(top, data, _TOP_KINDS)
    for key in ("vault", "known_hosts"):
        if key in data:
            _check_type(top, key, data[key], "string")
    defaults = _checked(_Place(path, prefix="defaults."), _table(top, data, "defaults"), _DEFAULT_KINDS)
    known_hosts = _known_hosts(top, data, defaults)
    cluster_tables = _named_tables(top, data, "clusters")
    kinds = {name: _kept(_cluster_kind, _Place(path, prefix=f"clusters.{name}."), name, table)
             for name, table in cluster_tables.items()}
    kinds = {name: kind for name, kind in kinds.items() if kind is not None}
    host_tables = _named_tables(top, data, "hosts")
    hosts = tuple(h for h in (_kept(_host, _Place(path, host=name), name, table, defaults, kinds)
                              for name, table in host_tables.items()) if h is not None)
    broken = {t.get("cluster") for name, t in host_tables.items() if isinstance(t, dict)} - {h.cluster for h in hosts}
    clusters = tuple(c for c in (_kept(_cluster, _Place(path, prefix=f"clusters.{name}."), name, table, hosts)
                                 for name, table in cluster_tables.items()
                                 if name in kinds and (name not in broken or any(h.cluster == name for h in hosts)))
                     if c is not None)
    power = Power(**(_kept(_checked, _Place(path, prefix="power."), _table(top, data, "power"), _kinds_of(Power))
                     or {}))
    inventory = Inventory(path=path, hosts=hosts, clusters=clusters, power=power,
                          vault=data.get("vault"), known_hosts=known_hosts)
    _kept(_check_unique, inventory, "address")
    _kept(_check_unique, inventory, "mac")
    _kept(_check_secret_references, inventory)
    return inventory


def parse_mac(text: str) -> str:
    """``aa:bb:cc:dd:ee:ff`` (or with '-', any case) -> lower-case colons; ValueError says what is wrong."""
    candidate = text.strip().lower()
    if not _MAC.match(candidate):
        first = candidate.split()[0] if candidate.split() else ""
        if first != candidate and _MAC.match(first):
            raise ValueError(f"{text!r} has text after the MAC address (pasted from `ip link`?); use {first!r}")
        raise ValueError(f"{text!r} is not a MAC address like 'aa:bb:cc:dd:ee:ff'")
    mac = candidate.replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"{mac!r} is a multicast/broadcast address, not a network card's")
    if mac == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 is not a network card's address")
    return mac


# --- collecting every broken rule ---------------------------------------------

_PROBLEMS: contextvars.ContextVar[list[InventoryError] | None] = contextvars.ContextVar("problems", default=None)


@contextmanager
def _collecting(path: str):
    """Collect the InventoryErrors of independent checks (``_kept``) instead of stopping at the first."""
    problems: list[InventoryError] = []
    token = _PROBLEMS.set(problems)
    try:
        yield problems
    except InventoryError as exc:      # a rule that stops everything after it (TOML syntax, no hosts at all)
        problems.append(exc)
    finally:
        _PROBLEMS.reset(token)


def _kept(check, *args):
    """``check(*args)``, or None with its error collected: the checks after it still run."""
    problems = _PROBLEMS.get()
    try:
        return check(*args)
    except InventoryError as exc:
        if problems is None:
            raise
        problems.append(exc)
        return None


# --- sections ---------------------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """Where in the file a value sits, to build one-line errors."""

    path: str
    host: str | None = None
    prefix: str = ""

    def error(self, message: str, key: str | None = None) -> InventoryError:
        where = self.prefix + key if key else (self.prefix.rstrip(".") or None)
        return InventoryError(self.path, message, host=self.host, key=where)


def _parse_toml(text: str, path: str) -> dict:
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise InventoryError(path, "TOML nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        if found:
            message = message[: found.start()].rstrip()
            raise InventoryError(path, f"line {found[1]}, column {found[2]}: TOML syntax: {message}") from None
        raise InventoryError(path, f"TOML syntax: {message}") from None


def _host(place: _Place, name: str, table, defaults: dict, kinds: dict[str, str]) -> Host:
    if not isinstance(table, dict):
        raise place.error("must be a table [hosts.NAME]")
    if not _DNS_NAME.match(name):
        raise place.error("host name must be a lower-case DNS name (it is the Kubernetes node name)")
    _require(place, table, _REQUIRED["host"])
    values = {**defaults, **_checked(place, table, _kinds_of(Host))}
    kind = kinds.get(values["cluster"])
    if kind is None:
        raise place.error(f"cluster {values['cluster']!r} is not defined{_did_you_mean(values['cluster'], kinds)}",
                          "cluster")
    _check_roles(place, values["roles"], kind, values["cluster"])
    _check_sudo(place, values)
    if values.get("jellyfin_certificate") and "jellyfin" not in values["roles"]:
        raise place.error("jellyfin_certificate is for the host with role 'jellyfin'", "jellyfin_certificate")
    return Host(name=name, **values, ssh_set=frozenset(k for k in _SSH_KEYS if k in values))


def _cluster(place: _Place, name: str, table: dict, hosts: tuple[Host, ...]) -> Cluster:
    kind = table["kind"]
    values = {**_KIND_DEFAULTS[kind], **_checked(place, table, _kinds_of(Cluster))}
    members = tuple(h for h in hosts if h.cluster == name)
    if not members:
        raise place.error("no host belongs to this cluster")
    leaders = _check_leaders(place, kind, members)
    values.setdefault("api_endpoint", _endpoint_of(leaders[0]))
    _check_cluster_values(place, kind, values, table)
    _check_networks(place, values, members)
    return Cluster(name=name, **values)


def _cluster_kind(place: _Place, name: str, table) -> str:
    try:
        _values.cluster_name(name)
    except ValueError as exc:
        raise place.error(str(exc)) from None
    if not isinstance(table, dict):
        raise place.error("must be a table [clusters.NAME]")
    _require(place, table, _REQUIRED["cluster"])
    kind = table["kind"]
    if kind not in NODE_ROLES:
        raise place.error(f"{kind!r} is not a cluster kind (allowed: kubeadm, rke2)", "kind")
    return kind


def _known_hosts(place: _Place, data: dict, defaults: dict) -> str:
    """known_hosts is inventory-wide: accepted at the top level or in [defaults], not both."""
    if "known_hosts" in data and "known_hosts" in defaults:
        raise place.error("set known_hosts at the top level or in [defaults], not both", "known_hosts")
    return data.get("known_hosts") or defaults.pop("known_hosts", Inventory.known_hosts)


def _named_tables(place: _Place, data: dict, name: str) -> dict:
    tables = _table(place, data, name)
    if not tables:
        raise place.error(f"no [{name}.NAME] table: the inventory needs at least one", name)
    return tables


def _table(place: _Place, data: dict, name: str) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise place.error(f"expected a table, got {_kind_of(value)}", name)
    return value


# --- rules across keys and hosts --------------------------------------------


def _check_roles(place: _Place, roles: tuple[str, ...], kind: str, cluster: str) -> None:
    node_roles = [r for r in roles if r in NODE_ROLES["kubeadm"] + NODE_ROLES["rke2"]]
    foreign = [r for r in node_roles if r not in NODE_ROLES[kind]]
    if foreign:
        raise place.error(f"role {foreign[0]!r} does not exist in {kind} cluster {cluster!r} "
                          f"(use {' or '.join(NODE_ROLES[kind])})", "roles")
    if len(node_roles) != 1:
        raise place.error(f"needs exactly one of the roles {', '.join(NODE_ROLES[kind])}", "roles")


def _check_sudo(place: _Place, values: dict) -> None:
    if values.get("ssh_user", "root") == "root":
        return
    has_password = values.get("become_password") is not None
    if has_password and values.get("passwordless_sudo"):
        raise place.error("set either become_password or passwordless_sudo = true, not both", "passwordless_sudo")
    if not has_password and not values.get("passwordless_sudo"):
        raise place.error(f"user {values['ssh_user']!r} is not root: sudo needs become_password = "
                          "\"vault:NAME\" (or passwordless_sudo = true)", "become_password")


def _check_leaders(place: _Place, kind: str, members: tuple[Host, ...]) -> tuple[Host, ...]:
    role = NODE_ROLES[kind][0]
    leaders = tuple(h for h in members if h.has_role(role))
    if not leaders:
        raise place.error(f"{kind} cluster has no host with role {role!r}")
    if kind == "kubeadm" and len(leaders) > 1:
        names = ", ".join(h.name for h in leaders)
        raise place.error(f"kubeadm cluster has {len(leaders)} control planes ({names}); vmstation supports one")
    if kind == "rke2" and len(leaders) % 2 == 0:
        names = ", ".join(h.name for h in leaders)
        raise place.error(f"rke2 cluster has {len(leaders)} servers ({names}); etcd needs an odd number "
                          "(docs.rke2.io/install/ha): make one of them an agent, or add a server")
    return leaders


def _check_cluster_values(place: _Place, kind: str, values: dict, table: dict) -> None:
    form, described = _VERSION_FORMS[kind]
    if not form.match(values["version"]):
        raise place.error(f"{values['version']!r} is not {described}", "version")
    if values["cni"] != _KIND_DEFAULTS[kind]["cni"]:
        raise place.error(f"cni {values['cni']!r} is not supported for {kind} (use "
                          f"{_KIND_DEFAULTS[kind]['cni']!r})", "cni")
    for key in _KIND_ONLY_KEYS[kind]:
        if key in table:
            other = "kubeadm" if kind == "rke2" else "rke2"
            brings = "rke2 brings its own containerd; " if key == "containerd_source" else ""
            raise place.error(f"{brings}{key} is for {other} clusters", key)
    if values.get("containerd_source") == "tarball" and not values.get("artifacts_dir"):
        raise place.error("containerd_source 'tarball' needs artifacts_dir (where the release tarball is)",
                          "containerd_source")


def _check_networks(place: _Place, values: dict, members: tuple[Host, ...]) -> None:
    pods, services = (ipaddress.ip_network(values[k]) for k in ("pod_cidr", "service_cidr"))
    if pods.overlaps(services):
        raise place.error(f"pod_cidr {pods} overlaps service_cidr {services}", "service_cidr")
    if services.version == 4 and services.prefixlen < 12:
        raise place.error(f"service_cidr {services} is larger than the /12 kube-apiserver accepts", "service_cidr")
    for key, network in (("pod_cidr", pods), ("service_cidr", services)):
        for host in members:
            if ipaddress.ip_address(host.address) in network:
                raise place.error(f"{network} contains the address of host {host.name!r}", key)


def _check_unique(inventory: Inventory, key: str) -> None:
    seen: dict[str, str] = {}
    for host in inventory.hosts:
        value = getattr(host, key)
        if value is not None and value in seen:
            raise InventoryError(inventory.path, f"{value} is also the {key} of host {seen[value]!r}",
                                 host=host.name, key=key)
        seen.setdefault(value, host.name)


def _check_secret_references(inventory: Inventory) -> None:
    if inventory.vault is not None:
        return
    message = 'refers to the vault but no vault file is configured (top-level vault = "secrets.vault")'
    for host in inventory.hosts:
        if host.become_password is not None:
            raise InventoryError(inventory.path, message, host=host.name, key="become_password")
    if inventory.power.jellyfin_api_key is not None:
        raise InventoryError(inventory.path, message, key="power.jellyfin_api_key")


def _endpoint_of(host: Host) -> str:
    address = ipaddress.ip_address(host.address)
    return f"[{address}]:6443" if address.version == 6 else f"{address}:6443"


# --- keys, types and single values ------------------------------------------


def _checked(place: _Place, table: dict, kinds: dict[str, str]) -> dict:
    """Check keys and types of one table and run each value's own rule; return the normalised values."""
    _check_keys(place, table, kinds)
    values, errors = {}, []
    for key, value in table.items():
        try:
            _check_type(place, key, value, kinds[key])
            check = _VALUE_RULES.get(key)
            values[key] = check(value) if check else value
        except ValueError as exc:
            errors.append(place.error(str(exc), key))
        except InventoryError as exc:
            errors.append(exc)
    if errors:
        collector = _PROBLEMS.get()
        if collector is None:
            raise errors[0]
        collector.extend(errors[:-1])     # every bad key of the table, in order; the last is raised
        raise errors[-1]
    return values


def _check_keys(place: _Place, table: dict, kinds: dict[str, str]) -> None:
    for key in table:
        if key not in kinds:
            raise place.error(f"unknown key{_did_you_mean(key, kinds) or ' (allowed: ' + ', '.join(kinds) + ')'}",
                              key)


def _check_type(place: _Place, key: str, value, kind: str) -> None:
    numeric = kind == "number" and _kind_of(value) in ("an integer", "a float")
    if _kind_of(value) != _ARTICLES[kind] and not numeric:
        raise place.error(f"expected {_ARTICLES[kind]}, got {_kind_of(value)}", key)
    if isinstance(value, str) and (not value or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        raise place.error("must be a non-empty string without control characters", key)


def _require(place: _Place, table: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        if key not in table:
            raise place.error("missing (required)", key)


def _kinds_of(cls) -> dict[str, str]:
    """The allowed keys of a section and their TOML types, read from the dataclass (the contract)."""
    by_annotation = {"str": "string", "str | None": "string", "int": "integer", "bool": "boolean",
                     "float": "number", "tuple[str, ...]": "array"}
    return {f.name: by_annotation[f.type] for f in fields(cls) if f.name != "name" and not f.metadata.get("derived")}


_ARTICLES = {"string": "a string", "integer": "an integer", "boolean": "a boolean", "number": "a number",
             "array": "an array", "table": "a table"}


def _kind_of(value) -> str:
    for python_type, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
                              (list, "an array"), (dict, "a table")):
        if isinstance(value, python_type):
            return name
    return f"a {type(value).__name__}"


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


def _ipv4_address(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _cidr(value: str) -> str:
    if "/" not in value:
        raise ValueError(f"{value!r} needs a prefix length, e.g. '10.244.0.0/16'")
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a network: {exc}") from None


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"port {value} is out of range 1-65535")
    return value


def _endpoint(value: str) -> str:
    host, _, port = value.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or not host or (bare == host and ":" in host):
        raise ValueError(f"{value!r} is not host:port (e.g. '192.168.4.63:6443', IPv6 as '[::1]:6443')")
    if bare != host or re.fullmatch(r"[\d.]+", host):
        _ip_address(bare)
    elif not _DNS_NAME.match(host.lower()):
        raise ValueError(f"{value!r}: {host!r} is neither an address nor a DNS name")
    _port(int(port))
    return value


def _secret_reference(value: str) -> str:
    if not SECRET_REFERENCE.match(value):
        raise ValueError('must be a reference like "vault:NAME"; a literal secret does not belong in this '
                         "file (value not shown)")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@); value not shown")
    try:
        _ = parts.port                # parsing the port is what raises
    except ValueError:
        raise ValueError(f"{value!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def _one_of(*allowed: str):
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return value
    return check


def _matching(pattern: str, described: str):
    form = re.compile(pattern)

    def check(value: str) -> str:
        if not form.fullmatch(value):
            raise ValueError(f"{value!r} is not {described}")
        return value
    return check


def _roles(value: list) -> tuple[str, ...]:
    if not value:
        raise ValueError("needs at least one role")
    for role in value:
        if role not in ROLES:
            hint = _did_you_mean(str(role), ROLES) or f" (allowed: {', '.join(ROLES)})"
            raise ValueError(f"unknown role {role!r}{hint}")
    if len(set(value)) != len(value):
        raise ValueError("lists a role twice")
    return tuple(value)


def _bounded(low: float, high: float, described: str):
    def check(value: float) -> float:
        if not low < value <= high:
            raise ValueError(f"{value} is not {described}")
        return float(value)
    return check


_VALUE_RULES = {
    "address": _ip_address, "wol_broadcast": _ipv4_address, "mac": parse_mac, "roles": _roles,
    "ssh_port": _port, "wol_port": _port, "api_endpoint": _endpoint,
    "pod_cidr": _cidr, "service_cidr": _cidr,
    "become_password": _secret_reference, "jellyfin_api_key": _secret_reference,
    "apt_proxy": _values.proxy_url, "jellyfin_url": _http_url, "check_interval": _values.calendar,
    "kind": _one_of("kubeadm", "rke2"), "sleep_method": _one_of("shutdown", "suspend"),
    "os_family": _one_of("debian", "rhel"), "containerd_source": _one_of("debian", "docker", "tarball"),
    "firewall": _one_of("open-ports", "disabled"),
    "ssh_user": _matching(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$", "a user name"),
    "interface": _values.interface_name, "wol_interface": _values.interface_name,
    "media_path": _values.host_path, "cri_socket": _values.socket_url,
    "dns_domain": _matching(_DNS_NAME.pattern, "a DNS domain like 'cluster.local'"),
    "idle_hours": _bounded(0, 24 * 365, "a number of hours above 0"),
    "cpu_threshold_percent": _bounded(0, 100, "a percentage above 0 and at most 100"),
}
# The clusters as they really install: kube-proxy's mode, Jellyfin's certificate.
_VALUE_RULES.update({
    "proxy_mode": _one_of("nftables", "iptables"),
    "jellyfin_certificate": _values.host_path,
})
