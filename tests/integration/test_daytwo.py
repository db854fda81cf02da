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

import hashlib
import json
import os
import shlex
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standin_cues import calls, cue
from vmstation.app import Session, homelab_status

STANDINS = Path(__file__).resolve().parents[1] / "standins"
CONTROL, WORKER, SERVER = "masternode", "storagenodet3500", "homelab"
NEXT = "1.30.14"
KUBELET_UNIT = ("# stand-in unit for kubelet (tests/standins/README.md)\n[Unit]\nDescription=stand-in kubelet\n"
                "[Service]\nExecStart=/usr/local/bin/kubelet\n[Install]\nWantedBy=multi-user.target\n")
ADMIN_CONF = ("apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n"
              "    server: https://127.0.0.1:6443\n")


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
            (boxes[name].root / "etc/systemd/system/kubelet.service").write_text(KUBELET_UNIT)
        (boxes[CONTROL].root / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
        (boxes[CONTROL].root / "etc/kubernetes/admin.conf").write_text(ADMIN_CONF)
        (boxes[CONTROL].root / "etc/kubernetes/manifests/etcd.yaml").write_text("# stand-in: etcd runs here\n")
        cue(boxes, CONTROL, "nodes", f"{CONTROL} {WORKER}")
        yield boxes


@pytest.fixture(scope="module")
def inventory(daytwo_boxes, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("daytwo")
    release = workdir / "artifacts" / f"kubernetes-{NEXT}"      # the stand-ins of the next minor's binaries
    release.mkdir(parents=True)
    for tool in ("kubeadm", "kubectl"):
        shutil.copy2(STANDINS / tool, release / tool)
    kubelet = (STANDINS / "kubelet").read_text().replace(
        "$(cat /var/lib/vmstation-standin/version 2>/dev/null || echo v1.29.15)", f"v{NEXT}")
    (release / "kubelet").write_text(kubelet)
    (release / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((release / n).read_bytes()).hexdigest()}  {n}\n" for n in ("kubeadm", "kubelet", "kubectl")))
    return daytwo_boxes.write_inventory(
        workdir / "hosts.toml", host_extra={CONTROL: {"always_on": True}, WORKER: {"media_path": "/srv/media"}},
        cluster_extra={"debian": {"artifacts_dir": str(workdir / "artifacts")}})


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


# -- backup ----------------------------------------------------------------------------------------------------


def backups_of(inventory: Path) -> list[Path]:
    return sorted((inventory.parent / ".vmstation/artifacts/backups/debian").glob("etcd-*.db"))


def test_a_backup_is_fetched_0600_and_only_the_newest_are_kept(daytwo_boxes, inventory, monkeypatch):
    from vmstation.maintenance import take_backup

    taken = []
    for _ in range(3):
        result, pruned = take_backup(session(inventory, monkeypatch), keep=2)
        assert result.exit_code == 0, [(o.phase, o.host, o.status, o.message) for o in result.outcomes]
        taken.append(backups_of(inventory)[-1])
        while backups_of(inventory)[-1].name[5:20] == time.strftime("%Y%m%dT%H%M%S", time.gmtime()):
            time.sleep(0.05)      # the next stamp must name another second
    kept = backups_of(inventory)
    assert kept == taken[1:] and len(pruned) == 1
    for path in kept:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().startswith("stand-in etcd snapshot")
    on_host = list((daytwo_boxes[CONTROL].root / "var/lib/vmstation/backups").glob("etcd-*.db"))
    assert len(on_host) == 1 and stat.S_IMODE(on_host[0].stat().st_mode) == 0o600
    outcome = {(o.phase, o.host): o for o in result.outcomes}
    assert outcome[("backup.snapshot", SERVER)].steps[0].reason == "not needed (onlyif-check failed)"   # no etcd


def test_a_failing_snapshot_fails_the_backup_and_fetches_nothing(daytwo_boxes, inventory, monkeypatch):
    from vmstation.maintenance import take_backup

    before = backups_of(inventory)
    cue(daytwo_boxes, CONTROL, "snapshot", "fail")
    try:
        result, pruned = take_backup(session(inventory, monkeypatch), keep=2)
    finally:
        cue(daytwo_boxes, CONTROL, "snapshot", None)
    outcome = {(o.phase, o.host): o for o in result.outcomes}
    assert result.exit_code == 1 and pruned == []
    assert outcome[("backup.snapshot", CONTROL)].status == "failed"
    assert "stand-in etcdctl: snapshot fails on cue" in outcome[("backup.snapshot", CONTROL)].message
    assert outcome[("backup.fetch", CONTROL)].status == "blocked"
    assert backups_of(inventory) == before


def test_the_rke2_server_is_snapshotted_with_its_own_command_and_fetched_too(daytwo_boxes, inventory, monkeypatch):
    from vmstation.maintenance import take_backup

    root = daytwo_boxes[SERVER].root
    shutil.copy2(STANDINS / "rke2", root / "usr/local/bin/rke2")
    (root / "var/lib/rancher/rke2/server/db/etcd").mkdir(parents=True, exist_ok=True)
    result, _ = take_backup(session(inventory, monkeypatch), keep=2)
    assert result.exit_code == 0, [(o.phase, o.host, o.status, o.message) for o in result.outcomes]
    [fetched] = sorted((inventory.parent / ".vmstation/artifacts/backups/rke2").glob("etcd-*.db"))
    assert fetched.read_text() == "stand-in rke2 etcd snapshot, not etcd data\n"
    assert stat.S_IMODE(fetched.stat().st_mode) == 0o600
    assert calls(daytwo_boxes, SERVER) == ["etcd-snapshot /var/lib/vmstation/backups/rke2/vmstation"]


# -- certificates ----------------------------------------------------------------------------------------------


RKE2_SERVER_UNIT = ("# STAND-IN unit for rke2-server (tests/standins/README.md)\n[Unit]\nDescription=stand-in "
                    "rke2-server\n[Service]\nExecStart=/usr/local/bin/rke2 server\n")


@pytest.fixture
def rke2_server(daytwo_boxes) -> Iterator[None]:
    """SERVER as a running RKE2 server of stand-ins (rke2, its kubectl, rke2-server), put back afterwards."""
    root = daytwo_boxes[SERVER].root
    shutil.copy2(STANDINS / "rke2", root / "usr/local/bin/rke2")
    (root / "var/lib/rancher/rke2/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(STANDINS / "rke2-kubectl", root / "var/lib/rancher/rke2/bin/kubectl")
    (root / "etc/systemd/system/rke2-server.service").write_text(RKE2_SERVER_UNIT)
    status, text = as_root(daytwo_boxes, SERVER, "systemctl daemon-reload && systemctl start rke2-server && "
                                                 "until [ -e /etc/rancher/rke2/rke2.yaml ]; do sleep 0.1; done")
    assert status == 0, text
    try:
        yield
    finally:
        status, text = as_root(daytwo_boxes, SERVER, "systemctl stop rke2-server; rm -f /etc/rancher/rke2/rke2.yaml "
                                                     "/etc/systemd/system/rke2-server.service; systemctl daemon-reload")
        assert status == 0, text


def as_root(boxes, name: str, script: str) -> tuple[int, str]:
    from vmstation.testing.ssh_client import connect_checked, run

    client = connect_checked(boxes[name].address, boxes.known_hosts, boxes.client_key)
    try:
        return run(client, f"timeout 30 sh -c {shlex.quote(script)}", timeout=60)
    finally:
        client.close()


def renew(inventory: Path, monkeypatch, *args: str):
    from click.testing import CliRunner

    from vmstation.cli import main

    monkeypatch.setenv("VMSTATION_VAULT_PASSWORD", "")
    monkeypatch.delenv("VMSTATION_STATE_DIR", raising=False)
    return CliRunner().invoke(main, ["certs", "renew", *args, "--yes", "-i", str(inventory)])


def control_plane_untouched(boxes, inventory: Path) -> tuple:
    """What a kubeadm renewal changes: the stand-in's calls, the manifests (moved away and back: a new ctime),
    the admin.conf fetched to the operator's machine."""
    manifests = boxes[CONTROL].root / "etc/kubernetes/manifests"
    fetched = inventory.parent / ".vmstation/artifacts/debian/admin.conf"
    return (calls(boxes, CONTROL), sorted((p.name, p.stat().st_ctime_ns) for p in manifests.iterdir()),
            fetched.stat().st_mtime_ns if fetched.exists() else None)


def test_certs_renew_debian_renews_restarts_the_static_pods_fetches_admin_conf_and_leaves_rke2_alone(
        daytwo_boxes, inventory, monkeypatch, rke2_server):
    in_ten_days = time.strftime("%b %d, %Y 00:00 UTC", time.gmtime(time.time() + 86400 * 10))
    cue(daytwo_boxes, CONTROL, "certs-expire", in_ten_days)
    soon = homelab_status(session(inventory, monkeypatch))
    assert soon.clusters[0].certificates == "warn" and soon.healthy
    assert soon.clusters[0].certificates_note.endswith("days): run `vmstation certs renew debian`")
    server_before = calls(daytwo_boxes, SERVER)
    result = renew(inventory, monkeypatch, "debian")
    assert result.exit_code == 0, result.output
    assert "certs.renew" in result.output and "certs.rke2-rotate" not in result.output
    assert "certs-renew all" in calls(daytwo_boxes, CONTROL)
    manifests = daytwo_boxes[CONTROL].root / "etc/kubernetes/manifests"
    assert (manifests / "etcd.yaml").exists()                                   # moved away and back
    assert not (daytwo_boxes[CONTROL].root / "etc/kubernetes/vmstation-manifests-parked").exists()
    fetched = inventory.parent / ".vmstation/artifacts/debian/admin.conf"
    assert stat.S_IMODE(fetched.stat().st_mode) == 0o600
    assert homelab_status(session(inventory, monkeypatch)).clusters[0].certificates == "ok"
    assert calls(daytwo_boxes, SERVER) == server_before               # no rotation, rke2-server not restarted


def test_certs_renew_rke2_rotates_the_server_and_leaves_the_debian_control_plane_alone(
        daytwo_boxes, inventory, monkeypatch, rke2_server):
    debian_before = control_plane_untouched(daytwo_boxes, inventory)
    server_before = calls(daytwo_boxes, SERVER)
    planned = renew(inventory, monkeypatch, "rke2", "--plan")
    assert planned.exit_code == 0, planned.output
    assert "certs.rke2-rotate" in planned.output and "certs.renew" not in planned.output
    assert calls(daytwo_boxes, SERVER) == server_before

    result = renew(inventory, monkeypatch, "rke2")
    assert result.exit_code == 0, result.output
    rotated = calls(daytwo_boxes, SERVER)[len(server_before):]      # stopped, rotated, started again
    assert len(rotated) == 2 and rotated[0] == "certificate rotate" and rotated[1].startswith("server started ")
    assert control_plane_untouched(daytwo_boxes, inventory) == debian_before


def test_an_expired_control_plane_is_refused_by_the_deploy(daytwo_boxes, inventory, monkeypatch):
    from vmstation.app import run_target

    cue(daytwo_boxes, CONTROL, "certs-expire", "Jan 01, 2026 00:00 UTC")
    try:
        result = run_target(session(inventory, monkeypatch), "deploy-debian", only=("certs.expiry",))
    finally:
        cue(daytwo_boxes, CONTROL, "certs-expire", None)
    [outcome] = result.outcomes
    assert outcome.status == "failed" and result.exit_code == 1
    assert "certificates have expired (admin.conf expired on 2026-01-01" in outcome.message


# -- upgrade ---------------------------------------------------------------------------------------------------


def test_an_upgrade_that_fails_on_a_worker_stops_there_and_resume_finishes_it(daytwo_boxes, inventory, monkeypatch):
    from vmstation.maintenance import describe_stop, upgrade

    cue(daytwo_boxes, WORKER, "upgrade-node", "fail")
    try:
        stopped = upgrade(session(inventory, monkeypatch), "kubeadm", "1.30.x")
    finally:
        cue(daytwo_boxes, WORKER, "upgrade-node", None)
    assert [(s.from_version, s.to_version) for s in stopped.chain] == [("1.29.15", NEXT)]
    assert [(p.where, p.result.exit_code) for p in stopped.parts] == [(f"control plane {CONTROL}", 0),
                                                                      (f"worker {WORKER}", 1)]
    assert f"upgrade-apply v{NEXT}" in calls(daytwo_boxes, CONTROL)
    message = describe_stop(stopped, "1.30.x")
    assert message.startswith(f"stopped at step 1 of 1 (1.29.15 -> {NEXT}), worker {WORKER}: upgrade-debian.workers "
                              f"@ {WORKER}: run kubeadm upgrade node failed (exit 1): stand-in kubeadm: upgrade-node "
                              "fails on cue")
    assert message.endswith("vmstation upgrade debian --to 1.30.x --resume")
    journal = stopped.parts[-1].result.journal_path
    assert json.loads(Path(journal).read_text().splitlines()[-1])["status"] == "failed"
    assert len(backups_of(inventory)) >= 1

    resumed = upgrade(session(inventory, monkeypatch), "kubeadm", "1.30.x", resume=True)
    assert resumed.exit_code == 0, [(o.phase, o.host, o.status, o.message) for p in resumed.parts
                                    for o in p.result.outcomes]
    assert [(s.from_version, s.to_version) for s in resumed.chain] == [("1.29.15", NEXT)]   # the worker's kubelet
    control = {o.phase: o for o in resumed.parts[0].result.outcomes}
    assert control["upgrade-debian.control-plane"].changed == 0                  # applied already: not again
    assert calls(daytwo_boxes, CONTROL).count(f"upgrade-apply v{NEXT}") == 1
    assert f"uncordon {WORKER}" in calls(daytwo_boxes, CONTROL)
    assert (daytwo_boxes[CONTROL].root / f"var/lib/vmstation-standin/kubelet-{WORKER}").read_text().strip() == \
        f"v{NEXT}"
    again = upgrade(session(inventory, monkeypatch), "kubeadm", "1.30.x")
    assert again.chain == [] and again.parts == []


def test_an_upgrade_plan_shows_every_part_of_the_next_step_and_changes_nothing(daytwo_boxes, inventory, monkeypatch):
    from vmstation.maintenance import upgrade

    before = calls(daytwo_boxes, CONTROL), calls(daytwo_boxes, WORKER)
    planned = upgrade(session(inventory, monkeypatch), "kubeadm", "1.31", plan=True)
    assert [(s.from_version, s.to_version) for s in planned.chain] == [(NEXT, "1.31.14")]
    assert [p.where for p in planned.parts] == [f"control plane {CONTROL}", f"worker {WORKER}"]
    assert all(p.result.exit_code == 0 for p in planned.parts), [
        (o.phase, o.host, o.status, o.message) for p in planned.parts for o in p.result.outcomes]
    labels = [s.label for p in planned.parts for o in p.result.outcomes for s in o.steps]
    assert "run kubeadm upgrade apply v1.31.14" in labels and f"drain node {WORKER} (on {CONTROL})" in labels
    assert (calls(daytwo_boxes, CONTROL), calls(daytwo_boxes, WORKER)) == before
    assert planned.pruned == []


@pytest.mark.parametrize("api_server, worker_kubelet, to, refusal", [
    # a worker left powered off while the control plane moved on to 1.33: the chain starts at its 1.29, and the
    # API server stays at 1.33, four minors ahead of it (the policy allows three)
    ("v1.33.13", "v1.29.15", "1.34", f"node {WORKER} runs kubelet v1.29.15; once the API server runs 1.33.13 (it "
                                     "runs v1.33.13 now) that is 4 minors older, and the Version Skew Policy allows 3"),
    # a worker whose kubelet someone upgraded by hand ahead of the control plane
    ("v1.30.14", "v1.31.14", "1.31", f"node {WORKER} runs kubelet v1.31.14, newer than the API server (v1.30.14)"),
])
def test_a_kubelet_outside_the_skew_policy_fails_the_preflight_and_changes_nothing(
        daytwo_boxes, inventory, monkeypatch, api_server, worker_kubelet, to, refusal):
    from vmstation.maintenance import describe_stop, upgrade

    state = daytwo_boxes[CONTROL].root / "var/lib/vmstation-standin"
    manifest = daytwo_boxes[CONTROL].root / "etc/kubernetes/manifests/kube-apiserver.yaml"
    cluster = {state / "version": api_server + "\n", state / f"kubelet-{CONTROL}": api_server + "\n",
               state / f"kubelet-{WORKER}": worker_kubelet + "\n",
               manifest: f"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: "
                         f"registry.k8s.io/kube-apiserver:{api_server}\n"}
    saved = {path: path.read_text() if path.exists() else None for path in cluster}
    before = calls(daytwo_boxes, CONTROL), calls(daytwo_boxes, WORKER), backups_of(inventory)
    try:
        for path, text in cluster.items():
            path.write_text(text)
        stopped = upgrade(session(inventory, monkeypatch), "kubeadm", to)
    finally:
        for path, text in saved.items():
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(text)
    assert [(p.where, p.result.exit_code) for p in stopped.parts] == [(f"control plane {CONTROL}", 1)]
    outcome = {o.phase: o for o in stopped.parts[0].result.outcomes}
    assert outcome["upgrade-debian.preflight"].status == "failed"
    assert outcome["upgrade-debian.preflight"].message.startswith(refusal)
    assert outcome["upgrade-debian.preflight"].message.endswith("nothing was changed (step to "
                                                                f"{stopped.chain[0].to_version})")
    assert outcome["upgrade-debian.snapshot"].status == "blocked"
    assert describe_stop(stopped, to).startswith(f"stopped at step 1 of {len(stopped.chain)} "
                                                 f"({stopped.chain[0].from_version} -> {stopped.chain[0].to_version}), "
                                                 f"control plane {CONTROL}: upgrade-debian.preflight @ {CONTROL}: "
                                                 f"{refusal}")
    assert (calls(daytwo_boxes, CONTROL), calls(daytwo_boxes, WORKER), backups_of(inventory)) == before
    assert not list((daytwo_boxes[CONTROL].root / "var/lib/vmstation-standin").glob("cordoned-*"))
