"""known_hosts: read strictly, append safely.

paramiko skips some broken lines and raises ``InvalidHostKey`` (a bare tuple of
line and error) on others, which surfaced as a traceback on every later
connection. Here a malformed line is one InputError naming the file and the line.

Appending (``--trust-new-host-keys``) happens while hosts connect in parallel, and
possibly beside another vmstation run, so each append takes a lock on the file's
directory, reads the current file, adds the entry on a line of its own (the file
may lack a final newline), writes a temporary file beside it and renames it over
the old one: a reader sees the old file or the new one, never half a line.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vmstation.atomic import write_atomically
from vmstation.errors import InputError

_NEW_FILE_MODE = 0o600


def load(path: str | os.PathLike):
    """The host keys of ``path`` as a paramiko ``HostKeys``; empty when the file does not exist.

    Blank lines, comments, unknown key types and marker lines (``@cert-authority``,
    ``@revoked``: paramiko has no use for them) are skipped, as OpenSSH does.
    """
    from vmstation.transport import import_paramiko

    keys = import_paramiko().HostKeys()
    for number, line in _lines(Path(path)):
        entry = _entry(path, number, line)
        if entry is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
    return keys


def check(path: str | os.PathLike) -> None:
    """Read ``path`` once so that a malformed line stops the run before any host is touched."""
    load(path)


def append(path: str | os.PathLike, hostname: str, key) -> bool:
    """Record ``hostname``'s ``key`` in ``path``; False when that exact entry is there already."""
    target = Path(os.path.realpath(os.path.expanduser(path)))
    entry = f"{hostname} {key.get_name()} {key.get_base64()}"
    if any(c.isspace() for c in hostname) or "\n" in entry or "\r" in entry:
        raise InputError(f"{target}: refusing to record a host name with white space in it: {hostname!r}")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _directory_lock(target.parent):
        old = target.read_bytes() if target.exists() else b""
        if entry.encode() in old.splitlines():
            return False
        separator = b"\n" if old and not old.endswith(b"\n") else b""
        _replace(target, old + separator + entry.encode() + b"\n")
    return True


# --- helpers -----------------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    from vmstation.values import read_input_file

    if not os.path.lexists(path):
        return
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a known_hosts file")
    data = read_input_file(path, "known_hosts file")      # a FIFO is refused, never waited on
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InputError(f"{path}: line {number}: not UTF-8 text") from None
        if line and not line.startswith(("#", "@")):
            yield number, line


def _entry(path, number: int, line: str):
    """One known_hosts line -> a paramiko HostKeyEntry, None for a key type paramiko does not know."""
    import paramiko
    from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

    fields = line.split()
    if len(fields) < 3:
        raise InputError(f"{path}: line {number}: malformed known_hosts entry (expected: host key-type key)")
    problem = f"{path}: line {number}: malformed known_hosts entry (the {fields[1]} key does not decode"
    try:
        base64.b64decode(fields[2], validate=True)
        entry = HostKeyEntry.from_line(" ".join(fields[:3]), number)
    except (InvalidHostKey, binascii.Error, paramiko.SSHException, ValueError, IndexError, TypeError):
        raise InputError(f"{problem}; two entries glued onto one line?)") from None
    # A key with bytes glued after it can still parse; only the exact encoding of the key itself is one key.
    if entry is not None and entry.key.get_base64() != fields[2]:
        raise InputError(f"{problem} to exactly one key; two entries glued onto one line?)")
    return entry


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on the directory: no stray lock file, and the file itself is replaced by rename."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _replace(target: Path, data: bytes) -> None:
    """The one atomic write, keeping the file's mode (a new file gets _NEW_FILE_MODE)."""
    write_atomically(target, data, target.stat().st_mode & 0o777 if target.exists() else _NEW_FILE_MODE)
