"""The whole upgrade sequence, held by snapshots: 1.29 to 1.30 and 1.29 to 1.31, on the homelab inventory and on
one with three workers, each step in the order the use case runs it (the control plane's part, then each worker
alone), every operation decided for hosts that still run 1.29.15 (VMSTATION_UPDATE_SNAPSHOTS=1 rewrites them).

No kubeadm can run here, so these plans and the box test's stand-ins (tests/integration/test_daytwo.py) are what
holds the upgrade's commands and its control flow.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from vmstation import backup, skew
from vmstation.context import HostContext, RunContext
from vmstation.execute import PhaseOutcome, decide_steps
from vmstation.inventory import Host
from vmstation.maintenance import _parts
from vmstation.offline import assumed_facts
from vmstation.operations import Check, Directory, Fetch, File, Notice, On, Service
from vmstation.phases import upgrade as debian_upgrade
from vmstation.phases.certs import CertificateExpiry
from vmstation.report import format_plan
from vmstation.targets import build_graph
from vmstation.upgrades import kubeadm_chain

SNAPSHOTS = Path(__file__).parent / "snapshots"
STAMP = "20261128T110000Z"
NOW = datetime(2026, 11, 28, 11, 0, tzinfo=timezone.utc)
CERTS_FINE = ("CERTIFICATE   EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED\n"
              "apiserver     Jun 01, 2027 10:00 UTC   184d            ca                      no\n")


def fact_for(operation) -> str:
    """What a host still at 1.29.15, with nothing of the upgrade on it yet, prints for ``operation``'s probe."""
    inner = operation.operation if isinstance(operation, On) else operation
    if isinstance(inner, (File, Directory, Fetch)):
        return "absent\n"
    if isinstance(inner, Service):
        return "enabled\nactive\n"
    if isinstance(inner, CertificateExpiry):
        return CERTS_FINE
    if isinstance(inner, debian_upgrade.Drain):
        return "v1.29.15"
    return ""            # packages at 1.29.15 (not the step's version), guards that say run, schedulable nodes


def skew_fact(inventory, version: str) -> str:
    """What the API server and kubectl answer KubeletSkew's probe with: the step's starting version everywhere."""
    names = [h.name for h in inventory.hosts_of(inventory.cluster("debian").name)]
    return (json.dumps({"major": "1", "minor": version.split(".")[1], "gitVersion": f"v{version}"}) + "\n"
            + skew.NODES_MARKER + "\n" + "".join(f"{name}\tv{version}\n" for name in names))


def three_workers(homelab):
    worker = homelab.host("storagenodet3500")
    extra = [dataclasses.replace(worker, name=f"storagenode{n}", address=f"192.168.4.{70 + n}", roles=("worker",),
                                 mac=f"d0:94:66:30:d6:{70 + n}", media_path=None) for n in (2, 3)]
    hosts: tuple[Host, ...] = homelab.hosts[:2] + tuple(extra) + homelab.hosts[2:]
    return dataclasses.replace(homelab, hosts=hosts)


def upgrade_plan(inventory, to: str, tmp_path: Path) -> str:
    cluster = inventory.cluster("debian")

    def answer(operation, step) -> str:
        if isinstance(operation, debian_upgrade.KubeletSkew):
            return skew_fact(inventory, step.from_version)
        return fact_for(operation)
    return chain_plan(inventory, cluster, kubeadm_chain(cluster.version, to), "debian", answer, tmp_path)


def chain_plan(inventory, cluster, chain, family: str, answer, tmp_path: Path) -> str:
    """The plan of every run of an upgrade chain, as the use case runs them (maintenance._parts), each
    operation decided on ``answer(operation, step)`` with the certificates' expiry judged at NOW."""
    graph = build_graph()
    target = "upgrade-debian" if cluster.kind == "kubeadm" else "upgrade-rke2"
    sections = []
    for step in chain:
        for where, limit, only in _parts(inventory, cluster, cluster.kind):
            run_ctx = RunContext(inventory, plan=True, artifacts_dir=tmp_path / "artifacts", limit=limit,
                                 upgrade_to=step.to_version, backup_stamp=STAMP)
            outcomes = []
            for phase in graph.order(target, only):
                for host in (h for h in phase.select(inventory) if h.name in limit):
                    ctx = HostContext(run_ctx, host, None, facts_source=lambda: assumed_facts(family))
                    operations = [dataclasses.replace(o, now=NOW) if isinstance(o, CertificateExpiry) else o
                                  for o in phase.operations(ctx)]
                    steps = decide_steps(operations, [answer(o, step) for o in operations])
                    outcomes.append(PhaseOutcome(phase.name, host.name, "planned", steps))
            sections.append(f"##### step {step.number} ({step.from_version} -> {step.to_version}), {where}\n"
                            + format_plan(outcomes))
    return "".join(sections).replace(str(tmp_path), "<tmp>")


