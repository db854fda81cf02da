"""Import the older system's Ansible inventory as hosts.toml text.

The inventory may be YAML or INI, a file or a directory; group_vars/ and host_vars/ beside it (files
``NAME.yml`` or directories ``NAME/*.yml``) are read as Ansible reads them. Vault-encrypted values become
``vault:NAME`` references (never copied); a whole encrypted vars file is named so it can serve as the vault.
Every variable that is not carried over is reported with why (``Imported.report``).

Groups give the cluster and the roles:

    monitoring_nodes   kubeadm cluster "debian", role control-plane, always on (it sends the wake packets)
    storage_nodes      kubeadm cluster "debian", roles worker and jellyfin
    compute_nodes      rke2 cluster "rke2", role server

Host variables: ansible_host -> address, ansible_user -> ssh_user, ansible_port -> ssh_port,
ansible_ssh_private_key_file -> ssh_key, wol_mac (or mac_address) -> mac, flannel_interface
(or flannel_iface) -> interface, os_family -> os_family, ansible_become_pass(word) -> become_password:
``"{{ NAME }}"`` becomes ``"vault:NAME"``; a literal or inline ``!vault`` password is never copied:
it becomes a reference named after the host, and a comment says which name to add to the vault.
Group variables (``all.vars``, ``GROUP.vars``): pod_network_cidr, service_network_cidr,
control_plane_endpoint, cri_socket, kubernetes_version, rke2_version, media_storage_path (or
jellyfin_media_path), wol_broadcast. Anything else is listed in a comment as not imported.

The result is checked with ``vmstation.inventory.load_text`` before it is returned; bad input is an
InventoryError naming the file, the host and the key. A MAC pasted from ``ip link`` with ``brd ff:...``
after it keeps its address and says so in a comment.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from vmstation import versions
from vmstation.errors import InventoryError
from vmstation.inventory import load_text, parse_mac

GROUPS = {  # old group -> (cluster, kind, roles)
    "monitoring_nodes": ("debian", "kubeadm", ("control-plane",)),
    "storage_nodes": ("debian", "kubeadm", ("worker", "jellyfin")),
    "compute_nodes": ("rke2", "rke2", ("server",)),
}
JELLYFIN_NODEPORT = 30096           # the NodePort the older system served Jellyfin on
_HOST_VARS = {
    "address": ("ansible_host",), "ssh_user": ("ansible_user", "ansible_ssh_user"),
    "ssh_port": ("ansible_port", "ansible_ssh_port"),
    "ssh_key": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "mac": ("wol_mac", "mac_address"), "interface": ("flannel_interface", "flannel_iface"),
    "os_family": ("os_family",), "media_path": ("media_storage_path", "jellyfin_media_path"),
    "become_password": ("ansible_become_pass", "ansible_become_password"),
}
_CLUSTER_VARS = {"pod_cidr": "pod_network_cidr", "service_cidr": "service_network_cidr",
                 "api_endpoint": "control_plane_endpoint", "cri_socket": "cri_socket"}
_UNDERSTOOD = {name for names in _HOST_VARS.values() for name in names} | set(_CLUSTER_VARS.values()) | {
    "kubernetes_version", "rke2_version", "wol_broadcast", "ansible_become"}
_TEMPLATE_REFERENCE = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_OS_FAMILIES = {"redhat": "rhel", "rhel": "rhel", "debian": "debian"}
INVENTORY_NAMES = ("hosts.yml", "hosts.yaml", "hosts", "hosts.ini", "inventory.yml", "inventory.yaml", "inventory",
                   "inventory.ini")
_WHY_DROPPED = {  # why a variable of the old inventories has no counterpart in hosts.toml
    "ansible_connection": "vmstation runs from the operator's machine and reaches every host over SSH",
    "ansible_python_interpreter": "vmstation needs no Python on the hosts",
    "ansible_become_method": "vmstation always uses sudo for a non-root user",
    "ansible_ssh_common_args": "vmstation checks host keys; ssh options come from ~/.ssh/config",
    "node_role": "the role comes from the group (monitoring_nodes, storage_nodes, compute_nodes)",
    "node_labels": "vmstation sets the node labels its roles need",
    "container_runtime": "containerd is the only runtime",
    "cni_plugin": "Flannel (kubeadm) and Canal (RKE2) are fixed",
    "disable_swap": "swap is always turned off on Kubernetes nodes",
}


class _InlineVault:
    """An ``!vault |`` value in the YAML: encrypted, never copied."""


@dataclass
class _Group:
    hosts: dict[str, dict] = field(default_factory=dict)
    vars: dict = field(default_factory=dict)
    children: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Imported:
    text: str                  # the hosts.toml, checked
    report: tuple[str, ...]    # every variable left behind, and why; notes to act on


def import_hosts_yml(path: str | Path) -> str:
    """Read the older system's inventory and return the equivalent, checked hosts.toml text."""
    return import_inventory(path).text


