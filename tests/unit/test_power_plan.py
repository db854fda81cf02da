"""Power, without a host: the plans of sleep, wake and debian.power held by snapshots (the kubectl steps
that need a cluster are proven here), the sleep record, the choice of hosts and the CLI's bad input.

Regenerate the snapshots with VMSTATION_UPDATE_SNAPSHOTS=1 and read the diff before committing it.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.unit import plans
from tests.unit.conftest import homelab_inventory
from tests.unit.plans import assert_snapshot, decided
from vmstation.cli import main as cli
from vmstation.context import HostContext, RunContext
from vmstation.errors import InputError, InventoryError
from vmstation.execute import PhaseOutcome
from vmstation.graph import Graph
from vmstation.offline import assumed_facts
from vmstation.operations import CHANGE, SKIP, File, Service
from vmstation.phases import power
from vmstation.power import idle, sleep_state
from vmstation.power.cycle import check_sleepers, choose_wake_targets
from vmstation.report import format_plan
from vmstation.secrets import SecretStore, vault_encrypt

SNAPSHOTS = Path(__file__).parent / "snapshots"
JELLYFIN_KEY = "0123456789abcdef0123456789abcdef"
VAULT_PASSWORD = "power-test-vault-password"

# What a freshly deployed homelab answers to each probe: a cluster on masternode, none of our files yet.
FRESH_FACTS = {power.ClusterStep: "cluster\n", File: "absent\n", Service: "disabled\ninactive\n",
               power.WakeOnLanArmed: "Supports Wake-on: pumbg\nWake-on: d\n"}


@pytest.fixture
def homelab_with_vault(tmp_path: Path):
    """The homelab inventory with a real vault holding the Jellyfin API key."""
    (tmp_path / "secrets.vault").write_text(f"jellyfin_api_key: {JELLYFIN_KEY}\nhomelab_become_password: x\n")
    (tmp_path / "vault-pass").write_text(VAULT_PASSWORD + "\n")
    vault_encrypt(tmp_path / "secrets.vault", VAULT_PASSWORD)
    inventory = dataclasses.replace(homelab_inventory(), path=str(tmp_path / "hosts.toml"))
    return inventory, SecretStore.open(inventory, password_file=tmp_path / "vault-pass", prompt=False)


# ---------------------------------------------------------------------------------------------
# Plans, as snapshots
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target,values,base", [
    ("sleep", {}, None),
    ("sleep-check", {}, None),
    ("wake", {}, None),
    ("wake-named", {"wake_hosts": ("storagenodet3500",), "wake_interface": "eno1"}, "power_wake"),
])
def test_power_target_plan_matches_snapshot(homelab_with_vault, target, values, base):
    inventory, secrets = homelab_with_vault
    text = plan_text(inventory, secrets, target.removesuffix("-named"), values)
    assert_snapshot(f"power_{target.replace('-', '_')}", text, base=base)


def test_debian_power_plan_matches_snapshot(homelab_with_vault):
    inventory, secrets = homelab_with_vault
    assert_snapshot("power_debian_power", plan_text(inventory, secrets, "debian-power", {}))


def test_sleep_plan_cordons_drains_scales_then_powers_off_the_worker_only(homelab_with_vault):
    inventory, secrets = homelab_with_vault
    outcomes = plan_outcomes(inventory, secrets, "sleep", {})
    drain = next(o for o in outcomes if o.phase == "sleep.drain")
    labels = [s.label for s in drain.steps]
    assert labels == ["run record the sleep's start for the dashboards",
                      "kubectl: record replica counts and cordons in /var/lib/vmstation/sleep-state.json",
                      "kubectl: cordon storagenodet3500",
                      "kubectl: drain storagenodet3500 (DaemonSets stay, up to 300s)",
                      "kubectl: scale down the recorded Deployments and StatefulSets"]
    assert all("--force" not in c for s in drain.steps for c in s.commands)
    assert [(o.phase, o.host) for o in outcomes if o.phase == "sleep.power-off"] == [
        ("sleep.power-off", "storagenodet3500")]
    off = next(o for o in outcomes if o.phase == "sleep.power-off")
    assert off.steps[0].commands == ("ethtool -s enp2s0 wol g",)
    assert off.steps[1].commands[0].endswith("systemctl poweroff")


def test_suspend_is_used_when_the_inventory_says_so(homelab_with_vault):
    inventory, secrets = homelab_with_vault
    worker = dataclasses.replace(inventory.host("storagenodet3500"), sleep_method="suspend")
    inventory = dataclasses.replace(inventory, hosts=tuple(worker if h.name == worker.name else h
                                                           for h in inventory.hosts))
    off = next(o for o in plan_outcomes(inventory, secrets, "sleep", {}) if o.phase == "sleep.power-off")
    assert off.steps[1].commands[0].endswith("systemctl suspend")


def test_kubectl_steps_are_skipped_with_the_reason_where_no_cluster_runs():
    step = power.ClusterStep("kubectl cordon x", "cordon x").decide("no-cluster\n", frozenset())
    assert step.status == SKIP and step.commands == ()
    assert step.reason == "no Kubernetes cluster here (/etc/kubernetes/admin.conf or kubectl missing)"


@pytest.mark.parametrize("fact,status,reason", [
    ("no-ethtool\n", SKIP, "ethtool is not installed; relying on the .link file"),
    ("Supports Wake-on: d\nWake-on: d\n", SKIP, "enp2s0 does not support magic packets (Supports Wake-on: d)"),
    ("Supports Wake-on: pumbg\nWake-on: g\n", "ok", "already armed (Wake-on: g)"),
    ("Supports Wake-on: pumbg\nWake-on: d\n", CHANGE, "not armed"),
])
def test_wake_on_lan_arming_reads_ethtool(fact, status, reason):
    step = power.WakeOnLanArmed("enp2s0").decide(fact, frozenset())
    assert (step.status, step.reason) == (status, reason)


def test_the_jellyfin_key_is_a_secret_file_and_never_in_the_plan(homelab_with_vault):
    inventory, secrets = homelab_with_vault
    outcomes = plan_outcomes(inventory, secrets, "debian-power", {})
    key_step = next(s for o in outcomes for s in o.steps if s.label == f"file {power.JELLYFIN_KEY_FILE}")
    assert key_step.secret and key_step.uploads[0].mode == "0600"
    assert key_step.uploads[0].content == (JELLYFIN_KEY + "\n").encode()
    assert JELLYFIN_KEY not in format_plan(outcomes)


def test_power_tools_ship_the_package_sources_unchanged(homelab_with_vault):
    inventory, secrets = homelab_with_vault
    ctx = host_context(inventory, secrets, inventory.host("masternode"), {})
    files = {op.path: op.data for op in power.power_tools(ctx)}
    root = Path(power.__file__).resolve().parents[1]
    assert files == {f"/usr/local/lib/vmstation/vmstation/{m}": (root / m).read_bytes() for m in power.MODULES}


def test_idle_config_is_what_the_idle_check_loads(tmp_path):
    path = tmp_path / "idle.json"
    path.write_text(power.idle_config_json(homelab_inventory()))
    config = idle.load_config(str(path))
    assert config.cpu == {"masternode": "local", "storagenodet3500": "http://192.168.4.61:9100/metrics"}
    assert config.kubectl == ("kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf")
    assert config.jellyfin_api_key_file == power.JELLYFIN_KEY_FILE and config.idle_hours == 2.0


@pytest.mark.parametrize("template", ["scheduled", "watch"])
def test_rendered_scripts_are_valid_posix_sh(homelab_with_vault, template, tmp_path):
    inventory, secrets = homelab_with_vault
    host, path = (("masternode", power.SCHEDULED_SLEEP) if template == "scheduled"
                  else ("storagenodet3500", power.SLEEP_WATCH))
    ctx = host_context(inventory, secrets, inventory.host(host), {})
    script = next(op for op in power.debian_power(ctx) if isinstance(op, File) and op.path == path)
    (tmp_path / "script.sh").write_bytes(script.data)
    checked = subprocess.run(["sh", "-n", str(tmp_path / "script.sh")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert script.mode == "0755"


def test_sleep_watch_powers_off_once_per_request(homelab_with_vault, tmp_path):
    """The worker's watch, run by a real sh with kubectl and systemctl stand-ins on PATH that record calls."""
    inventory, secrets = homelab_with_vault
    ctx = host_context(inventory, secrets, inventory.host("storagenodet3500"), {})
    script = next(op for op in power.debian_power(ctx) if isinstance(op, File) and op.path == power.SLEEP_WATCH)
    handled = tmp_path / "handled"
    text = script.data.decode().replace(power.SLEEP_HANDLED, str(handled))
    (tmp_path / "watch.sh").write_text(text)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, body in {"kubectl": 'echo "$@" >> "$CALLS"; printf %s "$REQUESTED"',
                       "systemctl": 'echo "systemctl $*" >> "$CALLS"', "ethtool": 'echo "ethtool $*" >> "$CALLS"'
                       }.items():
        (bin_dir / tool).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls)}

    def watch(requested: str) -> list[str]:
        calls.write_text("")
        subprocess.run(["sh", str(tmp_path / "watch.sh")], env={**env, "REQUESTED": requested}, check=True)
        return [line for line in calls.read_text().splitlines() if not line.startswith("--kubeconfig")]

    assert watch("") == []
    assert watch("1700000000") == ["ethtool -s enp2s0 wol g", "systemctl poweroff"]
    assert watch("1700000000") == []            # woken, the same request still there: stays up
    assert watch("1700009999") == ["ethtool -s enp2s0 wol g", "systemctl poweroff"]


