"""Bad cluster choices stop `vmstation deploy-*` with exit 2 and one line, before any host is touched.

The inventories name addresses of the test subnet where nothing answers: a run that got past preflight
would try to connect and fail differently (exit 1), so exit 2 with the one line proves it stopped first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VMSTATION = Path(sys.executable).with_name("vmstation")

RKE2 = """\
known_hosts = "{known_hosts}"

[clusters.rke2]
kind = "rke2"
version = "{version}"
{extra}

[hosts.homelab]
address = "10.77.5.12"
cluster = "rke2"
roles = ["server"]
os_family = "rhel"
"""

DEBIAN = """\
known_hosts = "{known_hosts}"

[clusters.debian]
kind = "kubeadm"
containerd_source = "debian"
{extra}

[hosts.masternode]
address = "10.77.5.13"
cluster = "debian"
roles = ["control-plane"]
"""


def deploy(target: str, text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    if not VMSTATION.exists():
        pytest.skip(f"{VMSTATION} is not installed (pip install -e .)")
    inventory = tmp_path / "hosts.toml"
    inventory.write_text(text.format(known_hosts=tmp_path / "known_hosts", version="v1.29.15+rke2r1", extra=""))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMSTATION_")}
    env.update(VMSTATION_ALLOWED_NETWORKS="127.0.0.0/8,10.77.0.0/16", VMSTATION_STATE_DIR=str(tmp_path / "state"))
    return subprocess.run([str(VMSTATION), target, "--inventory", str(inventory)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_rke2_without_an_el10_policy_stops_before_any_host(tmp_path):
    result = deploy("deploy-rke2", RKE2, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"vmstation: {tmp_path / 'hosts.toml'}: key 'clusters.rke2.version': RKE2 v1.29.15+rke2r1 "
                           "publishes no RPMs and no SELinux policy (rke2-selinux) for RHEL 10")
    assert "selinux = false" in line


def test_debian12_containerd_below_the_floor_stops_before_any_host(tmp_path):
    result = deploy("deploy-debian", DEBIAN, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().endswith("or accept it with accept_old_containerd = true")
    assert "key 'clusters.debian.containerd_source'" in result.stderr and "\n" not in result.stderr.strip()
