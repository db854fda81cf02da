"""`vmstation upgrade rke2` and the RKE2 certificate check on boxes, with STAND-INS (tests/standins/) for rke2, its
install.sh and its kubectl.

The stand-ins are scripts that succeed or fail on cue; they are not RKE2 and this module proves nothing about it.
It proves what the engine does around them: the snapshot taken and fetched (0600) first, then the server, then the
agent, each with the step's release installed by install.sh (air-gapped, so the tarball method) and its service
restarted; a failing install on the agent stops the chain there, says where, and `--resume` finishes it without
touching the server again; `--plan` changes nothing; a server whose certificate has expired makes deploy-rke2 and
upgrade-rke2 stop before anything changes.

The boxes start "deployed" at OLD: the stand-in rke2 in /usr/local/bin and its units where the tarball puts them,
RKE2's kubectl stand-in on the server, the agent's config.yaml naming the server, certificates in the server's tls
directory (real ones, made here with `cryptography`). The stand-in rke2-server answers registrations on port 9345;
the stand-in agent registers its node's release there at each start, so the server's kubectl lists each node at
the release it runs (the view the upgrade's wait and `--resume` read).

Boxes of its own: prefix vmsu, 10.77.44.0/24, bridge vmsu0, apt proxy port 3155.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.selfsigned import certificate_pem
from tests.standin_cues import calls, cue
from vmstation import versions
from vmstation.app import Session, run_target

STANDINS = Path(__file__).resolve().parents[1] / "standins"
SERVER, AGENT = "homelab", "compute1"
OLD, NEW, TO = versions.KUBERNETES_RELEASES["1.34"].rke2, versions.KUBERNETES_RELEASES["1.35"].rke2, "v1.35"
TLS = "var/lib/rancher/rke2/server/tls"
UNIT = ("# STAND-IN unit for rke2-{kind} (tests/standins/README.md)\n[Unit]\nDescription=stand-in for rke2-{kind} "
        "(tests only)\n[Service]\nExecStart=/usr/local/bin/rke2 {kind}\n[Install]\nWantedBy=multi-user.target\n")
RELEASE_FILES = ("install.sh", "rke2.linux-amd64.tar.gz", "rke2-images.linux-amd64.tar.zst", "sha256sum-amd64.txt")


@pytest.fixture(scope="module")
def rke2_boxes() -> Iterator[object]:
    if os.geteuid() != 0:
        pytest.skip("boxes need root: network namespaces, a bridge and systemd-nspawn")
    from vmstation.testing.boxes import BoxSet

    with BoxSet(names=[SERVER, AGENT], prefix="vmsu", subnet="10.77.44.0/24", bridge="vmsu0",
                proxy_port=3155) as boxes:
        for name, kind in ((SERVER, "server"), (AGENT, "agent")):
            _deployed_at_old(boxes[name].root, kind)
        (boxes[AGENT].root / "etc/rancher/rke2/config.yaml").write_text(
            f"server: \"https://{boxes[SERVER].address}:9345\"\nnode-name: {AGENT}\n")
        write_certificates(boxes, expired=False)
        for name, unit in ((SERVER, "rke2-server"), (AGENT, "rke2-agent")):
            status, text = as_root(boxes, name, f"systemctl daemon-reload && systemctl enable --now {unit}")
            assert status == 0, text
        assert wait_for_node(boxes, AGENT, OLD)
        yield boxes


def _deployed_at_old(root: Path, kind: str) -> None:
    """What an air-gapped install of OLD (the tarball method) and a deploy leave on a node, as stand-ins."""
    shutil.copy2(STANDINS / "rke2", root / "usr/local/bin/rke2")
    units = root / "usr/local/lib/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    (units / f"rke2-{kind}.service").write_text(UNIT.format(kind=kind))
    state = root / "var/lib/vmstation-standin"
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    (state / "rke2-version").write_text(OLD + "\n")
    (root / "etc/rancher/rke2").mkdir(parents=True, exist_ok=True)
    if kind == "server":
        (root / "var/lib/rancher/rke2/bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(STANDINS / "rke2-kubectl", root / "var/lib/rancher/rke2/bin/kubectl")
        (root / "var/lib/rancher/rke2/server/db/etcd").mkdir(parents=True, exist_ok=True)
        (root / TLS).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def inventory(rke2_boxes, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("daytwo-rke2")
    release = workdir / "rke2-release" / NEW                  # upgrade-rke2 takes a step's files from here
    release.mkdir(parents=True)
    shutil.copy2(STANDINS / "rke2-install.sh", release / "install.sh")
    (release / "rke2.linux-amd64.tar.gz").write_bytes(release_tarball())
    (release / "rke2-images.linux-amd64.tar.zst").write_bytes(b"stand-in, not the RKE2 images\n")
    (release / "sha256sum-amd64.txt").write_text("".join(
        f"{hashlib.sha256((release / n).read_bytes()).hexdigest()}  {n}\n" for n in RELEASE_FILES[1:3]))
    return rke2_boxes.write_inventory(
        workdir / "hosts.toml", roles={SERVER: ("server",), AGENT: ("agent",)},
        clusters={SERVER: "rke2", AGENT: "rke2"},
        cluster_extra={"rke2": {"version": OLD, "artifacts_dir": str(workdir / "rke2-release"), "selinux": False}})


def release_tarball() -> bytes:
    """A tar.gz laid out as RKE2's release tarball (bin/rke2, lib/systemd/system/rke2-*.service), of stand-ins."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        members = {"bin/rke2": ((STANDINS / "rke2").read_bytes(), 0o755)}
        members.update({f"lib/systemd/system/rke2-{k}.service": (UNIT.format(kind=k).encode(), 0o644)
                        for k in ("server", "agent")})
        for name, (content, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


# -- helpers ---------------------------------------------------------------------------------------------------


def as_root(boxes, name: str, script: str) -> tuple[int, str]:
    from vmstation.testing.ssh_client import connect_checked, run

    client = connect_checked(boxes[name].address, boxes.known_hosts, boxes.client_key)
    try:
        return run(client, script, timeout=60)
    finally:
        client.close()


def wait_for_node(boxes, node: str, release: str, seconds: float = 20.0) -> bool:
    """The server's stand-in kubectl lists ``node`` at ``release`` (the agent registers when it starts)."""
    status, _ = as_root(boxes, SERVER, f"end=$(( $(date +%s) + {int(seconds)} )); until grep -qx '{release}' "
                                       f"/var/lib/vmstation-standin/nodes/{node} 2>/dev/null; do "
                                       "[ $(date +%s) -lt $end ] || exit 1; sleep 0.2; done")
    return status == 0


def write_certificates(boxes, expired: bool) -> None:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    tls = boxes[SERVER].root / TLS
    admin = now - timedelta(days=3) if expired else now + timedelta(days=200)
    (tls / "client-admin.crt").write_bytes(certificate_pem("system:admin", admin))
    (tls / "serving-kube-apiserver.crt").write_bytes(certificate_pem("kube-apiserver", now + timedelta(days=300)))
    (tls / "server-ca.crt").write_bytes(certificate_pem("rke2-server-ca", now + timedelta(days=3000)))


def release_on(boxes, box: str) -> str:
    return (boxes[box].root / "var/lib/vmstation-standin/rke2-version").read_text().strip()


def session(inventory: Path, monkeypatch) -> Session:
    # Air-gapped install.sh files must be pinned in versions.py: pin the stand-in for this test only.
    stand_in = hashlib.sha256((STANDINS / "rke2-install.sh").read_bytes()).hexdigest()
    monkeypatch.setitem(versions.RKE2_INSTALL_SCRIPTS, stand_in, "the tests' stand-in install.sh (not RKE2)")
    monkeypatch.setenv("VMSTATION_VAULT_PASSWORD", "")
    monkeypatch.delenv("VMSTATION_STATE_DIR", raising=False)
    return Session(inventory_path=str(inventory))


def backups_of(inventory: Path) -> list[Path]:
    return sorted((inventory.parent / ".vmstation/artifacts/backups/rke2").glob("etcd-*.db"))


def failures(parts) -> list[tuple]:
    return [(o.phase, o.host, o.status, o.message) for p in parts for o in p.result.outcomes if not o.succeeded]


# -- plan ------------------------------------------------------------------------------------------------------


def test_an_upgrade_plan_shows_the_server_then_the_agent_and_changes_nothing(rke2_boxes, inventory, monkeypatch):
    from vmstation.maintenance import upgrade

    before = {n: (calls(rke2_boxes, n), release_on(rke2_boxes, n)) for n in (SERVER, AGENT)}
    planned = upgrade(session(inventory, monkeypatch), "rke2", TO, plan=True)
    assert [(s.from_version, s.to_version) for s in planned.chain] == [(OLD, NEW)]
    assert [p.where for p in planned.parts] == [f"server {SERVER}", f"agent {AGENT}"]
    assert all(p.result.exit_code == 0 for p in planned.parts), failures(planned.parts)
    labels = [s.label for p in planned.parts for o in p.result.outcomes for s in o.steps]
    for kind in ("server", "agent"):
        assert f"install RKE2 {NEW} (air-gapped from {inventory.parent / 'rke2-release' / NEW}, {kind})" in labels
        assert f"service rke2-{kind}.service" in labels
    assert {n: (calls(rke2_boxes, n), release_on(rke2_boxes, n)) for n in (SERVER, AGENT)} == before
    assert backups_of(inventory) == [] and planned.pruned == []


# -- certificates ----------------------------------------------------------------------------------------------


def test_an_expired_server_certificate_stops_deploy_and_upgrade_before_anything_changes(rke2_boxes, inventory,
                                                                                        monkeypatch):
    from vmstation.maintenance import describe_stop, upgrade

    before = {n: (calls(rke2_boxes, n), release_on(rke2_boxes, n)) for n in (SERVER, AGENT)}
    write_certificates(rke2_boxes, expired=True)
    try:
        deploy = run_target(session(inventory, monkeypatch), "deploy-rke2")
        refused = upgrade(session(inventory, monkeypatch), "rke2", TO)
    finally:
        write_certificates(rke2_boxes, expired=False)
    outcomes = {(o.phase, o.host): o for o in deploy.outcomes}
    expiry = outcomes.pop(("certs.rke2-expiry", SERVER))
    assert expiry.status == "failed" and deploy.exit_code == 1
    assert expiry.message.startswith("the RKE2 server's certificates have expired (client-admin.crt expired on ")
    assert "run `vmstation certs renew rke2`, or restart rke2-server on this server: RKE2 renews expired " \
           "certificates whenever it starts); this deploy restarts rke2-server only when its config.yaml changes" \
           in expiry.message
    assert {o.status for o in outcomes.values()} == {"blocked"} and deploy.changed == 0

    assert [(p.where, p.result.exit_code) for p in refused.parts] == [(f"server {SERVER}", 1)]
    stop = describe_stop(refused, TO)
    assert stop.startswith(f"stopped at step 1 of 1 ({OLD} -> {NEW}), server {SERVER}: upgrade-rke2.preflight @ "
                           f"{SERVER}: the RKE2 server's certificates have expired (client-admin.crt expired on ")
    assert "the upgrade checks the nodes and takes its etcd snapshot through them before it restarts anything" in stop
    phases = {o.phase: o.status for o in refused.parts[0].result.outcomes}
    assert phases == {"upgrade-rke2.preflight": "failed", "upgrade-rke2.snapshot": "blocked",
                      "upgrade-rke2.fetch": "blocked", "upgrade-rke2.node": "blocked"}
    assert {n: (calls(rke2_boxes, n), release_on(rke2_boxes, n)) for n in (SERVER, AGENT)} == before
    assert backups_of(inventory) == []


def test_a_valid_certificate_passes_and_an_expired_stopped_server_is_only_a_warning(rke2_boxes, inventory,
                                                                                     monkeypatch):
    valid = run_target(session(inventory, monkeypatch), "deploy-rke2", only=("certs.rke2-expiry",))
    [outcome] = valid.outcomes
    assert outcome.status == "ok" and valid.exit_code == 0
    assert [s.reason for s in outcome.steps] == [f"soonest: client-admin.crt on "
                                                 f"{(datetime.now(timezone.utc) + timedelta(days=200)):%Y-%m-%d} "
                                                 f"(200 days)"]
    status, text = as_root(rke2_boxes, SERVER, "systemctl stop rke2-server")
    assert status == 0, text
    write_certificates(rke2_boxes, expired=True)
    try:
        stopped = run_target(session(inventory, monkeypatch), "deploy-rke2", only=("certs.rke2-expiry",))
    finally:
        write_certificates(rke2_boxes, expired=False)
        status, text = as_root(rke2_boxes, SERVER, "systemctl start rke2-server")
    assert status == 0, text
    [step] = stopped.outcomes[0].steps
    assert stopped.exit_code == 0 and step.status == "warn"
    assert step.reason.endswith("rke2-server is not running: this run starts it, and RKE2 renews expired "
                                "certificates when it starts")


# -- upgrade ---------------------------------------------------------------------------------------------------


def test_a_failing_agent_install_stops_the_chain_there_and_resume_finishes_it(rke2_boxes, inventory, monkeypatch):
    from vmstation.maintenance import describe_stop, upgrade

    assert wait_for_node(rke2_boxes, SERVER, OLD) and wait_for_node(rke2_boxes, AGENT, OLD)
    seen = {n: len(calls(rke2_boxes, n)) for n in (SERVER, AGENT)}
    cue(rke2_boxes, AGENT, "install", "fail")
    try:
        stopped = upgrade(session(inventory, monkeypatch), "rke2", TO)
    finally:
        cue(rke2_boxes, AGENT, "install", None)
    assert [(s.from_version, s.to_version) for s in stopped.chain] == [(OLD, NEW)]
    assert [(p.where, p.result.exit_code) for p in stopped.parts] == [(f"server {SERVER}", 0), (f"agent {AGENT}", 1)]
    server = stopped.parts[0].result.outcomes
    assert [(o.phase, o.status) for o in server] == [
        ("upgrade-rke2.preflight", "ok"), ("upgrade-rke2.snapshot", "changed"), ("upgrade-rke2.fetch", "changed"),
        ("upgrade-rke2.node", "changed")]
    # The snapshot first, then the release installed by install.sh (air-gapped: the tarball), then the restart.
    assert calls(rke2_boxes, SERVER)[seen[SERVER]:] == [
        "etcd-snapshot /var/lib/vmstation/backups/rke2/vmstation", f"install {NEW} server tar",
        f"server started {NEW}"]
    [fetched] = backups_of(inventory)
    assert stat.S_IMODE(fetched.stat().st_mode) == 0o600
    assert fetched.read_text() == "stand-in rke2 etcd snapshot, not etcd data\n"
    assert release_on(rke2_boxes, SERVER) == NEW and release_on(rke2_boxes, AGENT) == OLD
    assert calls(rke2_boxes, AGENT)[seen[AGENT]:] == []        # install.sh failed before it did anything

    message = describe_stop(stopped, TO)
    assert message.startswith(f"stopped at step 1 of 1 ({OLD} -> {NEW}), agent {AGENT}: upgrade-rke2.node @ {AGENT}: "
                              f"install RKE2 {NEW} (air-gapped from ")
    assert "stand-in rke2 install.sh: fails on cue" in message
    assert message.endswith(f"vmstation upgrade rke2 --to {TO} --resume")
    journal = stopped.parts[-1].result.journal_path
    assert json.loads(Path(journal).read_text().splitlines()[-1])["status"] == "failed"

    seen = {n: len(calls(rke2_boxes, n)) for n in (SERVER, AGENT)}
    resumed = upgrade(session(inventory, monkeypatch), "rke2", TO, resume=True)
    assert resumed.exit_code == 0, failures(resumed.parts)
    assert [(s.from_version, s.to_version) for s in resumed.chain] == [(OLD, NEW)]    # the agent's kubelet
    server_node = next(o for o in resumed.parts[0].result.outcomes if o.phase == "upgrade-rke2.node")
    assert server_node.changed == 0                                                   # at NEW already: not again
    assert [c for c in calls(rke2_boxes, SERVER)[seen[SERVER]:] if not c.startswith("etcd-snapshot")] == []
    assert calls(rke2_boxes, AGENT)[seen[AGENT]:] == [f"install {NEW} agent tar", f"agent started {NEW}"]
    assert release_on(rke2_boxes, AGENT) == NEW and wait_for_node(rke2_boxes, AGENT, NEW, seconds=0)

    again = upgrade(session(inventory, monkeypatch), "rke2", TO)
    assert again.chain == [] and again.parts == []
