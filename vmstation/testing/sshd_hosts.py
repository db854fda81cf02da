"""A set of plain sshd hosts, each in its own network namespace on a host bridge.

    with SshdHostSet(count=3, prefix="vmst", subnet="10.77.1.0/24", bridge="vmst0") as hosts:
        hosts[0].address, hosts.known_hosts, hosts.client_key, hosts.stop(1), hosts.start(1)

Each host is an OpenSSH sshd (``-D``, no systemd) run with ``ip netns exec`` in
its own namespace, with its own ed25519 host key. Root logs in by key only; the
user ``vmstation-sudo`` logs in by the same key and its sudo asks for a password
(``hosts.sudo_password``). All hosts start at once; the set is ready when every
port answers.

A namespace separates the network only: every host sees THIS machine's files,
users and packages. So each host gets ``host.root``, a directory of its own that
a test (or the benchmark, as ``<root>/etc/...``) writes into instead of ``/``.

Leaving the ``with`` block stops every process in the namespaces and removes
the namespaces, veths, bridge and the set's temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from vmstation.testing import HarnessError, netns
from vmstation.testing.inventory_file import InventoryHost, write_inventory
from vmstation.testing.known_hosts import KeyPair, KnownHost, generate_ed25519, write_known_hosts
from vmstation.testing.sudo_user import SUDO_USER, ensure_sudo_user

SSHD = "/usr/sbin/sshd"
READY_TIMEOUT = 15.0


@dataclass(frozen=True)
class SshdHost:
    index: int
    name: str        # also its namespace's name
    address: str
    port: int
    root: Path       # this host's own directory on the shared filesystem
    host_key: KeyPair


class SshdHostSet(netns.LockedHostSet):
    """N sshd hosts; a context manager (see the module docstring)."""

    def __init__(self, count: int = 3, prefix: str = "vmst", subnet: str = "10.77.1.0/24",
                 bridge: str = "vmst0", sudo_user: str = SUDO_USER, private_home: bool = False,
                 log_level: str = "INFO"):
        """``private_home``: each sshd sees a fresh /root made from /etc/skel (a mount namespace of its own).

        This machine's /root/.bashrc runs ``pyenv init`` (about 0.5 s), and bash sources it for every command
        sshd starts; a real host's stock .bashrc returns at once when not interactive. The benchmark needs
        that stock behaviour; tests that look at the shared /root keep the default.
        ``log_level``: sshd's LogLevel (VERBOSE logs one line per session: the benchmark counts them).
        """
        self.wiring = netns.Wiring(prefix, subnet, bridge)
        self.count, self.sudo_user = count, sudo_user
        self.private_home, self.log_level = private_home, log_level
        self.sudo_password = ""
        self.hosts: list[SshdHost] = []
        self.workdir = Path()
        self._daemons: dict[int, subprocess.Popen] = {}
        self._stack = ExitStack()

    # -- the set -----------------------------------------------------------------

    def __getitem__(self, index: int) -> SshdHost:
        return self.hosts[index]

    def __len__(self) -> int:
        return len(self.hosts)

    def __iter__(self):
        return iter(self.hosts)

    def stop(self, index: int) -> None:
        """Power a host off: every process in its namespace ends and its link goes down (no answer at all)."""
        self._kill_namespace(index)
        netns.set_link(self.hosts[index].name, up=False)

    def start(self, index: int) -> None:
        """Power a stopped host on again and wait until its sshd answers."""
        netns.set_link(self.hosts[index].name, up=True)
        self._start_daemon(index)
        self._wait_ready(index)

    def is_running(self, index: int) -> bool:
        daemon = self._daemons.get(index)
        return daemon is not None and daemon.poll() is None

    def leftovers(self) -> list[str]:
        """What the set left behind (namespaces, links, processes, files): empty after teardown."""
        found = netns.leftovers(self.wiring)
        found += [f"process {d.pid}" for d in self._daemons.values() if d.poll() is None]
        if self.workdir != Path() and self.workdir.exists():
            found.append(f"directory {self.workdir}")
        return found

    def write_inventory(self, path: Path, roles: list[tuple[str, ...]] | None = None,
                        cluster: str = "debian") -> Path:
        """Write a hosts.toml for these hosts (root by key, checked against ``known_hosts``).

        ``roles`` gives each host's roles in order; by default the first host is the control plane and
        the others are workers, which is what the loader requires of a kubeadm cluster."""
        roles = roles or [("control-plane",)] + [("worker",)] * (len(self.hosts) - 1)
        entries = [InventoryHost(name=h.name, address=h.address, port=h.port, roles=roles[h.index],
                                 cluster=cluster) for h in self.hosts]
        return write_inventory(path, entries, client_key=self.client_key, known_hosts=self.known_hosts)

    # -- setting up ----------------------------------------------------------------

    def _set_up(self) -> None:
        # the lock is ours: whatever carries the prefix is left from a crashed run
        netns.remove_all(self.wiring)
        for stale in Path(tempfile.gettempdir()).glob(f"{self.wiring.prefix}-sshd-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.wiring.prefix}-sshd-"))
        self.workdir.chmod(0o755)  # sshd reads authorized_keys as the logging-in user
        self.sudo_password = ensure_sudo_user(self.sudo_user)
        client = generate_ed25519(self.client_key, f"vmstation-test@{self.wiring.prefix}")
        (self.workdir / "authorized_keys").write_text(client.public_line + "\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        netns.create_bridge(self.wiring)
        with ThreadPoolExecutor(max_workers=16) as pool:
            self.hosts = list(pool.map(self._make_host, range(self.count)))
        write_known_hosts(self.known_hosts, [KnownHost((h.address,), h.port, h.host_key.public_line)
                                             for h in self.hosts])
        for host in self.hosts:
            self._start_daemon(host.index)
        for host in self.hosts:
            self._wait_ready(host.index)

    def _make_host(self, index: int) -> SshdHost:
        name = netns.create_host_netns(self.wiring, index)
        hostdir = self.workdir / name
        (hostdir / "root").mkdir(parents=True)
        key = generate_ed25519(hostdir / "ssh_host_ed25519_key", f"root@{name}")
        host = SshdHost(index, name, self.wiring.address(index), 22, hostdir / "root", key)
        (hostdir / "sshd_config").write_text(_sshd_config(host, self.workdir / "authorized_keys")
                                             + f"LogLevel {self.log_level}\n")
        return host

    def _start_daemon(self, index: int) -> None:
        hostdir = self.workdir / self.hosts[index].name
        name = self.hosts[index].name
        # its own UTS namespace too, so that `hostname` on the host answers the host's name
        namespaces, inner, extra = ["--uts"], 'hostname "$0" && exec "$@"', []
        if self.private_home:
            namespaces += ["--mount", "--propagation", "private"]
            inner = 'hostname "$0" && mount --bind "$1" /root && shift && exec "$@"'
            extra = [str(_stock_home(hostdir / "home"))]
        argv = ["ip", "netns", "exec", name, "unshare", *namespaces, "sh", "-c", inner, name, *extra,
                SSHD, "-D", "-f", str(hostdir / "sshd_config"), "-E", str(hostdir / "sshd.log")]
        self._daemons[index] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, start_new_session=True)

    def _wait_ready(self, index: int) -> None:
        host = self.hosts[index]
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._daemons[index].poll() is not None:
                raise HarnessError(f"{host.name}: sshd exited: {_log_tail(self.workdir / host.name / 'sshd.log')}")
            if netns.ssh_answers(host.address, host.port):
                return
            time.sleep(0.02)
        raise HarnessError(f"{host.name}: sshd did not answer on {host.address}:{host.port} in {READY_TIMEOUT} s")

    # -- tearing down -----------------------------------------------------------------

    def _tear_down(self) -> None:
        try:
            for host in self.hosts:
                self._kill_namespace(host.index)
            netns.remove_all(self.wiring)
            if self.workdir != Path():
                shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            self._stack.close()

    def _kill_namespace(self, index: int) -> None:
        netns.kill_all_in(self.hosts[index].name, grace=2.0)
        daemon = self._daemons.pop(index, None)
        if daemon is not None:
            daemon.wait(timeout=5)


def _stock_home(home: Path) -> Path:
    """A root home as Debian makes it (``/etc/skel``), mode 0700."""
    if not home.exists():
        shutil.copytree("/etc/skel", home, symlinks=True)
        home.chmod(0o700)
    return home


def _sshd_config(host: SshdHost, authorized_keys: Path) -> str:
    return "\n".join([
        f"ListenAddress {host.address}",
        f"Port {host.port}",
        f"HostKey {host.host_key.private_path}",
        "PidFile none",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        f"AuthorizedKeysFile {authorized_keys}",
        "StrictModes no",  # the key file lives in a temporary directory, not in a home
        "UsePAM no",
        "UseDNS no",
        "PrintMotd no",
        "MaxStartups 200:30:400",
        "MaxSessions 64",
        "Subsystem sftp internal-sftp",
        "",
    ])


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text().strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"