CASES = [("homelab", "1.30.x"), ("homelab", "1.31"), ("three_workers", "1.30.x"), ("three_workers", "1.31")]


@pytest.mark.parametrize("which, to", CASES)
def test_the_upgrade_sequence_matches_its_snapshot(homelab, tmp_path, which, to):
    inventory = homelab if which == "homelab" else three_workers(homelab)
    text = upgrade_plan(inventory, to, tmp_path)
    path = SNAPSHOTS / f"upgrade_debian_1.29_to_{to.rstrip('.x')}_{which}.txt"
    if os.environ.get("VMSTATION_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with VMSTATION_UPDATE_SNAPSHOTS=1 to write it"
    assert text == path.read_text(), f"plan differs from {path} (VMSTATION_UPDATE_SNAPSHOTS=1 rewrites it)"


def test_two_minors_are_two_steps_each_with_its_own_repository_snapshot_and_worker_order(homelab, tmp_path):
    text = upgrade_plan(three_workers(homelab), "1.31", tmp_path)
    headers = [line for line in text.splitlines() if line.startswith("#####")]
    assert headers == [
        "##### step 1 (1.29.15 -> 1.30.14), control plane masternode",
        "##### step 1 (1.29.15 -> 1.30.14), worker storagenodet3500",
        "##### step 1 (1.29.15 -> 1.30.14), worker storagenode2",
        "##### step 1 (1.29.15 -> 1.30.14), worker storagenode3",
        "##### step 2 (1.30.14 -> 1.31.14), control plane masternode",
        "##### step 2 (1.30.14 -> 1.31.14), worker storagenodet3500",
        "##### step 2 (1.30.14 -> 1.31.14), worker storagenode2",
        "##### step 2 (1.30.14 -> 1.31.14), worker storagenode3"]
    assert "https://pkgs.k8s.io/core:/stable:/v1.30/deb/" in text
    assert "https://pkgs.k8s.io/core:/stable:/v1.31/deb/" in text
    assert "$ kubeadm upgrade apply v1.30.14 --yes" in text and "$ kubeadm upgrade apply v1.31.14 --yes" in text
    assert text.count(f"etcd snapshot to {backup.host_path(STAMP)}") == 2      # one per step, before the apply
    assert "drain node storagenode2 (on masternode)" in text and "uncordon node storagenode2 (on masternode)" in text


def test_the_control_plane_part_snapshots_before_it_changes_anything(homelab, tmp_path):
    text = upgrade_plan(homelab, "1.30", tmp_path)
    first = text.split("##### step 1 (1.29.15 -> 1.30.14), worker")[0]
    order = [first.index(marker) for marker in ("== upgrade-debian.preflight", "== upgrade-debian.snapshot",
                                                "== upgrade-debian.fetch", "== upgrade-debian.control-plane @",
                                                "== upgrade-debian.control-plane-node")]
    assert order == sorted(order)


def test_a_worker_whose_kubelet_runs_the_step_already_is_not_drained_and_a_cordoned_one_is_uncordoned():
    drain = debian_upgrade.Drain("w", "v1.30.14")
    assert drain.decide("v1.30.14", frozenset()).status == "ok"
    uncordon = debian_upgrade.Uncordon("w", drained=drain.label)
    assert uncordon.decide("", frozenset()).status == "ok"
    assert uncordon.decide("true", frozenset()).reason == "still cordoned"        # a run cut after its drain
    assert uncordon.decide("", frozenset({drain.label})).reason == "drained above"


def test_a_step_without_a_version_is_bad_input(homelab, tmp_path):
    from vmstation.errors import InputError

    ctx = HostContext(RunContext(homelab, plan=True), homelab.host("masternode"), None,
                      facts_source=lambda: assumed_facts("debian"))
    with pytest.raises(InputError, match="--to VERSION"):
        list(debian_upgrade.control_plane(ctx))


def test_the_check_ahead_of_each_step_accepts_the_minor_before_and_the_step_minor_only(homelab, tmp_path):
    ctx = HostContext(RunContext(homelab, plan=True, upgrade_to="1.31.14"), homelab.host("masternode"), None,
                      facts_source=lambda: assumed_facts("debian"))
    [skew] = [o for o in debian_upgrade.preflight(ctx) if isinstance(o, Check) and "one minor" in o.description]
    assert "v1.30.*|v1.31.*) ;;" in skew.script


def test_the_control_plane_preflight_judges_every_kubelet_against_the_step_and_a_worker_does_not_ask(homelab):
    def preflight_of(name):
        ctx = HostContext(RunContext(homelab, plan=True, upgrade_to="1.31.14"), homelab.host(name), None,
                          facts_source=lambda: assumed_facts("debian"))
        return list(debian_upgrade.preflight(ctx))

    assert debian_upgrade.KubeletSkew("1.31.14") in preflight_of("masternode")
    assert not [o for o in preflight_of("storagenodet3500") if isinstance(o, debian_upgrade.KubeletSkew)]


@pytest.mark.parametrize("to, pause", [("1.30.14", None), ("1.31.14", "3.10"), ("1.35.7", "3.10.1"),
                                       ("1.36.3", "3.10.2")])
def test_the_preflight_names_the_pause_image_the_steps_kubeadm_expects(homelab, to, pause):
    ctx = HostContext(RunContext(homelab, plan=True, upgrade_to=to), homelab.host("masternode"), None,
                      facts_source=lambda: assumed_facts("debian"))
    notices = [o.message for o in debian_upgrade.preflight(ctx) if isinstance(o, Notice)]
    if pause is None:                      # 1.30's kubeadm expects 3.9, containerd's pinned sandbox image
        assert not notices
    else:
        assert notices == [f"containerd's sandbox image is registry.k8s.io/pause:3.9; kubeadm {to} expects "
                           f"registry.k8s.io/pause:{pause}: pods still start and kubeadm warns; the deploy-debian "
                           f"after the upgrade (with version = \"{to}\" in hosts.toml) sets it, restarting "
                           "containerd"]


# -- RKE2 --------------------------------------------------------------------------------------------------------


RKE2_CERTS_FINE = ("/var/lib/rancher/rke2/server/tls/client-admin.crt notAfter=Jun  1 10:00:00 2027 GMT\n"
                   "/var/lib/rancher/rke2/server/tls/serving-kube-apiserver.crt notAfter=Jun  1 10:00:00 2027 GMT\n")


def rke2_fact_for(operation) -> str:
    """What an RKE2 node at the chain's first release prints: ``fact_for``'s answers, RKE2's certificate files."""
    return RKE2_CERTS_FINE if isinstance(operation, CertificateExpiry) else fact_for(operation)


def rke2_upgrade_plan(inventory, current: str, to: str, tmp_path: Path) -> str:
    from vmstation.upgrades import rke2_chain

    return chain_plan(inventory, inventory.cluster("rke2"), rke2_chain(current, to), "rhel",
                      lambda operation, step: rke2_fact_for(operation), tmp_path)


def test_the_rke2_upgrade_goes_server_by_server_then_agents_through_the_install_script(homelab, tmp_path):
    agent = dataclasses.replace(homelab.host("homelab"), name="rke2agent", address="192.168.4.80", roles=("agent",),
                                mac="d0:94:66:30:d6:80")
    inventory = dataclasses.replace(homelab, hosts=homelab.hosts + (agent,))
    text = rke2_upgrade_plan(inventory, "v1.33.13+rke2r2", "v1.35", tmp_path)
    path = SNAPSHOTS / "upgrade_rke2_1.33_to_1.35_server_and_agent.txt"
    if os.environ.get("VMSTATION_UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"plan differs from {path} (VMSTATION_UPDATE_SNAPSHOTS=1 rewrites it)"
    headers = [line for line in text.splitlines() if line.startswith("#####")]
    assert headers == [
        "##### step 1 (v1.33.13+rke2r2 -> v1.34.10+rke2r1), server homelab",
        "##### step 1 (v1.33.13+rke2r2 -> v1.34.10+rke2r1), agent rke2agent",
        "##### step 2 (v1.34.10+rke2r1 -> v1.35.7+rke2r1), server homelab",
        "##### step 2 (v1.34.10+rke2r1 -> v1.35.7+rke2r1), agent rke2agent"]
    assert "INSTALL_RKE2_VERSION=v1.34.10+rke2r1" in text and "INSTALL_RKE2_VERSION=v1.35.7+rke2r1" in text
    assert "rke2 etcd-snapshot save to /var/lib/vmstation/backups/etcd-20261128T110000Z.db" in text
