"""A non-root user whose sudo asks for a password: what the engine meets on the RHEL host.

On this machine (for ``SshdHostSet``, whose hosts share its users) the user is
created once and kept: several sets may run at once, so none may remove it or
change its password under the others. Its password is random, made on first use
and kept in a root-only file; it reaches ``chpasswd`` on stdin, never in argv.
Inside a box's root directory (``set_password(..., root=...)``) each box gets its own.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from vmstation.testing.commands import run

SUDO_USER = "vmstation-sudo"
STATE_DIR = Path("/var/lib/vmstation-testing")


def ensure_sudo_user(name: str = SUDO_USER) -> str:
    """Make sure ``name`` exists here with a password and a sudoers rule that asks for it; return the password."""
    if not _user_exists(name):
        run(["useradd", "--system", "--create-home", "--shell", "/bin/bash", name])
    password = _kept_password(name)
    set_password(name, password)
    write_sudoers_rule(Path("/"), name, nopasswd=False)
    return password


def set_password(name: str, password: str, root: Path | None = None) -> None:
    """Set the password through chpasswd's stdin (``root``: inside that root directory instead)."""
    chroot = ["--root", str(root)] if root else []
    run(["chpasswd", *chroot], stdin=f"{name}:{password}\n")


def write_sudoers_rule(root: Path, name: str, nopasswd: bool) -> Path:
    """Drop in ``/etc/sudoers.d/NAME`` under ``root``, checked with visudo before it is put in place."""
    rule = f"{name} ALL=(ALL:ALL) {'NOPASSWD: ' if nopasswd else ''}ALL\n"
    target = root / "etc/sudoers.d" / name
    staging = target.with_name(f".{name}.new")
    staging.write_text(rule)
    os.chmod(staging, 0o440)
    run(["visudo", "-c", "-q", "-f", str(staging)])
    os.replace(staging, target)
    return target


def new_password() -> str:
    return secrets.token_urlsafe(18)


def _kept_password(name: str) -> str:
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = STATE_DIR / f"{name}.password"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(new_password())
    return path.read_text().strip()


def _user_exists(name: str) -> bool:
    return any(line.split(":", 1)[0] == name for line in Path("/etc/passwd").read_text().splitlines())