# ---------------------------------------------------------------------------------------------
# The sleep record
# ---------------------------------------------------------------------------------------------

LISTING = {"items": [
    {"kind": "Deployment", "metadata": {"namespace": "jellyfin", "name": "jellyfin"}, "spec": {"replicas": 1}},
    {"kind": "StatefulSet", "metadata": {"namespace": "media", "name": "db"}, "spec": {"replicas": 3}},
    {"kind": "Deployment", "metadata": {"namespace": "monitoring", "name": "grafana"}, "spec": {"replicas": 1}},
    {"kind": "Deployment", "metadata": {"namespace": "kube-system", "name": "coredns"}, "spec": {"replicas": 2}},
    {"kind": "Deployment", "metadata": {"namespace": "tools", "name": "pinned",
                                        "labels": {"vmstation.io/sleep": "keep"}}, "spec": {"replicas": 1}},
]}
NODES = {"items": [{"metadata": {"name": "storagenodet3500"}, "spec": {}},
                   {"metadata": {"name": "spare"}, "spec": {"unschedulable": True}}]}
NOW = datetime(2024, 5, 1, 22, 0, tzinfo=timezone.utc)


def test_record_keeps_critical_namespaces_and_only_undoes_its_own_cordons():
    state = sleep_state.record(None, LISTING, NODES, ["storagenodet3500", "spare"], now=NOW)
    assert [(w.namespace, w.ref, w.replicas) for w in state.workloads] == [
        ("jellyfin", "deployment/jellyfin", 1), ("media", "statefulset/db", 3)]
    assert state.cordoned == ("storagenodet3500",) and state.slept_at == "2024-05-01T22:00:00Z"


