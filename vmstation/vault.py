"""Ansible Vault 1.1: the encrypted file format of the older system, read and written byte for byte.

A vault file is a header line ``$ANSIBLE_VAULT;1.1;AES256`` (or, for reading,
``$ANSIBLE_VAULT;1.2;AES256;LABEL`` with a vault-id label) followed by a body
wrapped at 80 columns. The body is the hex of three lines::

    hex(salt)            32 random bytes
    hex(HMAC)            HMAC-SHA256 of the ciphertext, keyed by the second derived key
    hex(ciphertext)      AES-256-CTR of the PKCS#7-padded plaintext

PBKDF2-HMAC-SHA256 (10000 iterations) turns password and salt into 80 bytes:
the AES key (32), the HMAC key (32) and the CTR counter block (16). The HMAC is
checked in constant time before anything is decrypted, so a wrong password is
told apart from a damaged file only by that check: both are reported without
any secret in the message.
"""

from __future__ import annotations

import binascii
import hmac
import os

from vmstation.errors import SecretError

HEADER = "$ANSIBLE_VAULT"
_READABLE_VERSIONS = ("1.1", "1.2")
_CIPHER = "AES256"
_ITERATIONS = 10000
_SALT_BYTES = 32
_LINE_WIDTH = 80


def encrypt(plaintext: bytes, password) -> str:
    """Encrypt ``plaintext`` into Ansible Vault 1.1 text (header, body wrapped at 80, final newline)."""
    return _encrypt_with_salt(plaintext, password, os.urandom(_SALT_BYTES))


def decrypt(vaulttext: str | bytes, password) -> bytes:
    """Decrypt Ansible Vault 1.1/1.2 text; SecretError (without any secret) when it cannot."""
    salt, expected_hmac, ciphertext = _parse(vaulttext)
    aes_key, hmac_key, counter = _derive_keys(_password_bytes(password), salt)
    _verify_hmac(hmac_key, ciphertext, expected_hmac)
    return _unpad(_aes_ctr(aes_key, counter, ciphertext, encrypting=False))


def is_encrypted(text: str | bytes) -> bool:
    """Whether ``text`` starts with the Ansible Vault header."""
    head = text[: len(HEADER)]
    return (head.decode("ascii", "replace") if isinstance(head, bytes) else head) == HEADER


def vault_id(text: str | bytes) -> str | None:
    """The vault-id label of a 1.2 file (``$ANSIBLE_VAULT;1.2;AES256;LABEL``), None for 1.1."""
    fields = _header_fields(_as_text(text))
    return fields[3] if len(fields) > 3 else None


# --- format -----------------------------------------------------------------


def _encrypt_with_salt(plaintext: bytes, password, salt: bytes) -> str:
    """The whole of encrypt(); the salt is a parameter only so that a known-answer test can fix it."""
    aes_key, hmac_key, counter = _derive_keys(_password_bytes(password), salt)
    ciphertext = _aes_ctr(aes_key, counter, _pad(plaintext), encrypting=True)
    body = b"\n".join([binascii.hexlify(salt), _hmac(hmac_key, ciphertext).hex().encode(),
                       binascii.hexlify(ciphertext)])
    hex_body = binascii.hexlify(body).decode("ascii")
    lines = [f"{HEADER};1.1;{_CIPHER}"]
    lines += [hex_body[i:i + _LINE_WIDTH] for i in range(0, len(hex_body), _LINE_WIDTH)]
    return "\n".join(lines) + "\n"


def _parse(vaulttext: str | bytes) -> tuple[bytes, bytes, bytes]:
    text = _as_text(vaulttext).strip()
    fields = _header_fields(text)
    if fields[1] not in _READABLE_VERSIONS:
        raise SecretError(f"vault format version {fields[1]!r} is not supported (1.1 and 1.2 are)")
    if fields[2] != _CIPHER:
        raise SecretError(f"vault cipher {fields[2]!r} is not supported (AES256 is)")
    hex_body = "".join(line.strip() for line in text.splitlines()[1:])
    try:
        salt, hmac_hex, cipher_hex = binascii.unhexlify(hex_body).split(b"\n")
        return binascii.unhexlify(salt), binascii.unhexlify(hmac_hex), binascii.unhexlify(cipher_hex)
    except (ValueError, binascii.Error):
        raise SecretError("vault body is damaged (not the hex of salt, HMAC and ciphertext)") from None


def _header_fields(text: str) -> list[str]:
    first_line = text.lstrip().split("\n", 1)[0]
    fields = [f.strip() for f in first_line.split(";")]
    if fields[0] != HEADER or len(fields) < 3:
        raise SecretError(f"not an Ansible Vault file (no {HEADER};VERSION;CIPHER header)")
    return fields


def _as_text(vaulttext: str | bytes) -> str:
    if isinstance(vaulttext, str):
        return vaulttext
    try:
        return vaulttext.decode("ascii")
    except UnicodeDecodeError:
        raise SecretError("not an Ansible Vault file (not ASCII text)") from None


def _password_bytes(password) -> bytes:
    """str, bytes or a ``vmstation.secrets.Secret`` (anything with ``reveal()``)."""
    if hasattr(password, "reveal"):
        password = password.reveal()
    if isinstance(password, str):
        password = password.encode("utf-8", "surrogateescape")   # bytes of a password file, kept exact
    if not password:
        raise SecretError("the vault password is empty")
    return password


# --- cryptography -----------------------------------------------------------


def _derive_keys(password: bytes, salt: bytes) -> tuple[bytes, bytes, bytes]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    derived = PBKDF2HMAC(algorithm=hashes.SHA256(), length=80, salt=salt, iterations=_ITERATIONS).derive(password)
    return derived[:32], derived[32:64], derived[64:]


def _aes_ctr(key: bytes, counter: bytes, data: bytes, encrypting: bool) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    cipher = Cipher(algorithms.AES(key), modes.CTR(counter))
    context = cipher.encryptor() if encrypting else cipher.decryptor()
    return context.update(data) + context.finalize()


def _hmac(key: bytes, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.hmac import HMAC

    mac = HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def _verify_hmac(key: bytes, data: bytes, expected: bytes) -> None:
    if not hmac.compare_digest(_hmac(key, data), expected):      # constant time
        raise SecretError("wrong vault password, or the vault file was modified (HMAC check failed)")


def _pad(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding

    padder = padding.PKCS7(128).padder()
    return padder.update(data) + padder.finalize()


def _unpad(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding

    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError:
        raise SecretError("vault body is damaged (bad padding after a good HMAC)") from None
