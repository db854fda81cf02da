"""SSH keys for test hosts: ed25519 key pairs and the known_hosts file that trusts them.

Keys are made with ``cryptography`` (no ssh-keygen process per host), written
in OpenSSH's own formats so that sshd, OpenSSH's client and paramiko all read them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_line: str  # "ssh-ed25519 AAAA... comment", as in authorized_keys

    @property
    def public_path(self) -> Path:
        return self.private_path.with_name(self.private_path.name + ".pub")


@dataclass(frozen=True)
class KnownHost:
    names: tuple[str, ...]  # addresses and/or host names the key is trusted for
    port: int
    public_line: str


def generate_ed25519(private_path: Path, comment: str) -> KeyPair:
    """Write a new key pair (private 0600, public beside it as ``.pub``)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public_line = f"{public.decode()} {comment}"
    _write_private(private_path, private)
    pair = KeyPair(private_path, public_line)
    pair.public_path.write_text(public_line + "\n")
    return pair


def write_known_hosts(path: Path, hosts: Iterable[KnownHost]) -> Path:
    """Write a plain known_hosts file, one line per host (``[addr]:port`` when the port is not 22)."""
    path.write_text("".join(known_hosts_line(h) + "\n" for h in hosts))
    return path


def known_hosts_line(host: KnownHost) -> str:
    names = host.names if host.port == 22 else tuple(f"[{n}]:{host.port}" for n in host.names)
    key_type, key_data = host.public_line.split()[:2]
    return f"{','.join(names)} {key_type} {key_data}"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