def test_a_second_sleep_does_not_record_the_zeros_it_set():
    first = sleep_state.record(None, LISTING, NODES, ["storagenodet3500"], now=NOW)
    scaled = {"items": [{**item, "spec": {"replicas": 0}} for item in LISTING["items"]]}
    cordoned = {"items": [{"metadata": {"name": "storagenodet3500"}, "spec": {"unschedulable": True}}]}
    second = sleep_state.record(first, scaled, cordoned, ["storagenodet3500"])
    assert second == first


def test_record_round_trips_through_an_atomic_file(tmp_path):
    state = sleep_state.record(None, LISTING, NODES, ["storagenodet3500"], now=NOW)
    path = tmp_path / "var/lib/vmstation/sleep-state.json"
    sleep_state.save(path, state)
    assert sleep_state.load(path) == state
    assert [p.name for p in path.parent.iterdir()] == ["sleep-state.json"]
    assert sleep_state.load(tmp_path / "absent.json") is None


@pytest.mark.parametrize("content,message", [
    ("[]", "f.json: expected a JSON object"),
    ('{"slept_at": 1, "cordoned": [], "workloads": []}', "f.json: key 'slept_at': expected an ISO 8601 time"),
    ('{"slept_at": "x", "cordoned": [], "workloads": [{"kind": "Pod", "namespace": "a", "name": "b", '
     '"replicas": 1}]}', "f.json: key 'workloads[0].kind': expected one of Deployment, StatefulSet"),
    ('{"slept_at": "x", "cordoned": [], "workloads": [{"kind": "Deployment", "namespace": "a", "name": "b", '
     '"replicas": -1}]}', "f.json: key 'workloads[0].replicas': expected a whole number >= 0"),
])
def test_a_broken_record_is_one_line_naming_file_and_key(content, message):
    with pytest.raises(InputError) as caught:
        sleep_state.loads(content, "f.json")
    assert str(caught.value) == message


# ---------------------------------------------------------------------------------------------
# Choosing hosts, and the CLI's bad input
# ---------------------------------------------------------------------------------------------


