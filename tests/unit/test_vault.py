"""Ansible Vault 1.1/1.2: files made by the real ansible-vault open, and ours are byte-identical to its own."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmstation import vault
from vmstation.errors import SecretError

DATA = Path(__file__).parent / "data"
# The fixtures were made with ansible-core 2.19's `ansible-vault encrypt` (and, for the fixed-salt one,
# with its VaultAES256.encrypt(..., salt=bytes(range(32)))) using this password.
PASSWORD = "correct horse battery staple"
FIXTURE_PLAINTEXT = (
    "# Secrets of the test homelab (fake values), ansible-vault encrypted\n"
    'homelab_become_password: "s3cret-sudo-pässword"\n'
    'jellyfin_api_key: "0123456789abcdef0123456789abcdef"\n'
).encode()


def test_decrypts_a_file_made_by_ansible_vault():
    text = (DATA / "ansible-vault-1.1.vault").read_text()
    assert vault.decrypt(text, PASSWORD) == FIXTURE_PLAINTEXT
    assert vault.vault_id(text) is None


def test_decrypts_a_vault_id_labelled_file():
    text = (DATA / "ansible-vault-1.2-label.vault").read_text()
    assert text.startswith("$ANSIBLE_VAULT;1.2;AES256;homelab\n")
    assert vault.decrypt(text.encode(), PASSWORD) == FIXTURE_PLAINTEXT
    assert vault.vault_id(text) == "homelab"


def test_encryption_is_byte_identical_to_ansible_vault_for_the_same_salt():
    expected = (DATA / "ansible-vault-fixed-salt.vault").read_text()
    ours = vault._encrypt_with_salt(b"homelab_become_password: known-answer\n", PASSWORD, bytes(range(32)))
    assert ours == expected


def test_output_has_the_1_1_header_and_80_column_lines():
    text = vault.encrypt(b"x" * 500, "pw")
    lines = text.split("\n")
    assert lines[0] == "$ANSIBLE_VAULT;1.1;AES256"
    assert lines[-1] == ""                                   # ends with a newline
    assert all(len(line) == 80 for line in lines[1:-2]) and 0 < len(lines[-2]) <= 80


@settings(max_examples=25, deadline=None)
@given(plaintext=st.binary(max_size=300), password=st.text(min_size=1, max_size=40))
def test_round_trip(plaintext, password):
    assert vault.decrypt(vault.encrypt(plaintext, password), password) == plaintext


def test_each_encryption_uses_a_new_salt():
    assert vault.encrypt(b"same", "pw") != vault.encrypt(b"same", "pw")


def test_wrong_password_is_a_secret_error_without_secrets():
    text = (DATA / "ansible-vault-1.1.vault").read_text()
    with pytest.raises(SecretError) as caught:
        vault.decrypt(text, "not the password")
    message = str(caught.value)
    assert message == "wrong vault password, or the vault file was modified (HMAC check failed)"
    assert "not the password" not in message and PASSWORD not in message


def test_a_modified_body_fails_the_hmac_check():
    text = vault.encrypt(b"secret: value\n", "pw")
    lines = text.split("\n")
    last = lines[-2]        # its last two hex digits spell the ciphertext's last hex digit: change that digit
    lines[-2] = last[:-2] + ("30" if last[-2:] != "30" else "31")
    with pytest.raises(SecretError, match="HMAC check failed"):
        vault.decrypt("\n".join(lines), "pw")


@pytest.mark.parametrize("text, message", [
    ("plain: yaml\n", "not an Ansible Vault file (no $ANSIBLE_VAULT;VERSION;CIPHER header)"),
    ("$ANSIBLE_VAULT;1.0;AES\nabcd\n", "vault format version '1.0' is not supported (1.1 and 1.2 are)"),
    ("$ANSIBLE_VAULT;1.1;AES128\nabcd\n", "vault cipher 'AES128' is not supported (AES256 is)"),
    ("$ANSIBLE_VAULT;1.1;AES256\nnot-hex\n", "vault body is damaged (not the hex of salt, HMAC and ciphertext)"),
    ("$ANSIBLE_VAULT;1.1;AES256\n6162\n", "vault body is damaged (not the hex of salt, HMAC and ciphertext)"),
])
def test_malformed_files(text, message):
    with pytest.raises(SecretError) as caught:
        vault.decrypt(text, "pw")
    assert str(caught.value) == message


def test_empty_password_is_refused():
    with pytest.raises(SecretError, match="the vault password is empty"):
        vault.encrypt(b"x", "")


def test_indented_inline_vault_value_decrypts():
    text = vault.encrypt(b"hunter2", "pw")
    indented = "\n".join("          " + line for line in text.splitlines())
    assert vault.decrypt(indented, "pw") == b"hunter2"


def test_is_encrypted():
    assert vault.is_encrypted(vault.encrypt(b"a", "pw"))
    assert vault.is_encrypted(b"$ANSIBLE_VAULT;1.1;AES256\n")
    assert not vault.is_encrypted("a: b\n")
