"""The commands of deploy-debian's phases 4 to 8, held by snapshots.

kubeadm, kubelet and a cluster cannot run on this machine, so what these phases
would do is held here: each phase decided for a fresh host (no file of ours, no
service, guards that say "run"), for the real homelab and for the box inventory
(the addresses the box fixture gives), and compared with a snapshot file under
tests/unit/snapshots/ (VMSTATION_UPDATE_SNAPSHOTS=1 rewrites them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vmstation.context import HostContext, RunContext
from vmstation.offline import assumed_facts
from vmstation.operations import CHANGE, Check, Directory, Fetch, File, Service
from vmstation.phases import debian
from vmstation.targets import build_graph
from tests.unit.plans import assert_snapshot, decided, plan_text

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
    return plan_text((decided(graph.phases[name], HostContext(run_ctx, host, None,
                                                              facts_source=lambda: assumed_facts("debian")),
                              fresh_fact)
                      for name in PHASES_4_TO_8 for host in graph.phases[name].select(inventory)), tmp_path)


def test_commands_of_phases_4_to_8_match_their_snapshot(homelab, tmp_path):
    assert_snapshot("debian_phases_4_to_8_homelab", plan_of(homelab, tmp_path))


def test_the_box_inventory_differs_from_the_homelab_only_in_addresses_and_interfaces(homelab, tmp_path):
    assert_snapshot("debian_phases_4_to_8_boxes", plan_of(box_inventory(homelab), tmp_path),
                    base="debian_phases_4_to_8_homelab")


def test_the_plan_runs_kubeadm_with_the_rendered_config_and_never_shows_the_token(homelab, tmp_path):
    text = plan_of(homelab, tmp_path)
    assert "$ kubeadm init --config /etc/kubernetes/kubeadm-init.yaml" in text
    assert "$ kubeadm join --config /etc/kubernetes/kubeadm-join.yaml" in text
    assert "(secret content of /etc/kubernetes/kubeadm-join.yaml not shown)" in text
    assert debian.PLAN_JOIN["token"].reveal() not in text
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


# ---------------------------------------------------------------------------
# The cluster as it really installs: support window, containerd's floor, one CNI source, nftables kernel
# ---------------------------------------------------------------------------

TODAY = __import__("datetime").date(2026, 11, 28)


def debian_context(inventory, tmp_path: Path, host: str = "masternode", facts=None, **values) -> HostContext:
    run_ctx = RunContext(inventory, plan=True, artifacts_dir=tmp_path / "artifacts", **{"today": TODAY, **values})
    return HostContext(run_ctx, inventory.host(host), None, facts_source=lambda: facts or assumed_facts("debian"))


def with_cluster(inventory, **changes):
    cluster = dataclasses.replace(inventory.cluster("debian"), **changes)
    return dataclasses.replace(inventory, clusters=(cluster, inventory.cluster("rke2")))


def test_system_prep_says_kubernetes_1_29_is_out_of_support_and_what_to_move_to(homelab, tmp_path):
    notes = [op.message for op in debian.system_prep(debian_context(homelab, tmp_path))
             if op.__class__.__name__ == "Notice"]
    assert notes == ["Kubernetes 1.29.15: the 1.29 line left upstream support on 2025-02-28 (no more security "
                     "fixes); move to 1.36 (supported until 2027-06-28) or 1.35"]
    supported = with_cluster(homelab, version="1.35.3")
    assert not [op for op in debian.system_prep(debian_context(supported, tmp_path))
                if op.__class__.__name__ == "Notice"]


def test_debian12_containerd_below_the_floor_is_refused_before_any_host_unless_accepted(homelab, tmp_path):
    from vmstation.errors import InventoryError

    debian_source = with_cluster(homelab, containerd_source="debian")
    with pytest.raises(InventoryError) as caught:
        list(debian.containerd(debian_context(debian_source, tmp_path)))
    assert str(caught.value) == (
        "hosts.toml: key 'clusters.debian.containerd_source': containerd_source \"debian\" installs Debian 12's "
        "1.6.20 is older than 1.6.27, which Kubernetes 1.29.15 expects; set containerd_source = \"docker\" or "
        "\"tarball\" in hosts.toml for a newer one; or accept it with accept_old_containerd = true")
    accepted = with_cluster(homelab, containerd_source="debian", accept_old_containerd=True)
    assert [op.label for op in debian.containerd(debian_context(accepted, tmp_path))][0] == "apt containerd"
    docker = [op.label for op in debian.containerd(debian_context(homelab, tmp_path))]   # the homelab default
    assert "apt containerd.io" in docker


def test_an_installed_containerd_below_the_floor_fails_the_host_unless_accepted(homelab, tmp_path):
    from vmstation.errors import HostError

    old = dataclasses.replace(assumed_facts("debian"), containerd_version="1.6.20")
    ctx = debian_context(homelab, tmp_path, facts=old)
    with pytest.raises(HostError, match="containerd 1.6.20 is older than 1.6.27.*accept_old_containerd = true"):
        list(debian.containerd_config(ctx))
    accepted = debian_context(with_cluster(homelab, accept_old_containerd=True), tmp_path, facts=old)
    notes = [op.message for op in debian.containerd_config(accepted) if op.__class__.__name__ == "Notice"]
    assert notes == ["containerd 1.6.20 is older than 1.6.27, which Kubernetes 1.29.15 expects; set "
                     "containerd_source = \"docker\" or \"tarball\" in hosts.toml for a newer one (accepted: "
                     "accept_old_containerd = true)"]
    current = debian_context(homelab, tmp_path, facts=dataclasses.replace(old, containerd_version="1.7.27"))
    assert not [op for op in debian.containerd_config(current) if op.__class__.__name__ == "Notice"]


@pytest.mark.parametrize("installed, kubernetes, below", [
    ("1.6.20", "1.29.15", True), ("1.6.27", "1.29.15", False), ("1.7.10", "1.29.15", True),
    ("1.7.11", "1.29.15", False), ("1.5.18", "1.29.15", True), ("2.0.0", "1.29.15", False),
    ("1.7.27", "1.35.0", True), ("1.7.28", "1.35.0", False), ("1.6.39", "1.35.0", True)])
def test_containerd_floor_per_kubernetes_minor_from_containerds_table(installed, kubernetes, below):
    assert bool(debian.containerd_version_warning(installed, kubernetes)) is below


def test_cni_plugins_come_from_one_source_decided_once(homelab, tmp_path):
    assert debian.cni_source(debian_context(homelab, tmp_path)) == "kubernetes-cni"
    ops = list(debian.cni_plugins(debian_context(homelab, tmp_path)))
    assert [op.label for op in ops] == ["directory /opt/cni/bin"]       # nothing of Debian's next to it
    binaries = [op.label for op in debian.kube_binaries(debian_context(homelab, tmp_path))]
    assert "check CNI plugins from kubernetes-cni (kubelet's dependency) in /opt/cni/bin" in binaries
    airgapped = with_cluster(homelab, artifacts_dir=str(tmp_path / "release"))
    assert debian.cni_source(debian_context(airgapped, tmp_path)) == "debian"
    (tmp_path / "release" / "cni").mkdir(parents=True)
    (tmp_path / "release" / "cni" / debian.CNI_TARBALL).write_bytes(b"x")
    assert debian.cni_source(debian_context(airgapped, tmp_path)) == "tarball"


def test_debian_plugins_never_replace_a_plugin_already_there(tmp_path):
    import subprocess

    source, target = tmp_path / "usr-lib-cni", tmp_path / "opt-cni-bin"
    source.mkdir()
    target.mkdir()
    for name in ("bridge", "portmap", "loopback"):
        (source / name).write_text(f"debian {name}\n")
    (target / "bridge").write_text("kubernetes-cni bridge\n")       # the first source's file
    for _ in range(2):
        subprocess.run(["sh", "-c", debian.link_debian_plugins(str(source), str(target))], check=True, timeout=10)
    assert (target / "bridge").read_text() == "kubernetes-cni bridge\n" and not (target / "bridge").is_symlink()
    assert (target / "portmap").resolve() == source / "portmap"


def test_the_plugins_tarball_never_replaces_a_plugin_already_there(tmp_path):
    import io
    import subprocess
    import tarfile

    tarball = tmp_path / "cni.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for name in ("./bridge", "./portmap"):
            data = f"tarball {name}\n".encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    target = tmp_path / "bin"
    target.mkdir()
    (target / "bridge").write_text("first source\n")
    subprocess.run(["sh", "-c", debian.unpack_cni_tarball(str(tarball), str(target))], check=True, timeout=10)
    assert (target / "bridge").read_text() == "first source\n"
    assert (target / "portmap").read_text() == "tarball ./portmap\n"


def test_nftables_mode_checks_the_kernel_and_says_what_to_do(homelab, tmp_path):
    import subprocess

    check = next(op for op in debian.system_prep(debian_context(homelab, tmp_path)) if isinstance(op, Check))
    assert check.description == "kernel ready for kube-proxy and Flannel in nftables mode (>= 5.13, nf_tables)"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "uname").write_text("#!/bin/sh\necho 5.10.0-28-amd64\n")
    (fake / "uname").chmod(0o755)
    old = subprocess.run(["sh", "-c", debian.nftables_kernel_check()], capture_output=True, text=True, timeout=10,
                         env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert old.returncode == 1
    assert old.stderr.strip() == ("kernel 5.10.0-28-amd64 is older than 5.13, which kube-proxy's nftables mode "
                                  "needs: upgrade the kernel or set proxy_mode = \"iptables\" in hosts.toml")
    iptables = with_cluster(homelab, proxy_mode="iptables")
    assert not [op for op in debian.system_prep(debian_context(iptables, tmp_path)) if isinstance(op, Check)]
