"""The `vmstation` command as a user runs it (the installed console script, in a fresh process).

Start-up stays light (no SSH library for --help) and bad input is one line on
stderr with exit code 2, never a traceback. No test here reaches any host: the
inventories name addresses of the test subnet and every command stops before
connecting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

VMSTATION = Path(sys.executable).with_name("vmstation")
HEAVY_MODULES = ("paramiko", "fabric", "invoke", "jinja2", "rich", "cryptography", "tenacity", "scapy")

GOOD_INVENTORY = """\
known_hosts = "{known_hosts}"

[clusters.debian]
kind = "kubeadm"

[hosts.masternode]
address = "10.77.5.2"
cluster = "debian"
roles = ["control-plane"]

[hosts.storagenodet3500]
address = "10.77.5.3"
cluster = "debian"
roles = ["worker"]
mac = "00:e0:4c:68:cb:bf"
"""


def vmstation(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    if not VMSTATION.exists():
        pytest.skip(f"{VMSTATION} is not installed (pip install -e .)")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VMSTATION_")}
    environment.update(env or {})
    return subprocess.run([str(VMSTATION), *args], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=60)


def imported_modules(stderr: str) -> set[str]:
    """Top-level module names from PYTHONPROFILEIMPORTTIME's report ("import time: ... | pkg.mod")."""
    names = set()
    for row in stderr.splitlines():
        if row.startswith("import time:") and "|" in row:
            names.add(row.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.fixture
def good_inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.toml"
    path.write_text(GOOD_INVENTORY.format(known_hosts=tmp_path / "known_hosts"))
    return path


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vmstation: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("args", [["--help"], ["deploy-debian", "--help"], ["inventory", "--help"]])
def test_help_loads_no_ssh_templating_or_terminal_library(tmp_path, args):
    result = vmstation(*args, cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    assert "Usage: vmstation" in result.stdout
    imported = imported_modules(result.stderr)
    assert "click" in imported  # the report is there, so an absent name was really not imported
    assert not imported & set(HEAVY_MODULES)


def test_help_lists_the_commands(tmp_path):
    result = vmstation("--help", cwd=tmp_path)
    for command in ("deploy-debian", "deploy-rke2", "plan", "render", "wake", "sleep", "reset", "inventory"):
        assert f"  {command} " in result.stdout


def test_a_broken_inventory_rule_is_one_line_and_exit_2(tmp_path, good_inventory):
    good_inventory.write_text(good_inventory.read_text().replace(
        '"00:e0:4c:68:cb:bf"', '"00:e0:4c:68:cb:bf brd ff:ff:ff:ff:ff:ff"'))
    for args in (["inventory", "check"], ["deploy-debian", "--plan"], ["plan", "deploy-rke2"]):
        result = vmstation(*args, "-i", str(good_inventory), cwd=tmp_path)
        assert_one_line_error(result, str(good_inventory), "host 'storagenodet3500'", "key 'mac'",
                              "pasted from `ip link`")
        assert result.stdout == ""


def test_a_toml_syntax_error_names_line_and_column(tmp_path, good_inventory):
    good_inventory.write_text(good_inventory.read_text() + "\n[hosts.broken\n")
    result = vmstation("inventory", "check", "-i", str(good_inventory), cwd=tmp_path)
    assert_one_line_error(result, str(good_inventory), "line ", "column ")


def test_a_missing_inventory_is_exit_2(tmp_path):
    result = vmstation("deploy-debian", "--plan", cwd=tmp_path, env={"VMSTATION_INVENTORY": "nowhere.toml"})
    assert_one_line_error(result, "nowhere.toml", "file not found")


def test_limit_naming_an_unknown_host_is_exit_2_before_any_connection(tmp_path, good_inventory):
    started = time.monotonic()
    result = vmstation("deploy-debian", "-i", str(good_inventory), "--limit", "masternode", "--limit", "storagenode",
                       cwd=tmp_path)
    assert_one_line_error(result, "--limit names unknown host 'storagenode'", "known: masternode, storagenodet3500")
    assert time.monotonic() - started < 20
    assert not (tmp_path / ".vmstation").exists()  # no run was started, so no journal either


@pytest.mark.parametrize(("args", "fragment"), [
    (["--only", "debian.flannel", "--from", "debian.apps"], "--only and --from cannot be used together"),
    (["--plan", "--resume"], "--plan and --resume cannot be used together"),
    (["--forks", "0"], "--forks must be at least 1 (got 0)"),
])
def test_options_that_conflict_are_one_line_and_exit_2_before_anything_runs(tmp_path, good_inventory, args,
                                                                             fragment):
    result = vmstation("deploy-debian", "-i", str(good_inventory), *args, cwd=tmp_path)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / ".vmstation").exists()


def test_a_good_inventory_checks_ok(tmp_path, good_inventory):
    result = vmstation("inventory", "check", "-i", str(good_inventory), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{good_inventory}: ok (2 hosts, 1 clusters)"


def test_version(tmp_path):
    from vmstation import __version__

    result = vmstation("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"vmstation, version {__version__}"
