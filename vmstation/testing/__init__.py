"""Real test hosts for vmstation's own tests and benchmarks (root only, Linux only).

Two kinds, both reachable only from this machine, each in its own network
namespace on a host bridge that the set itself creates and removes:

- ``sshd_hosts.SshdHostSet``: plain OpenSSH daemons, one per namespace, sharing
  this machine's filesystem (each gets a per-host directory to write into).
  Starts in well under a second; made for transport, sudo and benchmark tests.
- ``boxes.BoxSet``: Debian 12 systemd-nspawn containers with real systemd, sshd,
  sudo and apt (through an apt proxy on the bridge address). Made for tests of
  phases that change a whole host.

Nothing here sends traffic anywhere but to the addresses it created, except the
apt proxy, which forwards only to the package mirrors of this machine's own apt
sources.
"""

from __future__ import annotations


class HarnessError(RuntimeError):
    """A test host could not be set up or torn down; the message names the host and the step."""
