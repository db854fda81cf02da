"""Bad input at every entry point: one line, exit 2, never a traceback or a hang; secrets resolved up front.

Each command runs as the installed console script in a fresh process with a time limit. No test here
reaches any host: the inventories name addresses of an unused test subnet (10.77.250.0/24), and
VMSTATION_ALLOWED_NETWORKS allows only loopback, so an attempt to connect would be a ConnectError
(exit 1) naming the guard, never exit 2 with the message asserted.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_cli import VMSTATION
from vmstation.secrets import vault_encrypt

GUARD = {"VMSTATION_ALLOWED_NETWORKS": "127.0.0.0/8"}
VAULT_PASSWORD = "entry-points-vault-password"

INVENTORY = """\
known_hosts = "{known_hosts}"
vault = "secrets.vault"

[power]
jellyfin_url = "http://10.77.250.3:30096"
jellyfin_api_key = "vault:{key_name}"

[clusters.debian]
kind = "kubeadm"

[hosts.masternode]
address = "10.77.250.2"
cluster = "debian"
roles = ["control-plane"]
always_on = true

[hosts.storagenodet3500]
address = "10.77.250.3"
cluster = "debian"
roles = ["worker", "jellyfin"]
mac = "00:e0:4c:68:cb:bf"
media_path = "/srv/media"
"""


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60,
            stdin: bytes = b"") -> subprocess.CompletedProcess:
    if not VMSTATION.exists():
        pytest.skip(f"{VMSTATION} is not installed (pip install -e .)")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VMSTATION_")}
    environment.update({**GUARD, **(env or {})})
    return subprocess.run([str(VMSTATION), *args], cwd=cwd, env=environment, capture_output=True, timeout=timeout,
                          input=stdin)


def assert_one_line(result: subprocess.CompletedProcess, *parts: str) -> str:
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for part in parts:
        assert part in err, err
    return err


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """An inventory and a vault holding the Jellyfin key only (every host logs in as root: no sudo password)."""
    (tmp_path / "secrets.vault").write_text('jellyfin_api_key: "0123456789abcdef0123456789abcdef"\n')
    vault_encrypt(tmp_path / "secrets.vault", VAULT_PASSWORD)
    (tmp_path / "pw").write_text(VAULT_PASSWORD + "\n")
    write_inventory(tmp_path, "jellyfin_api_key")
    return tmp_path


def write_inventory(directory: Path, key_name: str) -> Path:
    path = directory / "hosts.toml"
    path.write_text(INVENTORY.format(known_hosts=directory / "known_hosts", key_name=key_name))
    return path


# --- item 7: every secret the run reads, before any host -----------------------------------------


def test_a_missing_jellyfin_key_stops_the_deploy_before_any_host(lab):
    write_inventory(lab, "jellyfin_key_typo")
    result = run_cli("deploy-debian", "--vault-password-file", "pw", cwd=lab)
    assert_one_line(result, "no secret named 'jellyfin_key_typo'", "did you mean 'jellyfin_api_key'?")
    assert not (lab / ".vmstation").exists()              # no journal: the run never started


def test_a_plan_also_resolves_the_secrets_its_phases_declare_before_any_host(lab):
    write_inventory(lab, "jellyfin_key_typo")
    result = run_cli("deploy-debian", "--plan", "--vault-password-file", "pw", cwd=lab)
    assert_one_line(result, "no secret named 'jellyfin_key_typo'")
    assert not (lab / ".vmstation").exists()


def test_a_wrong_vault_password_stops_the_deploy_before_any_host(lab):
    (lab / "pw").write_text("not the password\n")
    result = run_cli("deploy-debian", "--vault-password-file", "pw", cwd=lab)
    assert_one_line(result, "wrong vault password")
    assert not (lab / ".vmstation").exists()


def test_with_the_secret_there_the_run_goes_on_to_the_hosts(lab):
    """The counter-check: with a good vault the same command gets past the preflight to the guard."""
    result = run_cli("deploy-debian", "--vault-password-file", "pw", "--limit", "masternode", cwd=lab)
    assert result.returncode == 1, result.stderr
    assert b"outside VMSTATION_ALLOWED_NETWORKS" in result.stdout + result.stderr


# --- item 10: files that are not files, nesting, bytes, output paths ------------------------------


def test_an_inventory_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "hosts.toml")
    result = run_cli("inventory", "check", "-i", "hosts.toml", cwd=tmp_path, timeout=20)
    assert_one_line(result, "hosts.toml", "not a regular file")


def test_a_vault_password_file_that_is_a_fifo_is_refused(lab):
    os.mkfifo(lab / "pipe")
    result = run_cli("vault", "view", "secrets.vault", "--vault-password-file", "pipe", cwd=lab, timeout=20)
    assert_one_line(result, "pipe", "not a regular file")


def test_deep_nesting_in_the_inventory_is_one_line(tmp_path):
    (tmp_path / "hosts.toml").write_text("x = " + "[" * 2000 + "]" * 2000 + "\n")
    assert_one_line(run_cli("inventory", "check", cwd=tmp_path), "hosts.toml", "nested too deeply")


def test_deep_nesting_in_vault_plaintext_is_one_line(tmp_path):
    (tmp_path / "v").write_text("a: " + "[" * 2000 + "]" * 2000 + "\n")
    vault_encrypt(tmp_path / "v", VAULT_PASSWORD)
    write_inventory(tmp_path, "jellyfin_api_key").write_text(
        (tmp_path / "hosts.toml").read_text().replace('vault = "secrets.vault"', 'vault = "v"'))
    (tmp_path / "pw").write_text(VAULT_PASSWORD)
    result = run_cli("deploy-debian", "--vault-password-file", "pw", cwd=tmp_path)
    assert_one_line(result, "nested too deeply")


def test_a_password_file_with_a_non_utf8_byte_opens_a_vault_made_with_those_bytes(tmp_path):
    password = b"caf\xe9-latin1"
    (tmp_path / "pw").write_bytes(password + b"\n")
    (tmp_path / "v").write_text('k: "value"\n')
    vault_encrypt(tmp_path / "v", password)                  # bytes, as ansible-vault uses them
    result = run_cli("vault", "view", "v", "--vault-password-file", "pw", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'k: "value"\n'
    (tmp_path / "pw").write_bytes(b"\xff\xfe wrong")
    assert_one_line(run_cli("vault", "view", "v", "--vault-password-file", "pw", cwd=tmp_path),
                    "wrong vault password")


def test_render_out_naming_a_file_is_one_line(lab):
    (lab / "rendered").write_text("not a directory\n")
    result = run_cli("render", "deploy-debian", "--out", "rendered", cwd=lab)
    assert_one_line(result, "rendered", "not a directory")
    assert (lab / "rendered").read_text() == "not a directory\n"


def test_a_glued_known_hosts_line_is_one_line_naming_file_and_line(lab):
    (lab / "known_hosts").write_text(
        "10.77.250.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        "10.77.250.3 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    result = run_cli("deploy-debian", "--vault-password-file", "pw", cwd=lab)
    assert_one_line(result, f"{lab / 'known_hosts'}: line 1: malformed known_hosts entry")


def test_a_malformed_allowed_networks_is_one_line(lab):
    result = run_cli("deploy-debian", "--plan", cwd=lab, env={"VMSTATION_ALLOWED_NETWORKS": "10.77.0.0/16,x"})
    assert_one_line(result, "VMSTATION_ALLOWED_NETWORKS", "'x' is not a network")


# --- item 8: no child process inherits the vault password ----------------------------------------


def test_the_editor_of_vault_edit_does_not_inherit_the_password(tmp_path):
    (tmp_path / "v").write_text('k: "value"\n')
    vault_encrypt(tmp_path / "v", VAULT_PASSWORD)
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nenv > "$(dirname "$0")/editor-env"\necho "k2: \\"v2\\"" >> "$1"\n')
    editor.chmod(0o755)
    result = run_cli("vault", "edit", "v", cwd=tmp_path,
                     env={"VMSTATION_VAULT_PASSWORD": VAULT_PASSWORD, "EDITOR": str(editor)})
    assert result.returncode == 0, result.stderr
    seen = (tmp_path / "editor-env").read_text()
    assert "EDITOR=" in seen and VAULT_PASSWORD not in seen
    view = run_cli("vault", "view", "v", cwd=tmp_path, env={"VMSTATION_VAULT_PASSWORD": VAULT_PASSWORD})
    assert b'k2: "v2"' in view.stdout


def test_a_known_hosts_or_ssh_key_that_is_a_fifo_is_refused_not_waited_on(lab):
    os.mkfifo(lab / "known_hosts")
    result = run_cli("deploy-debian", "--vault-password-file", "pw", cwd=lab, timeout=20)
    assert_one_line(result, "known_hosts", "not a regular file")
    (lab / "known_hosts").unlink()
    os.mkfifo(lab / "key")
    (lab / "hosts.toml").write_text((lab / "hosts.toml").read_text().replace(
        'always_on = true', f'always_on = true\nssh_key = "{lab / "key"}"'))
    result = run_cli("deploy-debian", "--vault-password-file", "pw", cwd=lab, timeout=20)
    assert_one_line(result, "host 'masternode'", "key 'ssh_key'", "not a regular file")
