"""A guard that keeps a run inside the networks it is allowed to reach.

When ``VMSTATION_ALLOWED_NETWORKS`` is set (comma-separated CIDRs), every SSH
connection, UDP Wake-on-LAN packet and Jellyfin request to an address outside
them is refused before any packet leaves. The test suite and the benchmark set it
to loopback and their own test networks, so that a test can never reach the real
homelab of the default ``hosts.toml`` by mistake. Unset, nothing is restricted.
"""

from __future__ import annotations

import ipaddress
import os

ENV = "VMSTATION_ALLOWED_NETWORKS"


def refusal(address: str) -> str | None:
    """Why ``address`` may not be reached in this run, or None when it may."""
    allowed = os.environ.get(ENV, "").strip()
    if not allowed:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{address} is not an IP address, and {ENV} allows only addresses in {allowed}"
    networks = [ipaddress.ip_network(n.strip(), strict=False) for n in allowed.split(",") if n.strip()]
    if any(ip in network for network in networks):
        return None
    return f"{address} is outside {ENV}={allowed}: not sending anything there"
