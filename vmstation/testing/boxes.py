"""Boxes: Debian 12 systemd-nspawn containers with real systemd, sshd, sudo and apt, one per network namespace.

    with BoxSet(names=["masternode", "storagenodet3500", "homelab"]) as boxes:
        boxes["masternode"].address, boxes.known_hosts, boxes.client_key
        boxes.stop("homelab"); boxes.is_running("homelab"); boxes.start("homelab"); boxes.mac("homelab")

Follows /work/shared/test-boxes.md: each box boots the cached base root
(``box_rootfs``) through an overlay (its changes go to its own upper
directory), in its own namespace with a fixed MAC on ``eth0``, from its own
cgroups (``box_cgroups``), with ``/var/lib/containerd`` bound to a directory of
its own so containerd's overlay snapshotter works. Packages come through the
apt proxy on the bridge address (``apt_proxy``: why a proxy, not NAT).

Users: root and ``vagrant`` (NOPASSWD sudo) and ``vmstation-sudo`` (sudo asks
for ``boxes.sudo_password``, random per set) all log in with ``client_key``.
``stop`` powers a box off (SIGTERM to nspawn) and keeps its disk and its
network namespace, so Wake-on-LAN frames to ``mac(name)`` can be captured; a
box that reboots (nspawn exits 133) is started again by its supervisor.
Leaving the ``with`` block leaves no mount, namespace, veth, process, cgroup or
directory behind (``leftovers()`` lists any).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from vmstation.testing import HarnessError, netns
from vmstation.testing.apt_proxy import AptProxy
from vmstation.testing.box_cgroups import create_box_cgroups, remove_box_cgroups
from vmstation.testing.box_rootfs import ensure_base_rootfs
from vmstation.testing.commands import run
from vmstation.testing.inventory_file import InventoryHost, write_inventory
from vmstation.testing.known_hosts import KeyPair, KnownHost, generate_ed25519, write_known_hosts
from vmstation.testing.sudo_user import SUDO_USER, new_password, set_password

REBOOT_EXIT = 133  # systemd-nspawn's exit code when the box asked for a reboot
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
WORK_PARENT = "/var/tmp"  # on disk, not a tmpfs: the boxes' overlay upper directories grow with apt
NSPAWN_ENV = {"SYSTEMD_SECCOMP": "0", "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}
HOMELAB_ROLES = {"masternode": ("control-plane",), "storagenodet3500": ("worker", "jellyfin"),
                 "homelab": ("server",)}


@dataclass(frozen=True)
class Box:
    index: int
    name: str        # machine name and hostname
    address: str
    port: int
    mac: str         # of eth0 inside the box
    netns: str
    root: Path       # the box's mounted root (overlay): what the box sees as /
    host_key: KeyPair


class BoxSet(netns.LockedHostSet):
    """Boxes named ``names``; a context manager (see the module docstring)."""

    def __init__(self, names: list[str], prefix: str = "vmsb", subnet: str = "10.77.2.0/24",
                 bridge: str = "vmsb0", macs: dict[str, str] | None = None, cache_dir: Path | None = None,
                 proxy_port: int = 3142):
        self.wiring = netns.Wiring(prefix, subnet, bridge)
        self.names, self.macs, self.cache_dir, self.proxy_port = list(names), dict(macs or {}), cache_dir, proxy_port
        self.boxes: dict[str, Box] = {}
        self.workdir = Path()
        self.sudo_user, self.sudo_password = SUDO_USER, ""
        self.apt_proxy_url = ""
        self._runners: dict[str, _Runner] = {}
        self._cgroups: dict[str, list[Path]] = {}
        self._stack = ExitStack()

    # -- the set -------------------------------------------------------------------

    def __getitem__(self, name: str) -> Box:
        return self.boxes[name]

    def __iter__(self):
        return iter(self.boxes.values())

    def __len__(self) -> int:
        return len(self.boxes)

    def mac(self, name: str) -> str:
        return self.boxes[name].mac

    def start(self, name: str) -> None:
        """Power a box on and wait until its sshd answers."""
        if not self.is_running(name):
            self._runners[name] = self._runner(name)
        self._wait_ready(name)

    def stop(self, name: str) -> None:
        """Power a box off cleanly (SIGTERM to nspawn: the box's systemd shuts down); its disk stays."""
        runner = self._runners.pop(name, None)
        if runner is not None:
            runner.stop()
        netns.kill_all_in(self.boxes[name].netns)

    def is_running(self, name: str) -> bool:
        runner = self._runners.get(name)
        return runner is not None and runner.alive

    def leftovers(self) -> list[str]:
        """What the set left behind: empty after teardown."""
        found = netns.leftovers(self.wiring)
        found += [f"mount {b.root}" for b in self.boxes.values() if os.path.ismount(b.root)]
        found += [f"cgroup {d}" for dirs in self._cgroups.values() for d in dirs if d.exists()]
        found += [f"process of {n}" for n, r in self._runners.items() if r.alive]
        if self.workdir != Path() and self.workdir.exists():
            found.append(f"directory {self.workdir}")
        return found

    def write_inventory(self, path: Path, roles: dict[str, tuple[str, ...]] | None = None,
                        clusters: dict[str, str] | None = None, host_extra: dict[str, dict] | None = None,
                        cluster_extra: dict[str, dict] | None = None, vault: Path | None = None,
                        power: dict | None = None) -> Path:
        """Write a hosts.toml for the boxes: by default the homelab's roles and clusters, root by key.

        ``host_extra`` adds or overrides Host keys per box (ssh_user, become_password, always_on, ...).
        """
        roles = roles or HOMELAB_ROLES
        clusters = clusters or {"homelab": "rke2"}
        host_extra = host_extra or {}
        entries = []
        for b in self.boxes.values():
            extra = dict(host_extra.get(b.name, {}))
            entries.append(InventoryHost(
                name=b.name, address=b.address, port=b.port, mac=b.mac, roles=roles.get(b.name, ("worker",)),
                cluster=clusters.get(b.name, "debian"), apt_proxy=self.apt_proxy_url,
                ssh_user=extra.pop("ssh_user", "root"), become_password=extra.pop("become_password", None),
                extra=tuple(extra.items())))
        return write_inventory(path, entries, client_key=self.client_key, known_hosts=self.known_hosts, vault=vault,
                               cluster_extra=cluster_extra, power=power)

    # -- setting up -------------------------------------------------------------------

    def _set_up(self) -> None:
        netns.remove_all(self.wiring)  # the lock is ours: whatever carries the prefix is left from a crash
        _remove_stale(self.wiring.prefix)
        base = ensure_base_rootfs(self.cache_dir)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.wiring.prefix}-boxes-", dir=WORK_PARENT))
        client = generate_ed25519(self.client_key, f"vmstation-test@{self.wiring.prefix}")
        self.sudo_password = new_password()
        netns.create_bridge(self.wiring)
        proxy = self._stack.enter_context(AptProxy(self.wiring.gateway, self.proxy_port))
        self.apt_proxy_url = proxy.url
        for index, name in enumerate(self.names):
            self.boxes[name] = self._make_box(index, name, base, client.public_line)
        write_known_hosts(self.known_hosts, [KnownHost((b.address, b.name), b.port, b.host_key.public_line)
                                             for b in self.boxes.values()])
        for name in self.names:
            self._cgroups[name] = create_box_cgroups(f"{self.wiring.prefix}-{name}")
            self._runners[name] = self._runner(name)
        for name in self.names:
            self._wait_ready(name)

    def _make_box(self, index: int, name: str, base: Path, client_public: str) -> Box:
        boxdir = self.workdir / name
        for sub in ("upper", "work", "root", "containerd"):
            (boxdir / sub).mkdir(parents=True)
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={base},upperdir={boxdir / 'upper'},workdir={boxdir / 'work'}", str(boxdir / "root")])
        mac = self.macs.get(name) or _fixed_mac(self.wiring.prefix, name)
        ns = netns.create_host_netns(self.wiring, index, netns=f"{self.wiring.prefix}-{name}", mac=mac)
        key = generate_ed25519(boxdir / "root/etc/ssh/ssh_host_ed25519_key", f"root@{name}")
        box = Box(index, name, self.wiring.address(index), 22, mac, ns, boxdir / "root", key)
        self._personalise(box, client_public)
        return box

    def _personalise(self, box: Box, client_public: str) -> None:
        """Hostname, /etc/hosts, the test key for every login user, the sudo password, apt's proxy."""
        etc = box.root / "etc"
        (etc / "hostname").write_text(box.name + "\n")
        peers = "".join(f"{self.wiring.address(i)}\t{n}\n" for i, n in enumerate(self.names))
        (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n{peers}")
        (etc / "apt/apt.conf.d/01vmstation-test-proxy").write_text(
            f'Acquire::http::Proxy "{self.apt_proxy_url}";\nAcquire::https::Proxy "{self.apt_proxy_url}";\n')
        for user in ("root", "vagrant", self.sudo_user):
            _authorize(box.root, user, client_public)
        set_password(self.sudo_user, self.sudo_password, root=box.root)

    def _runner(self, name: str) -> _Runner:
        return _Runner(name, self._nspawn_argv(self.boxes[name]), self._cgroups[name],
                       self.workdir / name / "console.log")

    def _nspawn_argv(self, box: Box) -> list[str]:
        containerd = self.workdir / box.name / "containerd"
        return ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "-M", box.name, "-D", str(box.root),
                f"--network-namespace-path=/run/netns/{box.netns}", "--capability=all", "--resolv-conf=off",
                "--bind=/dev/kmsg", f"--bind={containerd}:/var/lib/containerd", "--console=read-only"]

    def _wait_ready(self, name: str) -> None:
        box, runner = self.boxes[name], self._runners[name]
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if not runner.alive:
                raise HarnessError(f"box {name}: systemd-nspawn exited {runner.exit_code}: "
                                   f"see {self.workdir / name / 'console.log'}")
            if netns.ssh_answers(box.address, box.port):
                return
            time.sleep(0.05)
        raise HarnessError(f"box {name}: sshd did not answer on {box.address}:22 in {BOOT_TIMEOUT} s")

    # -- tearing down --------------------------------------------------------------------

    def _tear_down(self) -> None:
        """Undo everything, step by step; a step that fails does not stop the others, and is reported."""
        failures = []
        for name in list(self._runners):
            failures += _attempt(f"stop {name}", lambda name=name: self.stop(name))
        for box in self.boxes.values():
            failures += _attempt(f"kill {box.netns}", lambda box=box: netns.kill_all_in(box.netns))
            if os.path.ismount(box.root):
                failures += _attempt(f"unmount {box.root}", lambda box=box: run(["umount", str(box.root)]))
        failures += [f"cgroup {d}" for dirs in self._cgroups.values() for d in remove_box_cgroups(dirs)]
        failures += _attempt("network", lambda: netns.remove_all(self.wiring))
        self._stack.close()
        if self.workdir != Path() and not any(os.path.ismount(b.root) for b in self.boxes.values()):
            shutil.rmtree(self.workdir, ignore_errors=True)
        if failures:
            raise HarnessError(f"box set {self.wiring.prefix}: teardown left: {'; '.join(failures)}")


