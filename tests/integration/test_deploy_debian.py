"""deploy-debian on the boxes, through the real CLI, as far as this machine allows.

What runs for real here: system prep, containerd from Debian with the rendered
config (running), the CNI plugins, the kubeadm config, Jellyfin's directories.
kubeadm/kubelet/kubectl cannot be had on this machine, so the box inventory points
at an artifacts directory without them: the run must stop at debian.kube-binaries
saying so (exit 3), with the phases that need it blocked, never reported as done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmstation.inventory import load
from vmstation.transport import SshOptions, connect
from vmstation.verify import checks_for, run_checks

VMSTATION = [sys.executable, "-m", "vmstation.cli"]
RAN_HERE = {"debian.system-prep", "debian.containerd", "debian.containerd-config", "debian.cni-plugins",
            "debian.kubeadm-config", "debian.jellyfin-storage", "power.tools", "debian.power"}
BLOCKED = {"debian.control-plane-init", "debian.worker-join", "debian.flannel", "debian.nodes-ready",
           "debian.apps", "debian.kubeconfig"}


@pytest.fixture(scope="module")
def box_inventory(boxes, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("deploy-debian")
    (workdir / "artifacts" / "kubernetes").mkdir(parents=True)
    path = boxes.write_inventory(
        workdir / "hosts.toml",
        host_extra={"masternode": {"always_on": True},
                    "storagenodet3500": {"media_path": "/srv/media"}},
        cluster_extra={"debian": {"artifacts_dir": str(workdir / "artifacts")}})
    inventory = load(path)
    _run_on(inventory, "storagenodet3500", "mkdir -p /srv/media")
    return path


def vmstation(*args: str, inventory: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VMSTATION_VAULT_PASSWORD": ""}
    return subprocess.run([*VMSTATION, *args, "--inventory", str(inventory)], capture_output=True, text=True,
                          timeout=900, env=env)


def outcomes(completed: subprocess.CompletedProcess) -> dict[tuple[str, str], dict]:
    data = json.loads(completed.stdout)
    return {(o["phase"], o["host"]): o for o in data["outcomes"]}


def test_plan_shows_every_phase_and_changes_nothing(box_inventory):
    plan = vmstation("deploy-debian", "--plan", "--diff", inventory=box_inventory)   # --diff: full even when long
    assert plan.returncode in (0, 3), plan.stderr
    for expected in ("kubeadm init --config /etc/kubernetes/kubeadm-init.yaml", "kubeadm join --config",
                     "apply --server-side", "wait for 2 nodes Ready", "cannot run here: Kubernetes 1.29.15 binaries",
                     "+++ b/etc/containerd/config.toml", "SystemdCgroup = true", "apt containerd"):
        assert expected in plan.stdout, expected
    assert "(secret content of /etc/kubernetes/kubeadm-join.yaml not shown)" in plan.stdout
    assert _run_on(load(box_inventory), "masternode", "test -e /etc/containerd/config.toml; echo $?").strip() == "1"


def test_first_run_goes_as_far_as_this_machine_allows(box_inventory):
    first = vmstation("deploy-debian", "--json", inventory=box_inventory)
    assert first.returncode == 3, first.stderr
    results = outcomes(first)
    for (phase, host), outcome in results.items():
        if phase in RAN_HERE:
            assert outcome["status"] in ("changed", "ok"), (phase, host, outcome)
        if phase in BLOCKED:
            assert outcome["status"] == "blocked", (phase, host, outcome)
    binaries = results[("debian.kube-binaries", "masternode")]
    assert binaries["status"] == "unsupported"
    assert "kubeadm, kubelet, kubectl not found in the artifacts directory" in binaries["message"]
    assert results[("debian.containerd-config", "masternode")]["changed"] >= 1
    warning = [s for s in results[("debian.containerd-config", "masternode")]["steps"] if s["status"] == "warn"]
    assert warning and "Kubernetes 1.29.15 expects" in warning[0]["reason"]


def test_second_run_changes_nothing(box_inventory):
    second = vmstation("deploy-debian", "--json", inventory=box_inventory)
    assert second.returncode == 3, second.stderr
    data = json.loads(second.stdout)
    assert data["changed"] == 0, [(o["phase"], o["host"], [s for s in o["steps"] if s["status"] == "change"])
                                  for o in data["outcomes"] if o["changed"]]


def test_testinfra_sees_the_state_the_run_reported(box_inventory):
    inventory = load(box_inventory)
    for name in ("masternode", "storagenodet3500"):
        host = inventory.host(name)
        connection = connect(host, SshOptions(known_hosts=inventory.known_hosts))
        try:
            results = run_checks(connection, checks_for(host, inventory.cluster(host.cluster), RAN_HERE))
        finally:
            connection.close()
        assert results, name
        failed = [r for r in results if not r.passed]
        assert not failed, failed


def _run_on(inventory, name: str, script: str) -> str:
    host = inventory.host(name)
    connection = connect(host, SshOptions(known_hosts=inventory.known_hosts))
    try:
        return connection.run(script + "\n").stdout
    finally:
        connection.close()