def test_wake_defaults_to_hosts_with_a_mac_that_sleep_except_the_sender():
    inventory = homelab_inventory()
    assert [h.name for h in choose_wake_targets(inventory, (), False)] == ["storagenodet3500", "homelab"]


@pytest.mark.parametrize("names,message", [
    (("nosuch",), "hosts.toml: host 'nosuch': unknown host; known: homelab, masternode, storagenodet3500"),
    (("masternode",), "hosts.toml: host 'masternode': sends the magic packets itself, so it must be awake "
                      "already (use --from-here to wake it)"),
])
def test_wake_refuses_bad_names_in_one_line(names, message):
    with pytest.raises(InventoryError) as caught:
        choose_wake_targets(homelab_inventory(), names, False)
    assert str(caught.value) == message


def test_a_worker_without_a_mac_can_neither_be_woken_nor_put_to_sleep():
    inventory = homelab_inventory()
    worker = dataclasses.replace(inventory.host("storagenodet3500"), mac=None)
    inventory = dataclasses.replace(inventory, hosts=tuple(worker if h.name == worker.name else h
                                                           for h in inventory.hosts))
    with pytest.raises(InventoryError, match=r"^hosts.toml: host 'storagenodet3500': key 'mac': has no MAC"):
        choose_wake_targets(inventory, ("storagenodet3500",), False)
    with pytest.raises(InventoryError, match=r"^hosts.toml: host 'storagenodet3500': key 'mac': has no MAC"):
        check_sleepers(inventory)


BAD_INVENTORY_MAC = """\
[clusters.debian]
kind = "kubeadm"

[hosts.masternode]
address = "10.77.6.2"
cluster = "debian"
roles = ["control-plane"]

[hosts.storagenodet3500]
address = "10.77.6.3"
cluster = "debian"
roles = ["worker"]
mac = "00:e0:4c:68:cb:bf brd ff:ff:ff:ff:ff:ff"
"""


@pytest.mark.parametrize("args,expected", [
    (["wake", "nosuch"], "vmstation: INV: host 'nosuch': unknown host; known: masternode, storagenodet3500"),
    (["wake", "storagenodet3500", "--interface", "eth0; reboot"],
     "vmstation: --interface 'eth0; reboot': not a network interface name"),
    (["sleep", "--force"], "vmstation: INV: host 'storagenodet3500': key 'mac': has no MAC address, so it could "
                           "not be woken again; set mac, or always_on = true"),
])
def test_cli_bad_input_is_exit_2_and_one_line(tmp_path, args, expected):
    inventory = tmp_path / "hosts.toml"
    good = BAD_INVENTORY_MAC.replace('mac = "00:e0:4c:68:cb:bf brd ff:ff:ff:ff:ff:ff"\n',
                                     "" if args[0] == "sleep" else 'mac = "00:e0:4c:68:cb:bf"\n')
    inventory.write_text(good)
    result = CliRunner().invoke(cli, [*args, "--inventory", str(inventory)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [expected.replace("INV", str(inventory))]


def test_cli_malformed_mac_in_the_inventory_is_exit_2_naming_host_and_key(tmp_path):
    inventory = tmp_path / "hosts.toml"
    inventory.write_text(BAD_INVENTORY_MAC)
    result = CliRunner().invoke(cli, ["wake", "--inventory", str(inventory)])
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith(f"vmstation: {inventory}: host 'storagenodet3500': key 'mac': ")
    assert "pasted from `ip link`" in line


# ---------------------------------------------------------------------------------------------
# Helpers: a plan without SSH (every probe answered as a fresh homelab would answer it)
# ---------------------------------------------------------------------------------------------


def plan_text(inventory, secrets, target: str, values: dict) -> str:
    return plans.plan_text(plan_outcomes(inventory, secrets, target, values))


def plan_outcomes(inventory, secrets, target: str, values: dict) -> list[PhaseOutcome]:
    if target == "debian-power":
        phases = [p for p in power.PHASES if p.name == "debian.power"]
    else:
        phases = [p for p in Graph(power.PHASES, power.TARGETS).order(target) if p.name != "power.tools"]
    outcomes = []
    for phase in phases:
        for host in phase.select(inventory):
            ctx = host_context(inventory, secrets, host, values)
            outcomes.append(decided(phase, ctx, lambda operation: FRESH_FACTS.get(type(operation), "")))
    return outcomes


def host_context(inventory, secrets, host, values: dict) -> HostContext:
    run_ctx = RunContext(inventory, plan=True, secrets=secrets, **values)
    return HostContext(run_ctx, host, None, facts_source=lambda: assumed_facts(host.os_family or "debian"))


