"""vmstation installed the way users install it: a wheel in a fresh virtualenv, run from a directory outside
the clone (issue 12 item 1). CI runs this with the rest of the suite.

The wheel carries the templates (package data read with importlib.resources) and every run-time dependency,
and not the test harness. From a fresh directory: --version, `init`, `inventory check`, `render` of both
targets, `fab --list` from the fabfile init wrote, and a plan against real sshd hosts (prefix vmsop,
10.77.57.0/24).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from this clone, outside it: the templates in, the test harness out."""
    base = tmp_path_factory.mktemp("wheel")
    assert REPO not in base.parents
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(REPO)], cwd=base)
    built = next((base / "dist").glob("vmstation-*.whl"))
    names = zipfile.ZipFile(built).namelist()
    assert "vmstation/template_files/system/modules-kubernetes.conf.j2" in names
    assert not [n for n in names if n.startswith("vmstation/testing/")]
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed with its dependencies into a virtualenv of its own."""
    base = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(base / "venv")], cwd=base)
    run([str(base / "venv" / "bin" / "pip"), "install", "-q", str(wheel)], cwd=base, timeout=900)
    return base / "venv" / "bin"


def run(argv, cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("VMSTATION_", "PYTHON"))}
    environment.update(env or {})
    result = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env=environment)
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def test_the_installed_wheel_works_from_any_directory(installed, tmp_path):
    from vmstation import __version__

    assert run([installed / "vmstation", "--version"], cwd=tmp_path).stdout.strip().endswith(__version__)
    run([installed / "vmstation", "init", "lab"], cwd=tmp_path)
    lab = tmp_path / "lab"
    assert run([installed / "vmstation", "inventory", "check"], cwd=lab).stdout.startswith("hosts.toml: ok (3 hosts")
    for target in ("deploy-debian", "deploy-rke2"):
        out = run([installed / "vmstation", "render", target, "--out", f"rendered-{target}"], cwd=lab)
        assert "files written" in out.stdout
    assert (lab / "rendered-deploy-debian" / "masternode" / "etc" / "modules-load.d").is_dir()
    assert (lab / "rendered-deploy-rke2" / "homelab" / "etc" / "rancher" / "rke2" / "config.yaml").is_file()
    listed = run([installed / "fab", "--list"], cwd=lab).stdout
    assert "deploy-debian" in listed and "inventory.check" in listed
    harness = subprocess.run([installed / "python", "-c", "import vmstation.testing"], capture_output=True, cwd=lab)
    assert harness.returncode != 0         # the root-only test harness is not part of the product


def test_the_installed_wheel_plans_against_real_hosts(installed, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("sshd hosts need root: network namespaces, a bridge and sshd")
    from vmstation.testing.sshd_hosts import SshdHostSet

    with SshdHostSet(count=2, prefix="vmsop", subnet="10.77.57.0/24", bridge="vmsop0") as hosts:
        inventory = hosts.write_inventory(tmp_path / "hosts.toml")
        result = run([installed / "vmstation", "deploy-debian", "--plan", "--only", "debian.system-prep"],
                     cwd=tmp_path, env={"VMSTATION_ALLOWED_NETWORKS": "127.0.0.0/8,10.77.57.0/24"})
    assert result.stderr.splitlines()[0] == "vmstation deploy-debian (plan): inventory hosts.toml"
    assert f"== debian.system-prep @ {hosts[0].name}: " in result.stdout
    assert result.stdout.splitlines()[-2].startswith("0 changed, 0 failed")
    assert inventory.exists()


def test_pipx_installs_both_vmstation_and_fab(wheel, tmp_path):
    """pipx exposes only the installed package's own commands: `fab` must be one of vmstation's, not only
    Fabric's, or `fab deploy-debian` is not there after the README's `pipx install`."""
    homes = {"PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin"),
             "PIPX_MAN_DIR": str(tmp_path / "man")}
    run([sys.executable, "-m", "pipx", "install", str(wheel)], cwd=tmp_path, env=homes, timeout=900)
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["fab", "vmstation"]
    run([tmp_path / "bin" / "vmstation", "init", "lab"], cwd=tmp_path)
    listed = run([tmp_path / "bin" / "fab", "--list"], cwd=tmp_path / "lab").stdout
    assert "deploy-debian" in listed and "wake" in listed