def import_inventory(path: str | Path) -> Imported:
    """Read an Ansible inventory (YAML or INI file, or a directory) with its group_vars/ and host_vars/."""
    source, inventory_file = _inventory_file(Path(path))
    groups = _read_groups(str(inventory_file))
    vars_notes: list[str] = []
    _read_vars_dirs(source, inventory_file.parent, groups, vars_notes)
    notes = _host_key_notes(groups) + vars_notes
    members = {name: _members(groups, name) for name in GROUPS}
    hosts = [_host(str(inventory_file), name, _effective_vars(groups, name), notes)
             for name in _ordered_hosts(str(inventory_file), groups, members)]
    for host in hosts:
        _place(str(inventory_file), host, members)
    all_vars = _effective_group_vars(groups)
    text = _render(str(inventory_file), all_vars, hosts, notes)
    load_text(text, str(inventory_file))
    return Imported(text, tuple(_dropped_report(hosts, groups) + [f"note: {n}" for n in notes]))


def write_imported(imported: Imported, out_path: str, force: bool = False) -> None:
    """Write the hosts.toml; an existing file is kept unless ``force`` (a hand-edited inventory is precious)."""
    from vmstation.atomic import write_atomically
    from vmstation.errors import InputError

    if Path(out_path).exists() and not force:
        raise InputError(f"{out_path}: already exists; give --force to overwrite it, or another --out")
    write_atomically(out_path, imported.text.encode(), 0o644)


def _inventory_file(path: Path) -> tuple[str, Path]:
    """(the name to show, the inventory file): a directory holds one of INVENTORY_NAMES."""
    if path.is_dir():
        for name in INVENTORY_NAMES:
            if (path / name).is_file():
                return str(path), path / name
        raise InventoryError(str(path), "directory without an inventory file (looked for "
                             f"{', '.join(INVENTORY_NAMES)})")
    if path.exists() and not path.is_file():
        raise InventoryError(str(path), "not a regular file or a directory")
    return str(path), path


# --- reading the YAML inventory ------------------------------------------------


def _read_groups(source: str) -> dict[str, _Group]:
    text = _read_text(source)
    if _looks_like_ini(source, text):
        return _ini_groups(source, text)
    data = _load_yaml(source, text)
    if not isinstance(data, dict):
        raise InventoryError(source, f"not an Ansible inventory: the document is {_shape(data)}, expected groups "
                             "at the top level (a mapping like `all: {children: ...}`)")
    groups: dict[str, _Group] = {}
    for name, node in data.items():
        _add_group(source, groups, str(name), node)
    return groups


def _read_text(source: str) -> str:
    try:
        with open(source, encoding="utf-8-sig") as handle:
            return handle.read()
    except FileNotFoundError:
        raise InventoryError(source, "file not found") from None
    except IsADirectoryError:
        raise InventoryError(source, "is a directory") from None
    except UnicodeDecodeError:
        raise InventoryError(source, "not UTF-8 text") from None
    except OSError as exc:
        raise InventoryError(source, f"cannot read: {exc.strerror}") from None


