"""Secrets: masked values, one lazy unlock per run, the password sources, redaction and the vault file commands."""

from __future__ import annotations

import os
import pty
import shutil
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vmstation import vault
from vmstation.errors import SecretError
from vmstation.inventory import load_text
from vmstation.secrets import (
    Secret,
    SecretStore,
    parse_secrets,
    read_vault_password,
    redact,
    vault_edit,
    vault_encrypt,
    vault_view,
)

DATA = Path(__file__).parent / "data"
PASSWORD = "correct horse battery staple"          # the password of the ansible-vault fixtures
SUDO = "s3cret-sudo-pässword"                      # a value inside the fixture
ROOT = Path(__file__).resolve().parents[2]

INVENTORY = """\
vault = "secrets.vault"

[power]
jellyfin_api_key = "vault:jellyfin_api_key"

[clusters.rke2]
kind = "rke2"

[hosts.homelab]
address = "10.0.0.3"
cluster = "rke2"
roles = ["server"]
ssh_user = "admin"
become_password = "vault:homelab_become_password"
"""


@pytest.fixture
def inventory(tmp_path):
    shutil.copy(DATA / "ansible-vault-1.1.vault", tmp_path / "secrets.vault")
    (tmp_path / "vault-pass").write_text(PASSWORD + "\n")
    return load_text(INVENTORY, str(tmp_path / "hosts.toml"))


@pytest.fixture(autouse=True)
def no_password_in_environment(monkeypatch):
    monkeypatch.delenv("VMSTATION_VAULT_PASSWORD", raising=False)


def test_secret_is_masked_everywhere_but_reveal():
    secret = Secret("hunter2")
    logged = "%s" % (secret,)  # noqa: UP031 - the way logging formats its arguments
    shown = [str(secret), repr(secret), f"{secret}", f"{secret!r}", f"{secret:>20}", logged,
             str([secret]), str({"password": secret})]
    assert all("hunter2" not in text for text in shown)
    assert str(secret) == repr(secret) == "***"
    assert secret.reveal() == "hunter2"
    assert secret == Secret("hunter2") and secret != Secret("other")


def test_resolves_references_from_an_ansible_vault_file(inventory, tmp_path):
    store = SecretStore.open(inventory, password_file=tmp_path / "vault-pass")
    assert store.resolve(inventory.host("homelab").become_password).reveal() == SUDO
    assert store.resolve("vault:jellyfin_api_key").reveal() == "0123456789abcdef0123456789abcdef"


def test_password_from_environment(inventory, monkeypatch):
    monkeypatch.setenv("VMSTATION_VAULT_PASSWORD", PASSWORD)
    assert SecretStore.open(inventory).resolve("vault:homelab_become_password").reveal() == SUDO


def test_password_file_wins_over_environment(inventory, tmp_path, monkeypatch):
    monkeypatch.setenv("VMSTATION_VAULT_PASSWORD", "wrong")
    store = SecretStore.open(inventory, password_file=tmp_path / "vault-pass")
    assert store.resolve("vault:homelab_become_password").reveal() == SUDO


def test_nothing_is_read_until_a_reference_is_resolved(tmp_path):
    inventory = load_text(INVENTORY, str(tmp_path / "hosts.toml"))      # no vault file, no password
    store = SecretStore.open(inventory, password_file=tmp_path / "missing", prompt=False)
    assert store.known() == ()
    with pytest.raises(SecretError) as caught:
        store.resolve("vault:homelab_become_password")
    assert str(caught.value) == (f"{tmp_path / 'secrets.vault'}: vault file does not exist "
                                 "(create it with `vmstation vault edit`)")


def test_the_vault_is_unlocked_once_per_run(inventory, tmp_path):
    store = SecretStore.open(inventory, password_file=tmp_path / "vault-pass")
    store.resolve("vault:homelab_become_password")
    (tmp_path / "vault-pass").unlink()
    (tmp_path / "secrets.vault").unlink()
    assert store.resolve("vault:jellyfin_api_key").reveal() == "0123456789abcdef0123456789abcdef"
    assert sorted(s.reveal() for s in store.known()) == sorted([SUDO, "0123456789abcdef0123456789abcdef"])


