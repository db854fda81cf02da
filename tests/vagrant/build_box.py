"""Build (once) and register a local Debian 12 Vagrant box for the libvirt provider.

For machines where no public box can be downloaded and no hardware
virtualisation runs ordinary guests (see /work/shared/test-boxes.md): the box
harness's cached Debian 12 root filesystem plus Debian's ``linux-image-amd64``,
written into an ext4 file system with no partition table (the VM boots the
kernel directly, so it needs no boot loader), converted to qcow2 and packed with
``metadata.json``. Kernel, initrd and a key pair made for this box are kept
beside it; ``box.json`` tells the Vagrantfile where they are.

    python -m tests.vagrant.build_box      -> prints the box directory (built and added when missing)

The entry's name holds a hash of the base root and of this recipe, so a changed
recipe builds a new box and an unchanged one is reused. Building goes to a
scratch directory renamed into place under a lock, like the base root's cache.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from vmstation.testing import HarnessError
from vmstation.testing.box_rootfs import ensure_base_rootfs
from vmstation.testing.commands import run
from vmstation.testing.known_hosts import generate_ed25519

CACHE = Path(os.environ.get("VMSTATION_VAGRANT_CACHE", "/var/cache/vmstation-vagrant"))
DISK_GB = 8
CMD_LINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
PACKAGES = ("linux-image-amd64", "initramfs-tools", "e2fsprogs")

# The management NIC (eth0) takes its address by DHCP; Vagrant writes the private NIC's own
# static file (50-vagrant-eth1.network). wait-online is masked: it would wait on the private NIC
# before Vagrant has configured it, and nothing here needs network-online.target.
DHCP_NETWORK = "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n"
FSTAB = "/dev/vda / ext4 errors=remount-ro 0 1\n"

# The base root has no SSH host keys (each box makes its own): a VM makes them at first boot.
HOST_KEYS_UNIT = """\
[Unit]
Description=Make this VM's SSH host keys at first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""

INSTALL = f"""\
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends {' '.join(PACKAGES)}
systemctl enable systemd-networkd.service vmstation-ssh-hostkeys.service
systemctl mask systemd-networkd-wait-online.service
echo debian12 > /etc/hostname
apt-get clean
rm -rf /var/lib/apt/lists/*
"""


def main() -> int:
    try:
        entry = ensure_box()
    except HarnessError as error:
        print(f"build_box: {error}", file=sys.stderr)
        return 1
    print(entry)
    return 0


def ensure_box() -> Path:
    """The box directory for the current recipe: built, and added to Vagrant, when missing."""
    base = ensure_base_rootfs()
    CACHE.mkdir(parents=True, exist_ok=True)
    entry = CACHE / f"debian12-{_recipe_hash(base)}"
    with _locked(CACHE / ".lock"):
        if not (entry / "box.json").exists():
            _build(base, entry)
        _add_to_vagrant(entry)
    return entry


def _recipe_hash(base: Path) -> str:
    digest = hashlib.sha256()
    for part in (base.name, str(DISK_GB), CMD_LINE, *PACKAGES, DHCP_NETWORK, FSTAB, HOST_KEYS_UNIT, INSTALL):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:12]


