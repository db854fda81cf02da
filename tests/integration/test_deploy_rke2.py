"""deploy-rke2 on the box playing `homelab`, through the real CLI, as a non-root user whose sudo asks a password.

The password comes from a real Ansible Vault file. What runs for real here: the
generic system prep of a Debian host (modules file, sysctl file and the keys this box
lets us set, the NetworkManager conf), config.yaml placed 0600, and the artifact fetch
(a kubeconfig put where rke2-server would write it, fetched 0600 with the host's
address). RKE2 cannot be had on this machine: the inventory points at an empty
artifacts directory, so rke2.install stops with Unsupported and start/monitoring are
blocked. The sudo password must appear nowhere: not in any process's argv while the
run goes, not in the box's journal, not in anything the run prints or writes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vmstation import vault, verify, versions
from vmstation.inventory import load
from vmstation.testing.argv_watch import ArgvWatch
from vmstation.testing.ssh_client import connect_checked, run
from vmstation.transport import SshOptions, connect

VMSTATION = [sys.executable, "-m", "vmstation.cli"]
KUBECONFIG = Path(__file__).parent.parent / "unit" / "data" / "rke2_kubeconfig.yaml"
RAN_HERE = {"rke2.system-prep", "rke2.configure", "rke2.artifacts"}
BLOCKED = {"rke2.start", "rke2.monitoring", "rke2.nodes-ready"}


@pytest.fixture(scope="module")
def deployment(boxes, tmp_path_factory):
    """The inventory, vault and empty artifacts directory, and the box with a kubeconfig where RKE2 puts it."""
    workdir = tmp_path_factory.mktemp("deploy-rke2")
    (workdir / "rke2-release").mkdir()
    password_file = workdir / "vault-password"
    password_file.write_text(secrets.token_urlsafe(16) + "\n")
    password_file.chmod(0o600)
    (workdir / "secrets.vault").write_text(vault.encrypt(
        f"homelab_become_password: {json.dumps(boxes.sudo_password)}\n".encode(), password_file.read_text().strip()))
    path = boxes.write_inventory(
        workdir / "hosts.toml", clusters={"homelab": "rke2", "masternode": "debian", "storagenodet3500": "debian"},
        host_extra={"homelab": {"ssh_user": boxes.sudo_user, "become_password": "vault:homelab_become_password"}},
        cluster_extra={"rke2": {"artifacts_dir": str(workdir / "rke2-release")}}, vault=workdir / "secrets.vault")
    box = boxes["homelab"]
    root = connect_checked(box.address, boxes.known_hosts, boxes.client_key)
    try:
        status, text = run(root, "install -d -m 0755 /etc/rancher/rke2 && cat > /etc/rancher/rke2/rke2.yaml && "
                                 "chmod 0600 /etc/rancher/rke2/rke2.yaml", stdin=KUBECONFIG.read_text())
    finally:
        root.close()
    assert status == 0, text
    return {"inventory": path, "password_file": password_file, "workdir": workdir, "box": box, "boxes": boxes}


def deploy(deployment, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VMSTATION_STATE_DIR": str(deployment["workdir"] / "state")}
    env.pop("VMSTATION_VAULT_PASSWORD", None)
    with ArgvWatch() as watch:
        completed = subprocess.run([*VMSTATION, "deploy-rke2", "--json", "--limit", "homelab", *args,
                                    "--inventory", str(deployment["inventory"]),
                                    "--vault-password-file", str(deployment["password_file"])],
                                   check=False, capture_output=True, text=True, timeout=600, env=env)
    deployment.setdefault("argv_seen", []).extend(watch.seen)
    deployment.setdefault("outputs", []).extend([completed.stdout, completed.stderr])
    return completed


def outcomes(completed: subprocess.CompletedProcess) -> dict[str, dict]:
    return {o["phase"]: o for o in json.loads(completed.stdout)["outcomes"] if o["host"] == "homelab"}


def test_first_run_preps_configures_and_fetches_then_stops_at_the_install(deployment):
    first = deploy(deployment)
    assert first.returncode == 3, first.stderr
    results = outcomes(first)
    for phase in RAN_HERE:
        assert results[phase]["status"] == "changed", (phase, results[phase])
    for phase in BLOCKED:
        assert results[phase]["status"] == "blocked", (phase, results[phase])
    install = results["rke2.install"]
    assert install["status"] == "unsupported"
    release = str(deployment["workdir"] / "rke2-release")
    assert install["message"] == (f"RKE2 {versions.RKE2} air-gapped: install.sh, rke2.linux-amd64.tar.gz, "
                                  f"rke2-images.linux-amd64.tar.zst, sha256sum-amd64.txt missing in artifacts_dir "
                                  f"{release} (get them from the RKE2 release page and get.rke2.io)")
    prep = {s["label"]: s for s in results["rke2.system-prep"]["steps"]}
    assert any(s["status"] == "warn" and "not RHEL-family" in s["reason"] for s in prep.values())
    assert prep[f"wake-on-lan magic on {deployment['box'].mac}"]["status"] == "skip"


def test_second_run_changes_nothing(deployment):
    second = deploy(deployment)
    assert second.returncode == 3, second.stderr
    data = json.loads(second.stdout)
    assert data["changed"] == 0, [(o["phase"], [s for s in o["steps"] if s["status"] == "change"])
                                  for o in data["outcomes"] if o["changed"]]


def test_the_host_holds_what_the_run_reported(deployment):
    inventory = load(deployment["inventory"])
    host = inventory.host("homelab")
    password = _become_password(deployment)
    connection = connect(host, SshOptions(known_hosts=inventory.known_hosts), password)
    try:
        results = verify.run_checks(connection, verify.checks_for(host, inventory.cluster("rke2"), RAN_HERE))
        th = verify.host_for_testinfra(connection)
        config = th.file("/etc/rancher/rke2/config.yaml")
        assert (config.mode, config.user, config.group) == (0o600, "root", "root")
        assert yaml.safe_load(config.content_string)["node-name"] == "homelab"
        assert "selinux" not in yaml.safe_load(config.content_string)      # a Debian host: no SELinux
        assert th.file("/etc/NetworkManager/conf.d/rke2-canal.conf").contains("interface-name:flannel")
        assert th.file("/etc/sysctl.d/90-rke2.conf").mode == 0o644
        assert th.sysctl("net.ipv4.ip_forward") == 1
        assert th.file("/etc/modules-load.d/rke2.conf").content_string.splitlines()[-2:] == ["overlay", "br_netfilter"]
    finally:
        connection.close()
    assert results and not [r for r in results if not r.passed], results


def test_the_kubeconfig_is_fetched_0600_pointing_at_the_host(deployment):
    local = deployment["inventory"].parent / ".vmstation" / "artifacts" / "homelab"
    kubeconfig = local / "rke2.yaml"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    assert server == f"https://{deployment['box'].address}:6443"
    config = local / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and "node-name: \"homelab\"" in config.read_text()
    journal = local / "rke2-server.journal"
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600 and journal.read_text().strip()


def test_the_sudo_password_appears_nowhere(deployment, open_ssh):
    password = deployment["boxes"].sudo_password
    assert deployment["argv_seen"], "the argv watch saw no process"
    assert not [argv for argv in deployment["argv_seen"] if password in argv]
    assert not [text for text in deployment["outputs"] if password in text]
    written = [p for p in deployment["workdir"].rglob("*") if p.is_file()]
    assert not [p for p in written if password.encode() in p.read_bytes()]
    box = deployment["box"]
    root = open_ssh(box.address, deployment["boxes"].known_hosts, deployment["boxes"].client_key)
    status, journal = run(root, "journalctl --no-pager -o verbose")
    assert status == 0 and "sudo" in journal      # the journal did record the sudo sessions
    assert password not in journal


def test_reset_removes_the_rke2_config_and_a_second_reset_changes_nothing(deployment):
    def reset() -> subprocess.CompletedProcess:
        env = {**os.environ, "VMSTATION_STATE_DIR": str(deployment["workdir"] / "state")}
        return subprocess.run([*VMSTATION, "reset", "--yes", "--limit", "homelab", "--inventory",
                               str(deployment["inventory"]), "--vault-password-file", str(deployment["password_file"])],
                              check=False, capture_output=True, text=True, timeout=300, env=env)
    first = reset()
    assert first.returncode == 0, first.stdout + first.stderr
    assert re.search(r"^reset\.rke2\s+homelab\s+changed\s+1\s", first.stdout, re.MULTILINE), first.stdout
    assert _run_as_root(deployment, "test -e /etc/rancher/rke2; echo $?") == "1\n"
    second = reset()
    assert second.returncode == 0 and "\n0 changed, 0 failed" in second.stdout, second.stdout
    assert deployment["boxes"].sudo_password not in first.stdout + first.stderr + second.stdout + second.stderr


def _run_as_root(deployment, script: str) -> str:
    boxes, box = deployment["boxes"], deployment["box"]
    client = connect_checked(box.address, boxes.known_hosts, boxes.client_key)
    try:
        return run(client, script)[1]
    finally:
        client.close()


def _become_password(deployment):
    from vmstation.secrets import SecretStore

    store = SecretStore.open(load(deployment["inventory"]), password_file=deployment["password_file"])
    return store.resolve("vault:homelab_become_password")