def _load_yaml(source: str, text: str):
    import yaml

    loader = type("_AnsibleLoader", (yaml.SafeLoader,), {})
    loader.add_constructor("!vault", lambda _loader, _node: _InlineVault())
    loader.add_constructor("!unsafe", lambda loader_, node: loader_.construct_scalar(node))
    try:
        return yaml.load(text, Loader=loader)      # a SafeLoader plus the !vault tag
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise InventoryError(source, f"{where}YAML syntax: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise InventoryError(source, "nested too deeply") from None


def _looks_like_ini(source: str, text: str) -> bool:
    if source.endswith(".ini"):
        return True
    first = next((line.strip() for line in text.splitlines() if line.strip() and line.strip()[0] not in "#;"), "")
    return first.startswith("[") and first.endswith("]")


def _ini_groups(source: str, text: str) -> dict[str, _Group]:
    """Ansible's INI inventory: [group] host lines with key=value, [group:vars], [group:children]."""
    groups: dict[str, _Group] = {"all": _Group(), "ungrouped": _Group()}
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InventoryError(source, f"line {number}: INI section header without ']'")
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise InventoryError(source, f"line {number}: [{line[1:-1]}]: unknown section kind {kind!r}")
            groups.setdefault(section, _Group())
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InventoryError(source, f"line {number}: {exc}") from None
        if kind == "children":
            groups[section].children.append(words[0])
            groups.setdefault(words[0], _Group())
        elif kind == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise InventoryError(source, f"line {number}: [{section}:vars] needs key=value")
            groups[section].vars[key.strip()] = _ini_value(value.strip())
        else:
            pairs = dict(_ini_pair(source, number, word) for word in words[1:])
            groups[section].hosts.setdefault(words[0], {}).update(pairs)
    return groups


def _ini_pair(source: str, number: int, word: str) -> tuple[str, object]:
    key, sep, value = word.partition("=")
    if not sep:
        raise InventoryError(source, f"line {number}: {word!r} is not key=value")
    return key, _ini_value(value)


def _ini_value(value: str):
    """INI values are text; numbers and booleans as Ansible reads them."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    if value.isdigit():
        return int(value)
    return {"true": True, "false": False}.get(value.lower(), value)


def _read_vars_dirs(source: str, base: Path, groups: dict[str, _Group], notes: list[str]) -> None:
    """group_vars/NAME and host_vars/NAME beside the inventory (a file, or a directory of files)."""
    for kind in ("group_vars", "host_vars"):
        directory = base / kind
        if not directory.is_dir():
            continue
        for entry in sorted(directory.iterdir()):
            name = entry.name.rsplit(".", 1)[0] if entry.is_file() else entry.name
            files = sorted(p for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else [entry]
            for path in files:
                values = _vars_file(path, notes)
                if kind == "group_vars":
                    groups.setdefault(name, _Group()).vars.update(values)
                else:
                    for group in groups.values():
                        if name in group.hosts:
                            group.hosts[name].update(values)


def _vars_file(path: Path, notes: list[str]) -> dict:
    if path.suffix not in ("", ".yml", ".yaml", ".json"):
        return {}
    text = _read_text(str(path))
    if text.startswith("$ANSIBLE_VAULT"):
        notes.append(f"{path} is an encrypted Ansible vault: vmstation opens the same format, so copy it beside "
                     "hosts.toml as secrets.vault (its names are the vault:NAME references)")
        return {}
    data = _load_yaml(str(path), text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InventoryError(str(path), f"a vars file must be a mapping of variables, got {_shape(data)}")
    return data


def _shape(value) -> str:
    for kind, name in ((dict, "a mapping"), (list, "a list"), (str, "a string"), (bool, "a boolean"),
                       (int, "a number"), (float, "a number")):
        if isinstance(value, kind):
            return name
    return "empty" if value is None else f"a {type(value).__name__}"


def _add_group(source: str, groups: dict[str, _Group], name: str, node, depth: int = 0) -> None:
    group = groups.setdefault(name, _Group())
    if node is None:
        return
    if not isinstance(node, dict) or depth > 50:
        raise InventoryError(source, f"group {name!r} must be a mapping of hosts/vars/children, got {_shape(node)}")
    for part in ("hosts", "vars", "children"):
        if node.get(part) is not None and not isinstance(node[part], dict):
            raise InventoryError(source, f"group {name!r}: {part!r} must be a mapping, got {_shape(node[part])}")
    for host, host_vars in (node.get("hosts") or {}).items():
        if host_vars is not None and not isinstance(host_vars, dict):
            raise InventoryError(source, f"group {name!r}: host {host!r} must map to its variables, got "
                                 f"{_shape(host_vars)}")
        group.hosts.setdefault(str(host), {}).update(host_vars or {})
    group.vars.update(node.get("vars") or {})
    for child, child_node in (node.get("children") or {}).items():
        group.children.append(str(child))
        _add_group(source, groups, str(child), child_node, depth + 1)


def _members(groups: dict[str, _Group], name: str, seen: frozenset = frozenset()) -> list[str]:
    group = groups.get(name)
    if group is None or name in seen:
        return []
    found = list(group.hosts)
    for child in group.children:
        found += [h for h in _members(groups, child, seen | {name}) if h not in found]
    return found


def _ordered_hosts(source: str, groups: dict[str, _Group], members: dict[str, list[str]]) -> list[str]:
    ordered = [h for name in GROUPS for h in members[name]]
    ordered = list(dict.fromkeys(ordered))
    every = {h for group in groups.values() for h in group.hosts}
    for host in sorted(every - set(ordered)):
        raise InventoryError(source, f"in none of the groups {', '.join(GROUPS)}: vmstation cannot tell its role",
                             host=host)
    return ordered


def _host_key_notes(groups: dict[str, _Group]) -> list[str]:
    args = " ".join(str(v) for g in groups.values() for k, v in g.vars.items() if k.endswith("ssh_common_args"))
    if "StrictHostKeyChecking=no" not in args:
        return []
    return ["the old inventory turned host key checks off; vmstation checks them: put each host's key in known_hosts"]


def _effective_group_vars(groups: dict[str, _Group]) -> dict:
    """all's vars, then every group's (the cluster-wide values the old system kept in group_vars)."""
    merged = dict(groups["all"].vars) if "all" in groups else {}
    for name, group in groups.items():
        if name != "all":
            merged.update({k: v for k, v in group.vars.items() if _is_group_var(k)})
    return merged


def _effective_vars(groups: dict[str, _Group], host: str) -> dict:
    """Ansible's order, simplified: all.vars, then the vars of each group that holds the host, then host vars."""
    merged = dict(groups["all"].vars) if "all" in groups else {}
    for name, group in groups.items():
        if name != "all" and host in _members(groups, name):
            merged.update(group.vars)
    for group in groups.values():
        merged.update(group.hosts.get(host, {}))
    return merged


# --- one host -----------------------------------------------------------------------


@dataclass
class _Host:
    name: str
    values: dict                     # hosts.toml keys -> values
    ignored: list[str]
    cluster: str = ""
    roles: tuple[str, ...] = ()
    comment: str = ""


def _host(source: str, name: str, host_vars: dict, notes: list[str]) -> _Host:
    values: dict = {}
    for key, names in _HOST_VARS.items():
        found = next((n for n in names if n in host_vars), None)
        if found is not None:
            values[key] = _host_value(source, name, key, found, host_vars[found], notes)
    if "address" not in values:
        raise InventoryError(source, "missing (vmstation needs the host's IP address)", host=name,
                             key="ansible_host")
    ignored = sorted(k for k in host_vars if k not in _UNDERSTOOD and not _is_group_var(k))
    comment = ""
    if str(host_vars.get("ansible_connection", "")) == "local":
        notes.append(f"host {name!r} had ansible_connection: local (Ansible ran on it); vmstation runs from your "
                     f"machine and reaches it over SSH at {values['address']}: its key must be in known_hosts")
    mac_var = next((n for n in _HOST_VARS["mac"] if n in host_vars), None)
    if mac_var and isinstance(host_vars[mac_var], str) and len(host_vars[mac_var].split()) > 1:
        comment = f"{mac_var} had {' '.join(host_vars[mac_var].split()[1:])!r} after the address (from `ip link`)"
    return _Host(name=name, values=values, ignored=ignored, comment=comment)


def _host_value(source: str, host: str, key: str, var: str, value, notes: list[str]):
    if key == "become_password":
        return _secret_reference(host, value, notes)
    if isinstance(value, _InlineVault) or (isinstance(value, str) and "{{" in value):
        raise InventoryError(source, "is encrypted or a Jinja template; write the value itself", host=host, key=var)
    if key == "mac":
        words = str(value).split()
        try:
            return parse_mac(words[0] if len(words) > 1 and words[1] == "brd" else str(value))
        except ValueError as exc:
            raise InventoryError(source, str(exc), host=host, key=var) from None
    if key == "os_family":
        return _OS_FAMILIES.get(str(value).lower())
    return value


def _secret_reference(host: str, value, notes: list[str]) -> str:
    match = _TEMPLATE_REFERENCE.match(value) if isinstance(value, str) else None
    if match:
        return f"vault:{match[1]}"
    name = re.sub(r"\W", "_", host) + "_become_password"
    kind = "an inline !vault value" if isinstance(value, _InlineVault) else "a literal password"
    notes.append(f"host {host!r} had {kind} in the old inventory (not copied): add it to the vault as {name!r}")
    return f"vault:{name}"


def _is_group_var(name: str) -> bool:
    return name in _CLUSTER_VARS.values() or name in ("kubernetes_version", "rke2_version", "wol_broadcast")


def _place(source: str, host: _Host, members: dict[str, list[str]]) -> None:
    """Cluster and roles from the old groups; a host may be in several groups of one cluster."""
    for group, (cluster, _kind, roles) in GROUPS.items():
        if host.name not in members[group]:
            continue
        if host.cluster and host.cluster != cluster:
            raise InventoryError(source, f"is in groups of two clusters ({host.cluster}, {cluster})", host=host.name)
        host.cluster = cluster
        host.roles += tuple(r for r in roles if r not in host.roles)
    if "worker" in host.roles and "control-plane" in host.roles:
        host.roles = tuple(r for r in host.roles if r != "worker")
    if "jellyfin" not in host.roles:
        host.values.pop("media_path", None)
    if host.values.get("ssh_user", "root") == "root":
        host.values.pop("become_password", None)     # an all-hosts become password means nothing to root
    if host.values.get("ssh_user", "root") != "root" and "become_password" not in host.values:
        host.values["passwordless_sudo"] = True
        host.comment = "; ".join(filter(None, [host.comment, "the old inventory gave no sudo password: NOPASSWD "
                                               "sudo assumed"]))


# --- writing hosts.toml --------------------------------------------------------------


def _dropped_report(hosts: list[_Host], groups: dict[str, _Group]) -> list[str]:
    """One line per variable not carried over: where it was and why."""
    where: dict[str, list[str]] = {}
    for host in hosts:
        for name in host.ignored:
            where.setdefault(name, []).append(host.name)
    for group_name, group in groups.items():
        for name in group.vars:
            if name not in _UNDERSTOOD and not _is_group_var(name):
                where.setdefault(name, []).append(f"group {group_name}")
    referenced = {str(h.values.get("become_password", "")).removeprefix("vault:") for h in hosts}
    encrypted = {name for group in groups.values() for name, value in group.vars.items()
                 if isinstance(value, _InlineVault)}
    lines = []
    for name, places in sorted(where.items()):
        if name in referenced:
            state = "an inline !vault value" if name in encrypted else "a value"
            lines.append(f"kept {name} as the reference vault:{name}: {state} in the old inventory, not copied; "
                         f"add it to the vault as {name!r}")
        else:
            lines.append(f"dropped {name} ({', '.join(dict.fromkeys(places))}): "
                         f"{_WHY_DROPPED.get(name, 'no meaning for vmstation')}")
    return lines


def _render(source: str, all_vars: dict, hosts: list[_Host], notes: list[str]) -> str:
    lines = [f"# Imported from {source} by vmstation (ansible_import); check it, then keep it as hosts.toml."]
    ignored = sorted({k for h in hosts for k in h.ignored})
    if ignored:
        lines.append(f"# Not imported (no meaning for vmstation): {', '.join(ignored)}")
    lines += [f"# Before use: {note}" for note in notes]
    lines += ["", 'vault = "secrets.vault"', ""]
    lines += _defaults(hosts)
    lines += _power(all_vars, hosts)
    for cluster in dict.fromkeys(h.cluster for h in hosts):
        lines += _cluster(cluster, all_vars, [h for h in hosts if h.cluster == cluster])
    for host in hosts:
        lines += _host_table(host)
    return "\n".join(lines).rstrip("\n") + "\n"


def _defaults(hosts: list[_Host]) -> list[str]:
    keys = {h.values.get("ssh_key") for h in hosts}
    if len(keys) != 1 or None in keys:
        return []
    for host in hosts:
        host.values.pop("ssh_key")
    return ["[defaults]", f"ssh_key = {_toml(keys.pop())}", ""]


def _power(all_vars: dict, hosts: list[_Host]) -> list[str]:
    lines = ["[power]"]
    if "wol_broadcast" in all_vars:
        lines.append(f"wol_broadcast = {_toml(all_vars['wol_broadcast'])}")
    jellyfin = next((h for h in hosts if "jellyfin" in h.roles), None)
    if jellyfin is not None:
        url = f"http://{jellyfin.values['address']}:{JELLYFIN_NODEPORT}"
        lines.append(f"jellyfin_url = {_toml(url)}")
        lines.append('jellyfin_api_key = "vault:jellyfin_api_key"   # Jellyfin dashboard -> API keys')
    return lines + [""] if len(lines) > 1 else []


def _cluster(name: str, all_vars: dict, hosts: list[_Host]) -> list[str]:
    kind = next(kind for cluster, kind, _ in GROUPS.values() if cluster == name)
    lines = [f"[clusters.{name}]", f'kind = "{kind}"', f"version = {_toml(_version(kind, all_vars))}"]
    if kind == "kubeadm":
        lines += [f"{key} = {_toml(all_vars[var])}" for key, var in _CLUSTER_VARS.items() if var in all_vars]
    else:
        server = next(h for h in hosts if "server" in h.roles)
        lines.append(f"api_endpoint = {_toml(str(server.values['address']) + ':6443')}")
    return lines + [""]


def _version(kind: str, all_vars: dict) -> str:
    if kind == "rke2":
        return str(all_vars.get("rke2_version", versions.RKE2))
    wanted = str(all_vars.get("kubernetes_version", versions.KUBERNETES)).removeprefix("v")
    return versions.KUBERNETES if versions.KUBERNETES.startswith(wanted + ".") else wanted


def _host_table(host: _Host) -> list[str]:
    comment = f"   # {host.comment}" if host.comment else ""
    lines = [f"[hosts.{host.name}]{comment}", f"address = {_toml(host.values.pop('address'))}",
             f'cluster = "{host.cluster}"', f"roles = {_toml(list(host.roles))}"]
    if "control-plane" in host.roles:
        lines.append("always_on = true")
    lines += [f"{key} = {_toml(value)}" for key, value in host.values.items()
              if value is not None and not (key == "ssh_user" and value == "root")]
    return lines + [""]


def _toml(value) -> str:
    """A TOML value: JSON's strings, numbers, booleans and arrays are valid TOML."""
    return json.dumps(value, ensure_ascii=False)
