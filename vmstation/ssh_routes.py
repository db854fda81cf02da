"""Routes: how to reach a host once ssh_config filled what hosts.toml leaves unset.

Fabric applies ~/.ssh/config itself, ProxyJump included, and builds the jump host's connection with
AutoAddPolicy and outside the network guard. We read ssh_config ourselves (``route_to``): for each key the
inventory leaves unset, HostName, User, Port, IdentityFile and ProxyJump come from it (inventory, then
ssh_config, then defaults); a ProxyJump hop becomes a Route of its own that the transport checks like any host
(known_hosts, the guard); a ProxyCommand or a ``Match exec`` is refused, since a command run while connecting
escapes both.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass

from vmstation.errors import ConnectError
from vmstation.inventory import Host

DEFAULT_SSH_CONFIG = "~/.ssh/config"


@dataclass(frozen=True)
class Route:
    """How to reach one host once ssh_config filled what the inventory left unset."""

    host: Host                        # ssh_user, ssh_port and ssh_key as they will be used
    address: str                      # where the TCP connection goes (HostName, else the inventory's address)
    key_files: tuple[str, ...] = ()   # IdentityFile(s); empty: the agent and the default keys
    jump: "Route | None" = None       # a ProxyJump hop, checked like any host


def route_to(host: Host, ssh_config: str | None = None) -> Route:
    """``host`` with what ssh_config says for it, where hosts.toml is silent (as ``ssh HOST`` would read it).

    The Host blocks are matched against the inventory's host name, then its address; the name's block wins.
    HostName is where SSH connects (the inventory's address stays the node's address in the cluster).
    """
    config = parsed_ssh_config(ssh_config)
    if _has_match_exec(config):
        raise ConnectError(host.name, "ssh_config has a `Match exec`: vmstation does not run it (a command run "
                           "while reading the configuration escapes the network guard, as a ProxyCommand "
                           "would); use Host blocks", transient=False)
    by_address = config.lookup(host.address)
    by_name = config.lookup(host.name)
    merged = {**by_address, **{k: v for k, v in by_name.items() if k != "hostname"}}
    given = host.ssh_set
    changes = {}
    if "ssh_user" not in given and "user" in merged:
        changes["ssh_user"] = merged["user"]
    if "ssh_port" not in given and "port" in merged:
        changes["ssh_port"] = _config_port(host, merged["port"])
    key_files = (host.ssh_key,) if host.ssh_key else ()
    if "ssh_key" not in given and merged.get("identityfile"):
        key_files = tuple(merged["identityfile"])
    if merged.get("proxycommand", "none").lower() != "none":
        raise ConnectError(host.name, f"ssh_config gives a ProxyCommand for {host.name}: vmstation does not run "
                           "it (its traffic would escape host-key checking and the network guard); use ProxyJump",
                           transient=False)
    jump = None
    if merged.get("proxyjump", "none").lower() != "none":
        jump = _jump_route(host, merged["proxyjump"], ssh_config)
    hostname = by_name.get("hostname", host.name)
    address = hostname if hostname != host.name else host.address
    effective = dataclasses.replace(host, **changes) if changes else host
    return Route(effective, address, tuple(os.path.expanduser(k) for k in key_files), jump)


def _has_match_exec(config) -> bool:
    """Whether any ``Match`` block tests ``exec`` (paramiko runs those commands in every lookup)."""
    return any(match.get("type") == "exec" for block in getattr(config, "_config", [])
               for match in block.get("matches", []))


def _jump_route(host: Host, spec: str, ssh_config: str | None) -> Route:
    """One ProxyJump hop ``[user@]name[:port]``, itself completed from ssh_config."""
    if "," in spec:
        raise ConnectError(host.name, f"ProxyJump {spec!r} has several hops; vmstation follows one",
                           transient=False)
    user, _, rest = spec.rpartition("@")
    name, _, port = rest.partition(":")
    if not port.isdigit() and port:
        raise ConnectError(host.name, f"ProxyJump {spec!r} is not [user@]host[:port]", transient=False)
    config = parsed_ssh_config(ssh_config).lookup(name)
    if config.get("proxyjump", "none").lower() != "none" or config.get("proxycommand", "none").lower() != "none":
        raise ConnectError(host.name, f"ProxyJump host {name} has a proxy of its own; vmstation follows one hop",
                           transient=False)
    given = {"ssh_user"} if user else set()
    given |= {"ssh_port"} if port else set()
    hop = Host(name=f"{host.name}-jump", address=config.get("hostname", name), cluster=host.cluster,
               roles=host.roles, ssh_user=user or config.get("user", "root"),
               ssh_port=int(port) if port else _config_port(host, config.get("port", "22")),
               ssh_set=frozenset(given))
    keys = tuple(os.path.expanduser(k) for k in config.get("identityfile", ()))
    return Route(hop, hop.address, keys)


def _config_port(host: Host, value: str) -> int:
    if not str(value).isdigit() or not 1 <= int(value) <= 65535:
        raise ConnectError(host.name, f"ssh_config gives Port {value!r}, which is not a port", transient=False)
    return int(value)


def parsed_ssh_config(path: str | None):
    """The given ssh_config file, else ~/.ssh/config: a read-only paramiko SSHConfig, parsed once per version."""
    import paramiko

    chosen = os.path.expanduser(path or DEFAULT_SSH_CONFIG)
    try:
        stat = os.stat(chosen)
    except OSError:
        if path:
            from vmstation.errors import InputError

            raise InputError(f"--ssh-config {path}: file not found") from None
        return paramiko.SSHConfig()
    return _parse_ssh_config(chosen, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _parse_ssh_config(path: str, stamp: int, size: int):
    """Keyed by modification time and size too: an edited file is read again."""
    import paramiko

    try:
        return paramiko.SSHConfig.from_path(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        from vmstation.errors import InputError

        raise InputError(f"{path}: cannot read it as ssh_config: {describe(exc)}") from None


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