def test_unknown_name_names_the_reference_and_the_vault(inventory, tmp_path):
    store = SecretStore.open(inventory, password_file=tmp_path / "vault-pass")
    with pytest.raises(SecretError) as caught:
        store.resolve("vault:homelab_become_pasword")
    assert str(caught.value) == (
        f"{tmp_path / 'secrets.vault'}: no secret named 'homelab_become_pasword' for reference "
        f"'vault:homelab_become_pasword' in {tmp_path / 'hosts.toml'} (did you mean 'homelab_become_password'?)")


def test_wrong_password_names_the_file_and_no_secret(inventory, tmp_path):
    (tmp_path / "vault-pass").write_text("not-the-password")
    store = SecretStore.open(inventory, password_file=tmp_path / "vault-pass")
    with pytest.raises(SecretError) as caught:
        store.resolve("vault:homelab_become_password")
    message = str(caught.value)
    assert message == (f"{tmp_path / 'secrets.vault'}: wrong vault password, or the vault file was modified "
                       "(HMAC check failed)")
    assert "not-the-password" not in message and SUDO not in message


def test_a_literal_is_not_a_reference_and_is_not_echoed(inventory, tmp_path):
    store = SecretStore.open(inventory, password_file=tmp_path / "vault-pass")
    with pytest.raises(SecretError) as caught:
        store.resolve("hunter2")
    assert "hunter2" not in str(caught.value)


def test_reference_without_a_configured_vault(tmp_path):
    text = INVENTORY.replace('vault = "secrets.vault"\n', "").replace(
        'jellyfin_api_key = "vault:jellyfin_api_key"', "").replace(
        'become_password = "vault:homelab_become_password"', "passwordless_sudo = true")
    store = SecretStore.open(load_text(text, "hosts.toml"))
    with pytest.raises(SecretError, match=r"^hosts.toml: 'vault:x' needs a vault file; set vault = "):
        store.resolve("vault:x")


def test_a_plaintext_vault_file_is_refused(inventory, tmp_path):
    (tmp_path / "secrets.vault").write_text("homelab_become_password: in-clear\n")
    store = SecretStore.open(inventory, password_file=tmp_path / "vault-pass")
    with pytest.raises(SecretError, match="not encrypted; a vault file must be") as caught:
        store.resolve("vault:homelab_become_password")
    assert "in-clear" not in str(caught.value)


def test_no_password_source_says_how_to_give_one(inventory):
    with pytest.raises(SecretError) as caught:
        SecretStore.open(inventory, prompt=True).resolve("vault:homelab_become_password")   # stdin: no TTY
    assert str(caught.value).endswith(": no vault password: give a password file (--vault-password-file), "
                                      "set VMSTATION_VAULT_PASSWORD, or run at a terminal")


def test_empty_password_file(tmp_path):
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretError, match=r"vault password file .*empty is empty"):
        read_vault_password(tmp_path / "empty")


def test_prompts_at_a_terminal(inventory, tmp_path):
    """A real pseudo-terminal: the child resolves a reference and types nothing but the prompt's answer."""
    code = textwrap.dedent(f"""
        from vmstation.inventory import load_text
        from vmstation.secrets import SecretStore
        inventory = load_text({INVENTORY!r}, {str(tmp_path / 'hosts.toml')!r})
        print("resolved", SecretStore.open(inventory).resolve("vault:homelab_become_password").reveal() == {SUDO!r})
    """)
    pid, terminal = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-c", code])
    output = _read_until(terminal, b"Vault password for ")
    os.write(terminal, PASSWORD.encode() + b"\n")
    output += _read_to_end(terminal)
    os.waitpid(pid, 0)
    assert b"resolved True" in output
    assert PASSWORD.encode() not in output                 # getpass does not echo


def _read_until(descriptor: int, marker: bytes, timeout: float = 20.0) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(descriptor, 1024)
        except OSError:
            break
    assert marker in seen, seen
    return seen


def _read_to_end(descriptor: int) -> bytes:
    seen = b""
    while True:
        try:
            chunk = os.read(descriptor, 1024)
        except OSError:                  # EIO: the child exited and closed the terminal
            return seen
        if not chunk:
            return seen
        seen += chunk


