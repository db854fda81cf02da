"""Network namespaces wired to a host bridge: the network under every test host.

A ``Wiring`` names everything a set of hosts owns: the bridge, the subnet and a
prefix that starts every namespace and host-side veth name. Sets with different
prefixes, bridges and subnets never collide, so the tests (``vmst``,
10.77.1.0/24), the boxes (``vmsb``, 10.77.2.0/24) and the benchmark (``vmsbn``,
10.77.16.0/20) can run side by side. The bridge holds the subnet's first
address; host ``i`` gets the address ``i + 2`` and sees its link as ``eth0``.

A set holds an exclusive lock on its prefix while it lives; whatever carries the
prefix when the lock is free is left from a crashed run and is removed first.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vmstation import transport
from vmstation.testing import HarnessError
from vmstation.testing.commands import run

IFNAMSIZ = 15  # the kernel's limit on an interface name, without the NUL
LOCK_DIR = Path("/run/vmstation-testing")
INNER_LINK = "eth0"
NETNS_ETC = Path("/etc/netns")


@dataclass(frozen=True)
class Wiring:
    """The names and addresses one set of test hosts owns."""

    prefix: str
    subnet: str
    bridge: str

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> str:
        """The bridge's address on this machine: what the hosts reach this machine by."""
        return str(self.network.network_address + 1)

    def address(self, index: int) -> str:
        address = self.network.network_address + 2 + index
        if address >= self.network.broadcast_address:
            raise HarnessError(f"{self.subnet}: no address left for host number {index + 1}")
        return str(address)

    def netns(self, index: int) -> str:
        return f"{self.prefix}-h{index + 1}"

    def veth(self, index: int) -> str:
        return checked_ifname(f"{self.prefix}-h{index + 1}")


def checked_ifname(name: str) -> str:
    """Return ``name`` if the kernel accepts it as an interface name."""
    if not name or len(name) > IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise HarnessError(f"interface name {name!r}: at most {IFNAMSIZ} characters, no '/' or spaces")
    return name


def create_bridge(wiring: Wiring) -> None:
    """Create the bridge with the gateway address (a route to the subnet comes with it)."""
    bridge = checked_ifname(wiring.bridge)
    run(["ip", "link", "add", bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{wiring.gateway}/{wiring.network.prefixlen}", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def create_host_netns(wiring: Wiring, index: int, netns: str | None = None, mac: str | None = None) -> str:
    """Create a namespace holding ``eth0`` (a veth on the bridge) with host ``index``'s address; return its name."""
    netns = netns or wiring.netns(index)
    veth = wiring.veth(index)
    run(["ip", "netns", "add", netns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", INNER_LINK, "netns", netns])
    run(["ip", "link", "set", veth, "master", wiring.bridge, "up"])
    inside = ["ip", "-n", netns]
    if mac:
        run([*inside, "link", "set", INNER_LINK, "address", mac])
    run([*inside, "addr", "add", f"{wiring.address(index)}/{wiring.network.prefixlen}", "dev", INNER_LINK])
    run([*inside, "link", "set", "lo", "up"])
    run([*inside, "link", "set", INNER_LINK, "up"])
    run([*inside, "route", "add", "default", "via", wiring.gateway])
    _write_netns_etc(netns, wiring.address(index))
    return netns


def _write_netns_etc(netns: str, address: str) -> None:
    """Files ``ip netns exec`` mounts over /etc: the host's own name resolves, and no DNS server is asked
    (this machine's resolver is not reachable from a namespace: every lookup would wait for its timeout)."""
    etc = NETNS_ETC / netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n{address}\t{netns}\n")
    (etc / "resolv.conf").write_text("")


def set_link(netns: str, up: bool) -> None:
    """Take a host's only link up or down (down: the host answers nothing, as when it is off)."""
    run(["ip", "-n", netns, "link", "set", INNER_LINK, "up" if up else "down"])


def pids_in(netns: str) -> list[int]:
    """The processes living in a namespace."""
    out = run(["ip", "netns", "pids", netns], check=False)
    return [int(word) for word in out.split()]


def ssh_answers(address: str, port: int = 22) -> bool:
    """Whether an SSH server sends its banner at ``address:port``, with the short waits a harness polls with."""
    return transport.ssh_answers(address, port, connect_timeout=0.2, read_timeout=1.0)


def kill_all_in(netns: str, grace: float = 5.0) -> None:
    """End every process in a namespace: SIGTERM, then SIGKILL to those still there after ``grace`` seconds.

    This reaches what a process group would miss: sshd's sessions start sessions of their own, and a box's
    processes are children of its own init."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = pids_in(netns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and pids_in(netns) and time.monotonic() < deadline:
            time.sleep(0.02)


def remove_all(wiring: Wiring) -> None:
    """End the processes in, then delete, every namespace and link carrying the prefix, then the bridge
    (deleting a namespace deletes its veth)."""
    for netns in _netns_with_prefix(wiring.prefix):
        kill_all_in(netns)
        run(["ip", "netns", "delete", netns], check=False)
    for etc in NETNS_ETC.glob(f"{wiring.prefix}-*"):
        shutil.rmtree(etc, ignore_errors=True)
    for link in _links_with_prefix(wiring.prefix):
        run(["ip", "link", "delete", link], check=False)
    if _link_exists(wiring.bridge):
        run(["ip", "link", "delete", wiring.bridge])


def leftovers(wiring: Wiring) -> list[str]:
    """Names of namespaces, links and the bridge still present: empty after a clean teardown."""
    found = [f"netns {n}" for n in _netns_with_prefix(wiring.prefix)]
    found += [f"directory {etc}" for etc in NETNS_ETC.glob(f"{wiring.prefix}-*")]
    found += [f"link {link}" for link in _links_with_prefix(wiring.prefix)]
    if _link_exists(wiring.bridge):
        found.append(f"bridge {wiring.bridge}")
    return found


@contextlib.contextmanager
def prefix_lock(prefix: str) -> Iterator[None]:
    """Hold the prefix for this process; fail at once when another live set holds it."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_DIR / f"{prefix}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HarnessError(f"prefix {prefix!r} is in use by another running set of test hosts") from None
        yield
    finally:
        os.close(fd)


def _netns_with_prefix(prefix: str) -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix + "-")]


def _links_with_prefix(prefix: str) -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False)
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith(prefix + "-")]


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


class LockedHostSet:
    """The life of a set of test hosts: hold the prefix's lock, set up, and tear down whatever happens.

    Subclasses set ``self.wiring``, ``self.workdir`` and ``self._stack`` (an ExitStack closed by their
    ``_tear_down``) and provide ``_set_up`` and ``_tear_down``.
    """

    def __enter__(self):
        self._stack.enter_context(prefix_lock(self.wiring.prefix))
        try:
            self._set_up()
        except BaseException:
            self._tear_down()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._tear_down()

    @property
    def known_hosts(self) -> Path:
        """The set's known_hosts file: every host's own key."""
        return self.workdir / "known_hosts"

    @property
    def client_key(self) -> Path:
        """The private key every host of the set accepts."""
        return self.workdir / "id_ed25519"

