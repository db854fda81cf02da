"""Air-gapped installs: files from an artifacts directory on the operator's machine.

Every file is checked against the directory's checksum file (``sha256sum``
format) BEFORE anything is uploaded, so a truncated download or a wrong version
stops the run on this machine, not half-way through a host.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vmstation.errors import InputError, Unsupported

CHECKSUM_FILES = ("SHA256SUMS", "sha256sum-amd64.txt", "sha256sums.txt")


def verified_files(host: str, directory: str | Path, names: list[str], what: str) -> dict[str, bytes]:
    """The content of ``names`` in ``directory``, each checked against the checksum file there.

    Missing files mean this machine cannot have them: Unsupported (the run stops
    that host's dependent phases and says so). A checksum that does not match is
    bad input: InputError.
    """
    base = Path(directory).expanduser()
    missing = [n for n in names if not (base / n).is_file()]
    if missing:
        raise Unsupported(host, f"{what}: {', '.join(missing)} not found in the artifacts directory {base} "
                          "(they cannot be downloaded on this machine; put them there to install air-gapped)")
    expected = read_checksums(base)
    contents = {}
    for name in names:
        data = (base / name).read_bytes()
        want = expected.get(name)
        if want is None:
            raise InputError(f"{base}: no checksum for {name} in {' or '.join(CHECKSUM_FILES)}")
        if hashlib.sha256(data).hexdigest() != want:
            raise InputError(f"{base / name}: sha256 does not match the checksum file: refusing to install it")
        contents[name] = data
    return contents


def read_checksums(directory: Path) -> dict[str, str]:
    """``{file name: sha256}`` from the first checksum file present (``HASH  NAME`` or ``HASH *NAME`` lines)."""
    for candidate in CHECKSUM_FILES:
        path = directory / candidate
        if path.is_file():
            sums = {}
            for raw in path.read_text().splitlines():
                parts = raw.split()
                if len(parts) == 2:
                    sums[Path(parts[1].lstrip("*")).name] = parts[0].lower()
            return sums
    return {}


def check_pinned(host: str, path: Path, data: bytes, pins: dict[str, str], what: str,
                 where: str = "vmstation/versions.py") -> None:
    """``data`` must have a sha256 listed in ``pins`` (digest -> source, from versions.py); else InputError.

    Used for files the release's checksum file does not cover (install.sh) or that come from elsewhere
    (the rke2-selinux RPM): the pin says this is the file upstream published.
    """
    digest = hashlib.sha256(data).hexdigest()
    if digest not in pins:
        raise InputError(f"{path}: sha256 {digest} is not a pinned {what} ({where}); "
                         f"refusing to install it on {host}")