class _Runner:
    """One box's systemd-nspawn, started from the box's cgroups, started again when the box reboots."""

    def __init__(self, name: str, argv: list[str], cgroups: list[Path], console: Path):
        self.argv, self.cgroups, self.console = argv, cgroups, console
        self.exit_code: int | None = None
        self._stopping = threading.Event()
        self._process = self._spawn()
        self._thread = threading.Thread(target=self._supervise, name=f"box-{name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stopping.set()
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._thread.join(timeout=STOP_TIMEOUT)

    def _spawn(self) -> subprocess.Popen:
        # the shell joins the box's cgroups, then becomes nspawn in a session of its own
        joiner = 'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs"; shift; done; shift; exec "$@"'
        argv = ["sh", "-c", joiner, "sh", *map(str, self.cgroups), "--", *self.argv]
        with open(self.console, "ab") as console:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                    env={**os.environ, **NSPAWN_ENV}, start_new_session=True)

    def _supervise(self) -> None:
        while True:
            self.exit_code = self._process.wait()
            if self.exit_code != REBOOT_EXIT or self._stopping.is_set():
                return
            self._process = self._spawn()


def _attempt(step: str, action) -> list[str]:
    """Run one teardown step; return [] or a one-item list naming the step and what went wrong."""
    try:
        action()
    except (OSError, subprocess.SubprocessError, HarnessError) as error:
        return [f"{step}: {error}"]
    return []


def _authorize(root: Path, user: str, public_line: str) -> None:
    uid, gid, home = _passwd_entry(root, user)
    ssh_dir = root / home.lstrip("/") / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(public_line + "\n")
    for path in (ssh_dir, keys):
        os.chown(path, uid, gid)
    keys.chmod(0o600)


def _passwd_entry(root: Path, user: str) -> tuple[int, int, str]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3]), fields[5]
    raise HarnessError(f"{root}/etc/passwd: no user {user!r} in the box's base")


def _fixed_mac(prefix: str, name: str) -> str:
    """A locally administered unicast MAC that depends only on the prefix and the box name."""
    digest = hashlib.sha256(f"{prefix}/{name}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _remove_stale(prefix: str) -> None:
    """Unmount and delete box directories left by a crashed run of this prefix (/var/tmp/PREFIX-boxes-*)."""
    stale = f"{WORK_PARENT}/{prefix}-boxes-"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        mountpoint = line.split()[1]
        if mountpoint.startswith(stale):
            run(["umount", "-l", mountpoint], check=False)
    for directory in Path(WORK_PARENT).glob(f"{prefix}-boxes-*"):
        shutil.rmtree(directory, ignore_errors=True)
