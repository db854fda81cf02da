"""The commands of deploy-debian's phases 4 to 8, held by snapshots.

kubeadm, kubelet and a cluster cannot run on this machine, so what these phases
would do is held here: each phase decided for a fresh host (no file of ours, no
service, guards that say "run"), for the real homelab and for the box inventory
(the addresses the box fixture gives), and compared with a snapshot file under
tests/unit/snapshots/ (VMSTATION_UPDATE_SNAPSHOTS=1 rewrites them).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from vmstation.context import HostContext, RunContext
from vmstation.execute import PhaseOutcome, decide_steps
from vmstation.offline import assumed_facts
from vmstation.operations import CHANGE, Check, Directory, Fetch, File, Service
from vmstation.phases import debian
from vmstation.report import format_plan
from vmstation.targets import build_graph

SNAPSHOTS = Path(__file__).parent / "snapshots"
PHASES_4_TO_8 = ("debian.kubeadm-config", "debian.control-plane-init", "debian.worker-join", "debian.flannel",
                 "debian.nodes-ready", "debian.apps", "debian.kubeconfig")
BOX_ADDRESSES = {"masternode": "10.77.2.2", "storagenodet3500": "10.77.2.3", "homelab": "10.77.2.4"}


def fresh_fact(operation) -> str:
    """What a host with nothing of ours on it prints for ``operation``'s probe."""
    if isinstance(operation, (File, Directory, Fetch)):
        return "absent\n"
    if isinstance(operation, Service):
        return "disabled\ninactive\n"
    return ""   # guards that say "run", no package installed


def box_inventory(homelab):
    hosts = tuple(dataclasses.replace(h, address=BOX_ADDRESSES[h.name], interface=None) for h in homelab.hosts)
    servers = {"kubeadm": "masternode", "rke2": "homelab"}
    clusters = tuple(dataclasses.replace(c, api_endpoint=f"{BOX_ADDRESSES[servers[c.kind]]}:6443")
                     for c in homelab.clusters)
    return dataclasses.replace(homelab, hosts=hosts, clusters=clusters)


def plan_of(inventory, tmp_path: Path) -> str:
    graph = build_graph()
    run_ctx = RunContext(inventory, plan=True, artifacts_dir=tmp_path / "artifacts")
    outcomes = []
    for name in PHASES_4_TO_8:
        phase = graph.phases[name]
        for host in phase.select(inventory):
            ctx = HostContext(run_ctx, host, None, facts_source=lambda: assumed_facts("debian"))
            operations = list(phase.operations(ctx))
            steps = decide_steps(operations, [fresh_fact(o) for o in operations])
            outcomes.append(PhaseOutcome(name, host.name, "planned", steps))
    return format_plan(outcomes).replace(str(tmp_path), "<tmp>")


@pytest.mark.parametrize("which", ["homelab", "boxes"])
def test_commands_of_phases_4_to_8_match_their_snapshot(homelab, tmp_path, which):
    inventory = homelab if which == "homelab" else box_inventory(homelab)
    text = plan_of(inventory, tmp_path)
    path = SNAPSHOTS / f"debian_phases_4_to_8_{which}.txt"
    if os.environ.get("VMSTATION_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with VMSTATION_UPDATE_SNAPSHOTS=1 to write it"
    assert text == path.read_text(), f"plan differs from {path} (VMSTATION_UPDATE_SNAPSHOTS=1 rewrites it)"


def test_the_plan_runs_kubeadm_with_the_rendered_config_and_never_shows_the_token(homelab, tmp_path):
    text = plan_of(homelab, tmp_path)
    assert "$ kubeadm init --config /etc/kubernetes/kubeadm-init.yaml" in text
    assert "$ kubeadm join --config /etc/kubernetes/kubeadm-join.yaml" in text
    assert "(secret content of /etc/kubernetes/kubeadm-join.yaml not shown)" in text
    assert debian.PLAN_JOIN["token"] not in text
    assert "--server-side" in text and "kube-flannel" in text


def test_every_manifest_is_applied_server_side_only_when_the_cluster_differs(homelab, tmp_path):
    run_ctx = RunContext(homelab, plan=True, artifacts_dir=tmp_path)
    ctx = HostContext(run_ctx, homelab.host("masternode"), None, facts_source=lambda: assumed_facts("debian"))
    applies = [o for o in debian.apps(ctx) if o.label.startswith("run apply ")]
    assert [o.label for o in applies] == [f"run apply app-{name}" for name in debian.APPS]
    for operation in applies:
        assert "apply --server-side" in operation.script and "diff --server-side" in operation.unless
        assert operation.decide("unless-true\n", frozenset()).status != CHANGE


def test_nodes_ready_waits_for_every_node_of_the_inventory(homelab, tmp_path):
    run_ctx = RunContext(homelab, plan=True, artifacts_dir=tmp_path)
    ctx = HostContext(run_ctx, homelab.host("masternode"), None, facts_source=lambda: assumed_facts("debian"))
    [wait] = list(debian.nodes_ready(ctx))
    assert isinstance(wait, Check) and "-ge 2 ]" in wait.script and "timed out after 600s" in wait.script
