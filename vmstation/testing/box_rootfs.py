"""The shared read-only Debian 12 root filesystem every box boots from, built once and cached.

The recipe (mmdebstrap command, this machine's apt sources and apt.conf.d, the
files and the script below) is hashed into the cache entry's name, so a change
of recipe builds a new entry and an unchanged one is reused across runs. The
cache lives in /var/cache/vmstation-boxes unless ``VMSTATION_BOX_CACHE`` says
otherwise. A build goes to a scratch directory and is renamed into place, under
a lock, so a crash or a second builder never leaves a half-made entry.

What the base holds (per-box things, such as host keys and the test key, are
added by ``boxes`` in each box's overlay): a ``vagrant`` user with NOPASSWD
sudo (like a Vagrant box), a ``vmstation-sudo`` user whose sudo asks for a
password, root login by key only, an empty machine-id, apt timers masked, no SSH
host keys, no DNS server (apt goes through the proxy on the bridge), and a unit
that remounts the cgroup controllers read-write so containerd and runc work.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from vmstation.testing.commands import run
from vmstation.testing.sudo_user import SUDO_USER, write_sudoers_rule

CACHE_ENV = "VMSTATION_BOX_CACHE"
DEFAULT_CACHE = Path("/var/cache/vmstation-boxes")
SUITE = "bookworm"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
HOST_APT_CONF = Path("/etc/apt/apt.conf.d")
PACKAGES = ("systemd,systemd-sysv,dbus,libpam-systemd,openssh-server,sudo,python3,iproute2,kmod,procps,"
            "ca-certificates,curl,gnupg")
MMDEBSTRAP = ("mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE)

CGROUP_RW_UNIT = """\
[Unit]
Description=Make the cgroup controllers writable (systemd-nspawn bind-mounts them read-only)
DefaultDependencies=no
Before=sysinit.target
ConditionVirtualization=systemd-nspawn

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'rc=0; for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d" || rc=1; done; exit $rc'

[Install]
WantedBy=sysinit.target
"""

SSHD_DROP_IN = "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"

CUSTOMIZE = f"""\
set -e
useradd --create-home --shell /bin/bash vagrant
useradd --create-home --shell /bin/bash {SUDO_USER}
: > /etc/machine-id
: > /etc/resolv.conf
rm -f /etc/ssh/ssh_host_*
systemctl mask apt-daily.timer apt-daily-upgrade.timer
systemctl enable vmstation-cgroup-rw.service
apt-get clean
"""


def ensure_base_rootfs(cache_dir: Path | None = None) -> Path:
    """Return the cached base root filesystem for the current recipe, building it first when missing."""
    cache = cache_dir or Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    entry = cache / f"{SUITE}-{recipe_hash()}"
    if (entry / "etc/os-release").exists():
        return entry
    with _locked(cache / ".lock"):
        if not (entry / "etc/os-release").exists():
            _build(entry)
    return entry


def recipe_hash() -> str:
    """A short hash of everything that goes into the base, this machine's apt configuration included."""
    digest = hashlib.sha256()
    for part in (*MMDEBSTRAP, CGROUP_RW_UNIT, SSHD_DROP_IN, CUSTOMIZE, HOST_SOURCES.read_text()):
        digest.update(part.encode() + b"\0")
    for name, text in sorted(_host_apt_conf().items()):
        digest.update(name.encode() + b"\0" + text + b"\0")
    return digest.hexdigest()[:12]


def _build(entry: Path) -> None:
    scratch = entry.with_name(f".build-{entry.name}-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        run([*MMDEBSTRAP, str(scratch), str(HOST_SOURCES)], timeout=1800)
        _write_files(scratch)
        run(["chroot", str(scratch), "/bin/sh", "-c", CUSTOMIZE], timeout=300)
        scratch.rename(entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_files(root: Path) -> None:
    for name, text in _host_apt_conf().items():
        (root / "etc/apt/apt.conf.d" / name).write_bytes(text)
    (root / "etc/systemd/system/vmstation-cgroup-rw.service").write_text(CGROUP_RW_UNIT)
    (root / "etc/ssh/sshd_config.d/vmstation.conf").write_text(SSHD_DROP_IN)
    write_sudoers_rule(root, "vagrant", nopasswd=True)
    write_sudoers_rule(root, SUDO_USER, nopasswd=False)


def _host_apt_conf() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(HOST_APT_CONF.iterdir()) if p.is_file()}


class _locked:
    """An exclusive flock on a file for the span of a with block (waits for another builder)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)
