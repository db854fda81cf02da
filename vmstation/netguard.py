"""A guard that keeps a run inside the networks it is allowed to reach.

When ``VMSTATION_ALLOWED_NETWORKS`` is set (comma-separated CIDRs), every SSH
connection, UDP Wake-on-LAN packet and Jellyfin request to an address outside
them is refused before any packet leaves, and a raw Wake-on-LAN frame may only
leave by an interface whose addresses all lie inside them. The test suite and the
benchmark set it to loopback and their own test networks, so that a test can
never reach the real homelab of the default ``hosts.toml`` by mistake. Unset,
nothing is restricted. A value that is not a list of networks is bad input
(InputError), never "no restriction".

Standard library only: masternode's scheduled idle check imports it too.
"""

from __future__ import annotations

import ipaddress
import os
import socket

from vmstation.errors import InputError

ENV = "VMSTATION_ALLOWED_NETWORKS"


def allowed_networks() -> list | None:
    """The allowed networks, or None when the guard is off; InputError when the variable is malformed."""
    allowed = os.environ.get(ENV, "").strip()
    if not allowed:
        return None
    networks = []
    for item in allowed.split(","):
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise InputError(f"{ENV}: {item.strip()!r} is not a network like 10.77.0.0/16") from None
    if not networks:
        raise InputError(f"{ENV}={allowed!r} names no network")
    return networks


def refusal(address: str) -> str | None:
    """Why ``address`` may not be reached in this run, or None when it may."""
    networks = allowed_networks()
    if networks is None:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address} is not an IP address, and {ENV} allows only addresses in {_shown()}"
    if any(ip in network for network in networks):
        return None
    return f"{address} is outside {ENV}={_shown()}: not sending anything there"


def guarded_connection(host: str, port: int, timeout: float | None) -> socket.socket:
    """``socket.create_connection`` that checks every address a name resolves to before connecting to it.

    HTTP clients call this for each connection they open, so neither a DNS answer nor a second
    connection can lead a request outside the allowed networks.
    """
    last_error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        refused = refusal(address[0])
        if refused:
            raise InputError(f"{host}:{port}: {refused}")
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    raise last_error or OSError(f"{host}: no address")


def interface_refusal(interface: str) -> str | None:
    """Why a raw frame may not leave by ``interface``, or None when it may.

    A raw Ethernet frame has no destination address to check, so the guard looks at where it
    goes out: every address of the interface must lie inside the allowed networks, and an
    interface without any address (or one that cannot be listed) is refused. IPv6 link-local
    addresses are left out of the judgement: every link has one.
    """
    if allowed_networks() is None:
        return None
    # IPv6 link-local addresses exist on every link and say nothing about which network it is.
    addresses = [a for a in interface_addresses(interface) if not ipaddress.ip_address(a).is_link_local]
    if not addresses:
        return f"interface {interface} has no address inside {ENV}={_shown()} (raw frame not sent)"
    outside = [a for a in addresses if refusal(a) is not None]
    if outside:
        return (f"interface {interface} carries {', '.join(outside)}, outside {ENV}={_shown()} "
                "(raw frame not sent)")
    return None


def interface_addresses(interface: str) -> list[str]:
    """Every IPv4 and IPv6 address of ``interface`` (``ip -j address show dev``); [] when none can be read."""
    import json          # imported here: the UDP and SSH paths (and the masternode copy) never need them
    import subprocess

    try:
        result = subprocess.run(["ip", "-j", "address", "show", "dev", interface], capture_output=True,
                                timeout=5, stdin=subprocess.DEVNULL,       # an environment without secrets
                                env={"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"})
        entries = json.loads(result.stdout or b"[]") if result.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    return [info["local"] for entry in entries if isinstance(entry, dict)
            for info in entry.get("addr_info", []) if isinstance(info, dict) and "local" in info]


def _shown() -> str:
    return os.environ.get(ENV, "").strip()
