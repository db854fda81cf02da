"""Day two on boxes: status (a stopped box reported within a second), and the control flow of backup, certificate
renewal and upgrade with STAND-INS (tests/standins/) for kubeadm, kubectl and etcdctl.

The stand-ins are scripts that succeed, fail or hang on cue; they are not Kubernetes or etcd and this module
proves nothing about them. It proves what the engine does around them: one command per awake host, a silent
worker judged from the control plane's view and the sleep record, a snapshot fetched 0600 with a retention
count, a failure that stops where it happened and says so.

Boxes of its own: prefix vmsd, 10.77.14.0/24, bridge vmsd0, apt proxy port 3154. The stand-ins are copied into
the boxes' /usr/local/bin (the deploy phases that would place real binaries are covered by test_standins.py).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmstation.app import Session, homelab_status

STANDINS = Path(__file__).resolve().parents[1] / "standins"
CONTROL, WORKER, SERVER = "masternode", "storagenodet3500", "homelab"


@pytest.fixture(scope="module")
def daytwo_boxes() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("boxes need root: network namespaces, a bridge and systemd-nspawn")
    from vmstation.testing.boxes import BoxSet

    with BoxSet(names=[CONTROL, WORKER, SERVER], prefix="vmsd", subnet="10.77.14.0/24", bridge="vmsd0",
                proxy_port=3154) as boxes:
        for name in (CONTROL, WORKER):
            for tool in ("kubeadm", "kubectl", "kubelet", "etcdctl"):
                shutil.copy2(STANDINS / tool, boxes[name].root / "usr/local/bin" / tool)
        (boxes[CONTROL].root / "etc/kubernetes").mkdir(parents=True, exist_ok=True)
        (boxes[CONTROL].root / "etc/kubernetes/admin.conf").write_text("apiVersion: v1\nkind: Config\n")
        cue(boxes, CONTROL, "nodes", f"{CONTROL} {WORKER}")
        yield boxes


@pytest.fixture(scope="module")
def inventory(daytwo_boxes, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("daytwo")
    return daytwo_boxes.write_inventory(workdir / "hosts.toml", host_extra={CONTROL: {"always_on": True}})


def cue(boxes, box: str, action: str, what: str | None) -> None:
    """Tell a box's stand-ins what to do next (None: succeed)."""
    path = boxes[box].root / "etc/vmstation-standin" / action
    path.parent.mkdir(parents=True, exist_ok=True)
    if what is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(what + "\n")


def calls(boxes, box: str) -> list[str]:
    path = boxes[box].root / "var/lib/vmstation-standin/calls"
    return path.read_text().splitlines() if path.exists() else []


def session(inventory: Path, monkeypatch) -> Session:
    monkeypatch.setenv("VMSTATION_VAULT_PASSWORD", "")
    monkeypatch.delenv("VMSTATION_STATE_DIR", raising=False)
    return Session(inventory_path=str(inventory))


def states(result) -> dict[str, str]:
    return {h.name: h.state for c in result.clusters for h in c.hosts}


# -- status --------------------------------------------------------------------------------------------------


def test_status_of_every_host_in_one_command_each(daytwo_boxes, inventory, monkeypatch):
    result = homelab_status(session(inventory, monkeypatch))
    assert states(result) == {CONTROL: "Ready", WORKER: "Ready", SERVER: "up (not a node)"}
    debian = result.clusters[0]
    control = debian.hosts[0]
    assert control.os.startswith("Debian GNU/Linux 12") and control.kernel and control.reboot_required is False
    assert control.kubelet == "1.29.15"        # the stand-in kubelet's --version
    assert debian.certificates == "ok" and "days" in debian.certificates_note
    assert debian.idle_check == "timer inactive, not idle"
    assert result.healthy, result.problems


def test_a_stopped_box_is_reported_down_within_a_second_then_asleep_once_sleep_recorded_it(
        daytwo_boxes, inventory, monkeypatch):
    daytwo_boxes.stop(WORKER)
    try:
        cue(daytwo_boxes, CONTROL, "node-states", f"{WORKER} NotReady")
        started = time.monotonic()
        down = homelab_status(session(inventory, monkeypatch))
        took = time.monotonic() - started
        worker = next(h for h in down.clusters[0].hosts if h.name == WORKER)
        assert worker.state == "down" and worker.seconds < 1.0, (worker, took)
        assert worker.reason.startswith("no SSH banner within 0.8 s and no sleep record; its Node is not Ready")
        assert not down.healthy and any(p.startswith(f"{WORKER}: down") for p in down.problems)
        assert took < 5.0, took

        record = {"slept_at": "2026-11-28T01:00:00Z", "cordoned": [WORKER], "workloads": []}
        state_file = daytwo_boxes[CONTROL].root / "var/lib/vmstation/sleep-state.json"
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(record))
        asleep = homelab_status(session(inventory, monkeypatch))
        worker = next(h for h in asleep.clusters[0].hosts if h.name == WORKER)
        assert (worker.state, worker.reason) == ("asleep", "the sleep record lists it")
        assert worker.seconds < 1.0 and asleep.healthy, asleep.problems
        print(f"\nstatus with {WORKER} stopped: {took:.2f} s in all, its own look {worker.seconds:.2f} s")
    finally:
        (daytwo_boxes[CONTROL].root / "var/lib/vmstation/sleep-state.json").unlink(missing_ok=True)
        cue(daytwo_boxes, CONTROL, "node-states", None)
        daytwo_boxes.start(WORKER)


def test_status_exit_codes_and_json_through_the_cli(daytwo_boxes, inventory, monkeypatch):
    from click.testing import CliRunner

    from vmstation.cli import main

    monkeypatch.setenv("VMSTATION_VAULT_PASSWORD", "")
    healthy = CliRunner().invoke(main, ["status", "--json", "-i", str(inventory)])
    assert healthy.exit_code == 0, healthy.output
    assert json.loads(healthy.output)["healthy"] is True
    cue(daytwo_boxes, CONTROL, "certs-expire", "Jan 01, 2026 00:00 UTC")
    try:
        expired = CliRunner().invoke(main, ["status", "-i", str(inventory)])
    finally:
        cue(daytwo_boxes, CONTROL, "certs-expire", None)
    assert expired.exit_code == 1
    assert "PROBLEM: debian: certificates: admin.conf expired on 2026-01-01" in expired.output