def _build(base: Path, entry: Path) -> None:
    scratch = entry.with_name(f".build-{entry.name}-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    root = scratch / "root"
    try:
        scratch.mkdir()
        run(["cp", "-a", f"{base}/.", str(root)], timeout=600)
        key = generate_ed25519(scratch / "vagrant_ed25519", f"vagrant@{entry.name}")
        _write_files(root, key.public_line)
        _install_kernel(root)
        _extract_boot_files(root, scratch)
        _make_disk(root, scratch)
        shutil.rmtree(root)
        _pack(scratch, entry.name)
        scratch.rename(entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write_files(root: Path, vagrant_public_key: str) -> None:
    (root / "etc/fstab").write_text(FSTAB)
    (root / "etc/systemd/network/99-vmstation-dhcp.network").write_text(DHCP_NETWORK)
    (root / "etc/systemd/system/vmstation-ssh-hostkeys.service").write_text(HOST_KEYS_UNIT)
    ssh_dir = root / "home/vagrant/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(vagrant_public_key + "\n")
    (ssh_dir / "authorized_keys").chmod(0o600)
    uid, gid = _vagrant_ids(root)
    for path in (ssh_dir, ssh_dir / "authorized_keys"):
        os.chown(path, uid, gid)


def _install_kernel(root: Path) -> None:
    """apt inside the copy, with /proc, /sys and /dev bound and no service started by package scripts."""
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")   # apt needs DNS here; emptied below
    mounted = []
    try:
        for source, target, kind in (("proc", "proc", "proc"), ("/sys", "sys", None), ("/dev", "dev", None)):
            argv = ["mount", "-t", kind, source] if kind else ["mount", "--rbind", source]
            run([*argv, str(root / target)])
            mounted.append(root / target)
        run(["chroot", str(root), "/bin/sh", "-c", INSTALL], timeout=1800)
    finally:
        for path in reversed(mounted):
            run(["umount", "-R", "-l", str(path)], check=False)
        policy.unlink(missing_ok=True)
        (root / "etc/resolv.conf").write_text("")


def _extract_boot_files(root: Path, scratch: Path) -> None:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise SystemExit(f"{root}/boot: linux-image-amd64 left no vmlinuz-*/initrd.img-*")
    shutil.copyfile(kernels[-1], scratch / "vmlinuz")
    shutil.copyfile(initrds[-1], scratch / "initrd.img")
    for name in ("vmlinuz", "initrd.img"):
        (scratch / name).chmod(0o644)   # qemu runs as libvirt-qemu and reads them


def _make_disk(root: Path, scratch: Path) -> None:
    raw = scratch / "disk.raw"
    with open(raw, "wb") as disk:
        disk.truncate(DISK_GB * 1024 ** 3)
    run(["mkfs.ext4", "-q", "-F", "-L", "vmstation-root", "-d", str(root), str(raw)], timeout=900)
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(scratch / "box.img")], timeout=900)
    raw.unlink()


def _pack(scratch: Path, name: str) -> None:
    metadata = {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GB}
    (scratch / "metadata.json").write_text(json.dumps(metadata) + "\n")
    run(["tar", "-C", str(scratch), "-cf", str(scratch / "box.box"), "metadata.json", "box.img"], timeout=900)
    (scratch / "box.img").unlink()   # Vagrant keeps its own copy once added
    final = scratch.with_name(name)
    info = {"box": f"vmstation/{name}", "kernel": str(final / "vmlinuz"), "initrd": str(final / "initrd.img"),
            "cmd_line": CMD_LINE, "private_key": str(final / "vagrant_ed25519")}
    (scratch / "box.json").write_text(json.dumps(info, indent=2) + "\n")


def _add_to_vagrant(entry: Path) -> None:
    info = json.loads((entry / "box.json").read_text())
    listed = run([*_vagrant_outside_project(entry), "box", "list", "--machine-readable"], timeout=300)
    if f",box-name,{info['box']}" in listed:
        return
    run([*_vagrant_outside_project(entry), "box", "add", "--force", "--name", info["box"], str(entry / "box.box")],
        timeout=900)


def _vagrant_outside_project(entry: Path) -> list[str]:
    """Vagrant run from the box's own directory: every command loads the Vagrantfile of its working
    directory, and the project's (local mode) needs the box this very command is about to add."""
    return ["env", f"VAGRANT_CWD={entry}", "vagrant"]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock for the span of a with block (a second builder waits)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _vagrant_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "vagrant":
            return int(fields[2]), int(fields[3])
    raise SystemExit(f"{root}/etc/passwd: the base root has no vagrant user")


if __name__ == "__main__":
    sys.exit(main())
