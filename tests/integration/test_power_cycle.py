"""The whole sleep/wake cycle on boxes, through the CLI.

`vmstation sleep --force` powers the worker box off over SSH (systemctl poweroff: its nspawn
exits); `vmstation wake` sends the magic packet FROM the masternode box over its SSH session;
the harness plays the NIC firmware (it sees the packet on the boxes' bridge and starts the
stopped box); the box boots, SSH answers, and the time-to-wake is reported. The kubectl steps
need a cluster, which boxes have not: they must show as skipped with the reason, never as done
(the plan snapshots in tests/unit/test_power_plan.py hold them).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmstation.cli import main as cli
from vmstation.testing.wol_firmware import WolFirmware

WORKER = "storagenodet3500"


@pytest.fixture
def box_inventory(boxes, tmp_path: Path) -> Path:
    """The boxes as a homelab; magic packets go to the boxes' subnet broadcast, out of masternode's eth0."""
    path = boxes.write_inventory(tmp_path / "hosts.toml")
    broadcast = boxes.wiring.network.broadcast_address
    with path.open("a") as handle:
        handle.write(f'\n[power]\nwol_broadcast = "{broadcast}"\nwol_interface = "eth0"\n')
    return path


@pytest.fixture
def worker_is_restarted(boxes):
    """Whatever the test did, the session's worker box is running afterwards."""
    yield
    if not boxes.is_running(WORKER):
        boxes.start(WORKER)


def vmstation(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_sleep_then_wake_from_masternode(boxes, box_inventory, worker_is_restarted, open_ssh):
    slept = vmstation("sleep", "--force", "--inventory", str(box_inventory))
    assert slept.exit_code == 0, slept.output
    assert re.search(rf"^{WORKER}: asleep \(shutdown\) after \d+\.\d s$", slept.output, re.M), slept.output
    assert re.search(rf"skipped kubectl: cordon {WORKER}: no Kubernetes cluster here", slept.output), slept.output
    assert "sleep.power-off" in slept.output and _stops(boxes, WORKER, timeout=30)

    with WolFirmware(boxes) as firmware:
        woke = vmstation("wake", WORKER, "--timeout", "120", "--inventory", str(box_inventory))
        event = firmware.wait_for_start(WORKER, timeout=5)
    assert woke.exit_code == 0, woke.output
    assert f"sent magic packet for {boxes.mac(WORKER)} to {boxes.wiring.network.broadcast_address}:9 via eth0" \
        in woke.output
    assert re.search(rf"^{WORKER}\s+awake: SSH answered \d+\.\d s after the magic packet$", woke.output, re.M)
    assert event.outcome == "started" and event.sender_mac == boxes.mac("masternode")
    assert boxes.is_running(WORKER)
    assert "skipped kubectl: wait for node storagenodet3500 Ready" in woke.output
    assert "cluster rejoin not checked: 3 kubectl steps skipped (reasons above)" in woke.output

    # What the dashboards read: masternode's textfile, written by the engine's sleep and wake.
    master = open_ssh(boxes["masternode"].address, boxes.known_hosts, boxes.client_key)
    textfile = _remote(master, "cat /var/lib/prometheus/node-exporter/vmstation_power.prom")
    assert f'vmstation_power_state{{worker="{WORKER}"}} 0' in textfile, textfile
    seconds = float(re.search(rf"^{WORKER}\s+awake: SSH answered (\d+\.\d) s", woke.output, re.M).group(1))
    recorded = float(re.search(rf'^vmstation_power_wake_duration_seconds{{worker="{WORKER}"}} (\S+)$', textfile,
                               re.M).group(1))
    assert recorded == seconds
    for family in ("sleep_start", "sleep_end", "wake_start", "wake_end"):
        assert f'vmstation_power_{family}_timestamp_seconds{{worker="{WORKER}"}}' in textfile


def test_sleep_check_runs_the_policy_on_masternode_and_stays_awake_when_unsure(boxes, box_inventory):
    checked = vmstation("sleep", "--check", "--inventory", str(box_inventory))
    assert checked.exit_code == 4, checked.output
    assert "busy: staying awake" in checked.output
    assert f"not observed: CPU of {WORKER}: " in checked.output    # no node-exporter on a box
    assert "not observed: Jobs: [Errno 2] No such file or directory: 'kubectl'" in checked.output


def test_sleep_without_force_asks_the_policy_and_leaves_the_worker_up(boxes, box_inventory):
    result = vmstation("sleep", "--inventory", str(box_inventory))
    assert result.exit_code == 4, result.output
    assert "sleep.power-off" not in result.output and boxes.is_running(WORKER)


def test_wake_with_masternode_unreachable_is_exit_1(boxes, box_inventory):
    text = box_inventory.read_text()
    start = text.index("[hosts.masternode]")
    broken = text[:start] + text[start:].replace("ssh_port = 22", "ssh_port = 2", 1)
    box_inventory.write_text(broken)
    result = vmstation("wake", WORKER, "--inventory", str(box_inventory))
    assert result.exit_code == 1, result.output
    assert re.search(r"wake\.send\s+masternode\s+FAILED .*cannot reach", result.output), result.output


def test_debian_power_installs_the_scheduled_check_and_a_second_run_changes_nothing(boxes, box_inventory,
                                                                                   open_ssh):
    from vmstation.context import RunContext
    from vmstation.graph import Graph, Target
    from vmstation.inventory import load
    from vmstation.phases import power
    from vmstation.runner import RunOptions, run
    from vmstation.transport import SshOptions

    inventory = load(box_inventory)
    graph = Graph(power.PHASES, [Target("power-setup", "debian.power alone", ("debian.power",))])
    options = RunOptions("power-setup", ssh=SshOptions(known_hosts=str(boxes.known_hosts)))
    # The boxes are shared by the session: deploy-debian (which includes debian.power) may have run first,
    # so the first run here is "done", whether it changed something or found it done.
    first = run(graph, RunContext(inventory), options)
    assert first.exit_code == 0, [(o.phase, o.host, o.message) for o in first.outcomes]
    second = run(graph, RunContext(inventory), options)
    assert second.exit_code == 0 and second.changed == 0, [(o.phase, o.host, o.steps) for o in second.outcomes]

    master = open_ssh(boxes["masternode"].address, boxes.known_hosts, boxes.client_key)
    assert _remote(master, "systemctl is-enabled vmstation-idle-check.timer; systemctl is-active "
                           "vmstation-idle-check.timer") == "enabled\nactive\n"
    assert _remote(master, "stat -c %a /usr/local/sbin/vmstation-scheduled-sleep") == "755\n"
    worker = open_ssh(boxes[WORKER].address, boxes.known_hosts, boxes.client_key)
    assert _remote(worker, "grep -x WakeOnLan=magic /etc/systemd/network/50-vmstation-wol.link; "
                           "systemctl is-enabled vmstation-sleep-watch.timer") == "WakeOnLan=magic\nenabled\n"
    # No kubelet.conf on a box: the watch's condition keeps it from ever powering the box off.
    assert "ConditionPathExists=/etc/kubernetes/kubelet.conf" in _remote(
        worker, "cat /etc/systemd/system/vmstation-sleep-watch.service")


def _remote(client, command: str) -> str:
    _, stdout, _ = client.exec_command(command)
    return stdout.read().decode()


def _stops(boxes, name: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while boxes.is_running(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
