"""The air-gapped path of deploy-debian, with the real artifacts this machine can have.

Upstream's CNI plugin tarball cannot be downloaded here, so the test builds one
from Debian's own CNI plugin binaries (taken from a box that installed
containernetworking-plugins) in the upstream layout, with a SHA256SUMS file.
A tarball whose checksum does not match is refused before anything is uploaded
(exit 2); the right one is uploaded, checked and unpacked into /opt/cni/bin, and a
second run changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from vmstation import versions
from vmstation.inventory import load
from vmstation.transport import SshOptions, connect

TARBALL = f"cni-plugins-linux-amd64-{versions.CNI_PLUGINS}.tgz"
WORKER = "storagenodet3500"


@pytest.fixture(scope="module")
def airgap(boxes, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("airgap")
    artifacts = workdir / "artifacts"
    (artifacts / "cni").mkdir(parents=True)
    path = boxes.write_inventory(
        workdir / "hosts.toml", host_extra={"masternode": {"always_on": True}, WORKER: {"media_path": "/srv/media"}},
        cluster_extra={"debian": {"artifacts_dir": str(artifacts)}})
    inventory = load(path)
    plugins = _debian_cni_plugins(inventory)
    (artifacts / "cni" / TARBALL).write_bytes(_tarball(plugins))
    return path, artifacts / "cni", plugins


def test_a_tarball_that_does_not_match_its_checksum_is_refused_before_upload(airgap):
    path, cni_dir, _ = airgap
    (cni_dir / "SHA256SUMS").write_text(f"{'0' * 64}  {TARBALL}\n")
    run = _vmstation(path, "--only", "debian.cni-plugins", "--limit", WORKER)
    assert run.returncode == 2, run.stdout + run.stderr
    assert f"{cni_dir / TARBALL}: sha256 does not match the checksum file" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert _on(load(path), WORKER, f"test -e /var/lib/vmstation/artifacts/{TARBALL}; echo $?") == "1\n"


def test_the_checked_tarball_is_unpacked_into_opt_cni_bin_and_a_second_run_changes_nothing(airgap):
    path, cni_dir, plugins = airgap
    (cni_dir / "SHA256SUMS").write_text(f"{hashlib.sha256((cni_dir / TARBALL).read_bytes()).hexdigest()}  {TARBALL}\n")
    inventory = load(path)
    _on(inventory, WORKER, "rm -rf /opt/cni/bin")
    first = _vmstation(path, "--only", "debian.cni-plugins", "--limit", WORKER, "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["changed"] >= 2
    bridge = _on(inventory, WORKER, "test -L /opt/cni/bin/bridge || sha256sum /opt/cni/bin/bridge").split()[0]
    assert bridge == hashlib.sha256(plugins["bridge"]).hexdigest()
    second = _vmstation(path, "--only", "debian.cni-plugins", "--limit", WORKER, "--json")
    assert second.returncode == 0 and json.loads(second.stdout)["changed"] == 0, second.stdout


def _debian_cni_plugins(inventory) -> dict[str, bytes]:
    """Debian's reference CNI plugins, installed on the masternode box and read back over SFTP."""
    host = inventory.host("masternode")
    connection = connect(host, SshOptions(known_hosts=inventory.known_hosts))
    try:
        connection.run("dpkg -s containernetworking-plugins >/dev/null 2>&1 || "
                       "DEBIAN_FRONTEND=noninteractive apt-get install -y -q containernetworking-plugins >/dev/null\n")
        sftp = connection.sftp()
        plugins = {}
        for name in ("bridge", "host-local", "loopback", "portmap"):
            with sftp.open(f"/usr/lib/cni/{name}", "rb") as handle:
                plugins[name] = handle.read()
        return plugins
    finally:
        connection.close()


def _tarball(plugins: dict[str, bytes]) -> bytes:
    """Upstream's layout: the plugins at the top of the archive, executable."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in sorted(plugins.items()):
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _vmstation(inventory: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "vmstation.cli", "deploy-debian", *args, "--inventory", str(inventory)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=dict(os.environ))


def _on(inventory, name: str, script: str) -> str:
    connection = connect(inventory.host(name), SshOptions(known_hosts=inventory.known_hosts))
    try:
        return connection.run(script + "\n", check=False).stdout
    finally:
        connection.close()