def test_read_vault_password_for_the_cli(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("  from-file \n")
    assert read_vault_password(tmp_path / "pw").reveal() == "from-file"
    monkeypatch.setenv("VMSTATION_VAULT_PASSWORD", "from-env")
    assert read_vault_password().reveal() == "from-env"
    monkeypatch.delenv("VMSTATION_VAULT_PASSWORD")
    with pytest.raises(SecretError, match="^the vault: no vault password: "):
        read_vault_password(prompt=False)


def test_vault_content_may_be_toml():
    secrets = parse_secrets(b'homelab_become_password = "pw"\n', "v")
    assert secrets["homelab_become_password"].reveal() == "pw"


def test_unquoted_number_is_refused_not_mangled():
    with pytest.raises(SecretError, match=r"^v: secret 'pin' is not a string; quote its value$"):
        parse_secrets(b"pin: 0123\n", "v")           # YAML 1.1 would read 0123 as the integer 83


def test_broken_content_error_quotes_no_content():
    with pytest.raises(SecretError) as caught:
        parse_secrets(b'password: "unterminated-s3cret\n', "v")
    assert "unterminated" not in str(caught.value)
    assert str(caught.value).startswith("v: decrypted content is neither TOML nor YAML name: value pairs")


def test_redact_replaces_every_known_value():
    text = "sudo -S <<< hunter2; key=abc123abc; hunter2 again"
    assert redact(text, [Secret("hunter2"), "abc123abc", Secret("")]) == "sudo -S <<< ***; key=***; *** again"
    assert redact("pw-longer and pw", [Secret("pw"), Secret("pw-longer")]) == "*** and ***"


def test_vault_encrypt_and_view(tmp_path):
    path = tmp_path / "secrets.vault"
    path.write_text("a: b\n")
    path.chmod(0o640)
    vault_encrypt(path, "pw")
    assert vault.is_encrypted(path.read_bytes()) and b"a: b" not in path.read_bytes()
    assert vault_view(path, "pw") == "a: b\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    with pytest.raises(SecretError, match="already encrypted"):
        vault_encrypt(path, "pw")
    assert list(tmp_path.iterdir()) == [path]          # no temporary file left behind


def _editor(tmp_path: Path, body: str) -> str:
    script = tmp_path / "editor.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_vault_edit_reencrypts_and_leaves_no_plaintext(tmp_path):
    path = tmp_path / "secrets.vault"
    path.write_text(vault.encrypt(b"a: b\n", "pw"))
    path.chmod(0o640)
    seen = tmp_path / "seen"
    editor = _editor(tmp_path, f'stat -c "%a %n" "$1" "$(dirname "$1")" > {seen}\n'
                               'echo "c: d" >> "$1"\ntouch "$1.swp"\n')
    assert vault_edit(path, Secret("pw"), editor) is True
    assert vault_view(path, "pw") == "a: b\nc: d\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    (file_mode, plain), (dir_mode, private) = (line.split(" ", 1) for line in seen.read_text().splitlines())
    assert (file_mode, dir_mode) == ("600", "700")
    assert not Path(plain).exists() and not Path(private).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["editor.sh", "secrets.vault", "seen"]


def test_vault_edit_without_change_keeps_the_file(tmp_path):
    path = tmp_path / "secrets.vault"
    path.write_text(vault.encrypt(b"a: b\n", "pw"))
    before = path.read_bytes()
    assert vault_edit(path, "pw", "true") is False
    assert path.read_bytes() == before


def test_vault_edit_creates_a_missing_vault(tmp_path):
    path = tmp_path / "new.vault"
    assert vault_edit(path, "pw", _editor(tmp_path, 'echo "x: y" > "$1"\n')) is True
    assert vault_view(path, "pw") == "x: y\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_failed_editor_leaves_the_vault_unchanged(tmp_path):
    path = tmp_path / "secrets.vault"
    path.write_text(vault.encrypt(b"a: b\n", "pw"))
    before = path.read_bytes()
    with pytest.raises(SecretError, match=r"^editor exited with status 3; .*secrets.vault is unchanged$"):
        vault_edit(path, "pw", _editor(tmp_path, 'echo "c: d" >> "$1"\nexit 3\n'))
    assert path.read_bytes() == before


def test_missing_editor(tmp_path):
    path = tmp_path / "secrets.vault"
    path.write_text(vault.encrypt(b"a: b\n", "pw"))
    with pytest.raises(SecretError, match="editor 'no-such-editor-xyz' not found"):
        vault_edit(path, "pw", "no-such-editor-xyz --wait")


def test_vault_view_wrong_password_names_the_file(tmp_path):
    path = tmp_path / "secrets.vault"
    path.write_text(vault.encrypt(b"a: b\n", "pw"))
    with pytest.raises(SecretError, match=r"secrets.vault: wrong vault password"):
        vault_view(path, "nope")
