"""Host keys: every SSH client of the engine (a host's, a ProxyJump hop's) checks them here.

This replaces Fabric's AutoAddPolicy (accept any key): the inventory's known_hosts is loaded, an unknown key is
refused with a line that says how to record it, and only when the operator asked to trust new keys is one
recorded (in that file, atomically: vmstation.known_hosts).
"""

from __future__ import annotations

import functools
import logging
import os
from typing import TYPE_CHECKING

from vmstation.errors import HostKeyError
from vmstation.inventory import Host

if TYPE_CHECKING:
    from vmstation.transport import SshOptions

log = logging.getLogger(__name__)

UNKNOWN_KEY = "unknown host key for "      # the report gathers these into one line per host


def check_host_keys(client, host: Host, options: SshOptions, address: str | None = None,
                    via: Host | None = None) -> None:
    """Replace Fabric's AutoAddPolicy: known keys only, new ones only when asked, and recorded.

    known_hosts is parsed once per run; each client gets only the entries for its own host. Every SSH
    client of the engine (a host's, a ProxyJump hop's) goes through here.
    """
    known_hosts = os.path.expanduser(options.known_hosts)
    address = address or host.address
    name = address if host.ssh_port == 22 else f"[{address}]:{host.ssh_port}"
    for key_type, key in (_parsed_known_hosts(known_hosts).lookup(name) or {}).items():
        client.get_host_keys().add(name, key_type, key)
    client.set_missing_host_key_policy(TrustNewPolicy(known_hosts) if options.trust_new_host_keys
                                       else RejectPolicy(via or host, known_hosts, address if via else None))


def _parsed_known_hosts(path: str):
    import paramiko

    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return paramiko.HostKeys()
    return _parse_known_hosts(path, stamp)


@functools.lru_cache(maxsize=4)
def _parse_known_hosts(path: str, stamp: int):
    """Keyed by modification time too: a key recorded by --trust-new-host-keys is seen by later connections."""
    from vmstation import known_hosts

    return known_hosts.load(path)


class RejectPolicy:
    def __init__(self, host: Host, known_hosts: str, jump: str | None = None):
        self.host, self.known_hosts, self.jump = host, known_hosts, jump

    def missing_host_key(self, client, hostname, key):
        hop = f" (its ProxyJump hop {self.jump})" if self.jump else ""
        raise HostKeyError(self.host.name, f"{UNKNOWN_KEY}{hostname}{hop} ({key.get_name()} {key.fingerprint}) not in "
                           f"{self.known_hosts}; compare it with the host's own, then record it with "
                           f"`vmstation hosts trust {self.host.name}` (or --trust-new-host-keys)")


class TrustNewPolicy:
    """The operator said to trust keys seen for the first time: record them in known_hosts."""

    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        from vmstation import known_hosts

        known_hosts.append(self.known_hosts, hostname, key)     # newline-safe, atomic, under a lock
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("recorded new host key for %s (%s) in %s", hostname, key.fingerprint, self.known_hosts)
