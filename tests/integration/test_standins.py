"""deploy-debian's phases 4 to 8 and deploy-rke2's phases 2 to 6 on boxes, with STAND-INS (tests/standins/)
for kubeadm, kubectl, kubelet and RKE2's installer.

The stand-ins are scripts that succeed, fail or hang on cue; they are not Kubernetes and this module proves
nothing about Kubernetes or RKE2. It proves the engine's control flow where the real binaries cannot run
here: a failing ``kubeadm join`` (or RKE2 install) is ``failed`` (not ``changed``) and blocks what needs it;
a hanging one ends at its deadline; a second run skips init and join on their own evidence (admin.conf,
kubelet.conf) and the install on ``rke2 --version``; the join command travels from the control plane to
the worker without being shown anywhere.

Boxes of its own (prefix vmsq, 10.77.12.0/24, apt proxy port 3152), so nothing it installs reaches the
session-wide boxes of the other tests. The stand-ins reach the boxes the way real air-gapped binaries would:
as the artifacts directory's files, checked against its SHA256SUMS and placed by debian.kube-binaries.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.standin_cues import cue
from vmstation import versions
from vmstation.app import Session, run_target

STANDINS = Path(__file__).resolve().parents[1] / "standins"
KUBE = ("kubeadm", "kubelet", "kubectl")
PHASES_4_TO_8 = ("debian.kube-binaries", "debian.kubeadm-config", "debian.control-plane-init",
                 "debian.worker-join", "debian.flannel", "debian.nodes-ready", "debian.jellyfin-storage",
                 "debian.apps", "debian.kubeconfig")
RKE2_PHASES_2_TO_6 = ("rke2.install", "rke2.configure", "rke2.start", "rke2.monitoring", "rke2.artifacts")
RKE2_RELEASE = {"rke2.linux-amd64.tar.gz": b"stand-in, not the RKE2 release tarball\n",
                "rke2-images.linux-amd64.tar.zst": b"stand-in, not the RKE2 images\n"}
CONTROL, WORKER, SERVER = "masternode", "storagenodet3500", "homelab"


@pytest.fixture(scope="module")
def standin_boxes() -> Iterator[object]:
    import os

    if os.geteuid() != 0:
        pytest.skip("boxes need root: network namespaces, a bridge and systemd-nspawn")
    from vmstation.testing.boxes import BoxSet

    with BoxSet(names=[CONTROL, WORKER, SERVER], prefix="vmsq", subnet="10.77.12.0/24", bridge="vmsq0",
                proxy_port=3152) as boxes:
        yield boxes


@pytest.fixture(scope="module")
def inventory(standin_boxes, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("standins")
    kubernetes = workdir / "artifacts" / "kubernetes"
    kubernetes.mkdir(parents=True)
    for name in KUBE:
        shutil.copy2(STANDINS / name, kubernetes / name)
    (kubernetes / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((kubernetes / n).read_bytes()).hexdigest()}  {n}\n" for n in KUBE))
    release = workdir / "rke2-release"
    release.mkdir()
    shutil.copy2(STANDINS / "rke2-install.sh", release / "install.sh")
    for name, content in RKE2_RELEASE.items():
        (release / name).write_bytes(content)
    (release / "sha256sum-amd64.txt").write_text("".join(
        f"{hashlib.sha256(content).hexdigest()}  {name}\n" for name, content in RKE2_RELEASE.items()))
    path = standin_boxes.write_inventory(
        workdir / "hosts.toml", host_extra={CONTROL: {"always_on": True}, WORKER: {"media_path": "/srv/media"}},
        cluster_extra={"debian": {"artifacts_dir": str(workdir / "artifacts")},
                       "rke2": {"artifacts_dir": str(release), "selinux": False}})   # Debian boxes: no SELinux
    (standin_boxes[WORKER].root / "srv/media").mkdir(parents=True, exist_ok=True)
    cue(standin_boxes, CONTROL, "nodes", f"{CONTROL} {WORKER}")
    return path


def recorded(boxes, box: str, name: str) -> list[str]:
    path = boxes[box].root / "var/lib/vmstation-standin" / name
    return path.read_text().split() if path.exists() else []


def deploy(inventory: Path, monkeypatch, **options):
    monkeypatch.setenv("VMSTATION_VAULT_PASSWORD", "")
    monkeypatch.delenv("VMSTATION_STATE_DIR", raising=False)
    return run_target(Session(inventory_path=str(inventory)), "deploy-debian", only=PHASES_4_TO_8,
                      limit=(CONTROL, WORKER), **options)


def deploy_rke2(inventory: Path, monkeypatch, **options):
    # Air-gapped install.sh files must be pinned in versions.py: pin the stand-in for this run only.
    stand_in = hashlib.sha256((STANDINS / "rke2-install.sh").read_bytes()).hexdigest()
    monkeypatch.setitem(versions.RKE2_INSTALL_SCRIPTS, stand_in, "the tests' stand-in install.sh (not RKE2)")
    monkeypatch.setenv("VMSTATION_VAULT_PASSWORD", "")
    monkeypatch.delenv("VMSTATION_STATE_DIR", raising=False)
    return run_target(Session(inventory_path=str(inventory)), "deploy-rke2", only=RKE2_PHASES_2_TO_6,
                      limit=(SERVER,), **options)


def phase_outcome(result, phase: str):
    return next(o for o in result.outcomes if o.phase == phase)


def statuses(result) -> dict[tuple[str, str], str]:
    return {(o.phase, o.host): o.status for o in result.outcomes}


def shown(result, inventory: Path) -> str:
    """Everything the run showed or kept: messages, step reasons and diffs, and every journal line."""
    texts = [o.message for o in result.outcomes]
    texts += [f"{s.label} {s.reason} {s.diff}" for o in result.outcomes for s in o.steps]
    journals = (inventory.parent / ".vmstation" / "runs").glob("*.jsonl")
    return "\n".join(texts + [p.read_text() for p in journals])


def test_a_failing_join_is_failed_and_blocks_what_needs_it(standin_boxes, inventory, monkeypatch):
    cue(standin_boxes, WORKER, "join", "fail")
    result = deploy(inventory, monkeypatch)
    got = statuses(result)
    assert result.exit_code == 1
    assert got[("debian.control-plane-init", CONTROL)] == "changed"
    join = next(o for o in result.outcomes if (o.phase, o.host) == ("debian.worker-join", WORKER))
    assert join.status == "failed"
    assert join.message == ("run kubeadm join (then remove the file holding the token) failed (exit 1): "
                            "stand-in kubeadm: join fails on cue")
    assert got[("debian.nodes-ready", CONTROL)] == "blocked"
    assert got[("debian.apps", CONTROL)] == "blocked"
    assert not (standin_boxes[WORKER].root / "etc/kubernetes/kubelet.conf").exists()
    issued = recorded(standin_boxes, CONTROL, "tokens-issued")
    assert issued and all(token not in shown(result, inventory) for token in issued)


def test_a_hanging_join_ends_at_its_deadline(standin_boxes, inventory, monkeypatch):
    cue(standin_boxes, WORKER, "join", "hang")
    started = time.monotonic()
    result = deploy(inventory, monkeypatch, step_deadline=4)
    assert time.monotonic() - started < 60
    join = next(o for o in result.outcomes if (o.phase, o.host) == ("debian.worker-join", WORKER))
    assert join.status == "failed"
    assert join.message.startswith("run kubeadm join (then remove the file holding the token) did not end within "
                                   "its deadline of 4s (stopped)")
    assert statuses(result)[("debian.nodes-ready", CONTROL)] == "blocked"
    assert result.exit_code == 1


def test_the_join_travels_from_the_control_plane_unseen_and_a_second_run_skips_init_and_join(
        standin_boxes, inventory, monkeypatch):
    cue(standin_boxes, WORKER, "join", None)
    first = deploy(inventory, monkeypatch)
    got = statuses(first)
    assert first.exit_code == 0, [(o.phase, o.host, o.status, o.message) for o in first.outcomes]
    assert got[("debian.worker-join", WORKER)] == "changed"
    assert got[("debian.nodes-ready", CONTROL)] == "ok" and got[("debian.apps", CONTROL)] == "changed"
    used = recorded(standin_boxes, WORKER, "joined-with-token")
    issued = recorded(standin_boxes, CONTROL, "tokens-issued")
    assert len(used) == 1 and used[0] == issued[-1]          # the control plane's token, on the worker
    assert not (standin_boxes[WORKER].root / "etc/kubernetes/kubeadm-join.yaml").exists()
    assert all(token not in shown(first, inventory) for token in issued)

    second = deploy(inventory, monkeypatch)
    assert second.exit_code == 0 and second.changed == 0
    init = next(o for o in second.outcomes if o.phase == "debian.control-plane-init")
    assert {s.label: s.reason for s in init.steps}["run kubeadm init"] == "/etc/kubernetes/admin.conf exists"
    join = next(o for o in second.outcomes if o.phase == "debian.worker-join")
    assert join.status == "ok" and join.steps == []          # kubelet.conf is there: nothing asked, nothing run
    assert recorded(standin_boxes, CONTROL, "tokens-issued") == issued   # no new token was minted
    assert recorded(standin_boxes, CONTROL, "calls").count("init") == 1


# -- deploy-rke2, phases 2 to 6 -----------------------------------------------------------------------------------


def test_a_failing_rke2_install_is_failed_and_blocks_start_and_monitoring(standin_boxes, inventory, monkeypatch):
    cue(standin_boxes, SERVER, "install", "fail")
    result = deploy_rke2(inventory, monkeypatch)
    assert result.exit_code == 1
    install = phase_outcome(result, "rke2.install")
    assert install.status == "failed"
    assert install.message.endswith("failed (exit 1): stand-in rke2 install.sh: fails on cue")
    assert phase_outcome(result, "rke2.configure").status == "changed"
    assert phase_outcome(result, "rke2.start").status == "blocked"
    assert phase_outcome(result, "rke2.monitoring").status == "blocked"
    assert phase_outcome(result, "rke2.artifacts").status in ("changed", "ok")   # needs configure only


def test_a_hanging_rke2_install_ends_at_its_deadline(standin_boxes, inventory, monkeypatch):
    cue(standin_boxes, SERVER, "install", "hang")
    started = time.monotonic()
    result = deploy_rke2(inventory, monkeypatch, step_deadline=4)
    assert time.monotonic() - started < 60
    install = phase_outcome(result, "rke2.install")
    assert install.status == "failed" and "did not end within its deadline of 4s (stopped)" in install.message
    assert phase_outcome(result, "rke2.start").status == "blocked"


def test_rke2_phases_2_to_6_finish_and_a_second_run_changes_nothing(standin_boxes, inventory, monkeypatch):
    cue(standin_boxes, SERVER, "install", None)
    first = deploy_rke2(inventory, monkeypatch)
    assert first.exit_code == 0, [(o.phase, o.status, o.message) for o in first.outcomes]
    got = {o.phase: o.status for o in first.outcomes}
    assert got.pop("rke2.configure") in ("changed", "ok")    # ok when the failing runs above placed it already
    assert got == {"rke2.install": "changed", "rke2.start": "changed", "rke2.monitoring": "changed",
                   "rke2.artifacts": "changed"}
    assert (standin_boxes[SERVER].root / "etc/rancher/rke2/config.yaml").stat().st_mode & 0o777 == 0o600
    kubeconfig = inventory.parent / ".vmstation" / "artifacts" / SERVER / "rke2.yaml"
    assert f"https://{standin_boxes[SERVER].address}:6443" in kubeconfig.read_text()

    second = deploy_rke2(inventory, monkeypatch)
    assert second.exit_code == 0 and second.changed == 0
    install = phase_outcome(second, "rke2.install")
    assert [s.reason for s in install.steps if s.label.startswith("install RKE2")] == \
        [f"rke2 {versions.RKE2} installed"]
