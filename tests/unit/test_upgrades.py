"""The pinned versions table (1.29 to the newest supported minor) and the one-minor-per-step upgrade chains."""

from __future__ import annotations

import datetime

import pytest

from vmstation import support, versions
from vmstation.errors import InputError
from vmstation.upgrades import kubeadm_chain, minor_of, rke2_chain


def _key(minor: str) -> tuple[int, int]:
    return tuple(int(p) for p in minor.split("."))


# -- the table is consistent -----------------------------------------------------------------------------


def test_the_table_covers_every_minor_from_1_29_to_the_newest_supported_one_without_a_gap():
    minors = sorted(versions.KUBERNETES_RELEASES, key=_key)
    assert minors[0] == "1.29"
    newest_supported = support.supported_lines(datetime.date(2026, 11, 28))[-1]
    assert minors[-1] == newest_supported == max(versions.KUBERNETES_END_OF_LIFE, key=_key)
    assert [_key(m)[1] for m in minors] == list(range(29, _key(minors[-1])[1] + 1))


@pytest.mark.parametrize("minor", list(versions.KUBERNETES_RELEASES))
def test_each_row_is_of_its_own_minor_and_has_every_other_fact(minor):
    row = versions.KUBERNETES_RELEASES[minor]
    assert minor_of(row.patch) == minor and minor_of(row.rke2) == minor
    assert row.rke2.startswith(f"v{row.patch}+rke2r")           # RKE2 ships exactly that upstream patch
    assert row.apt_repo() == f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"
    assert row.apt_version() == f"{row.patch}-1.1"
    assert minor in versions.CONTAINERD_MINIMUM_BY_KUBERNETES, "containerd's floor for this minor"
    assert minor in versions.KUBERNETES_END_OF_LIFE
    assert row.flannel == versions.FLANNEL_IMAGE.rsplit(":", 1)[1]


def test_the_deployed_defaults_are_rows_of_the_table():
    assert versions.KUBERNETES_RELEASES["1.29"].patch == versions.KUBERNETES
    assert versions.KUBERNETES_RELEASES["1.29"].apt_version() == versions.KUBERNETES_APT_VERSION
    assert versions.KUBERNETES_RELEASES["1.29"].apt_repo() == versions.KUBERNETES_APT_REPO
    assert versions.SANDBOX_IMAGE == f"registry.k8s.io/pause:{versions.KUBERNETES_RELEASES['1.29'].pause}"
    assert versions.RKE2 == versions.KUBERNETES_RELEASES["1.35"].rke2


def test_pause_versions_never_go_backwards():
    pauses = [tuple(int(p) for p in versions.KUBERNETES_RELEASES[m].pause.split("."))
              for m in sorted(versions.KUBERNETES_RELEASES, key=_key)]
    assert pauses == sorted(pauses)


# -- chains ----------------------------------------------------------------------------------------------


def _pairs(steps):
    return [(s.number, s.from_version, s.to_version) for s in steps]


def test_one_minor_is_one_step_to_the_newest_patch():
    assert _pairs(kubeadm_chain("1.29.15", "1.30.x")) == [(1, "1.29.15", "1.30.14")]
    assert _pairs(kubeadm_chain("1.29.15", "1.30")) == [(1, "1.29.15", "1.30.14")]


def test_two_minors_are_two_steps_the_last_to_what_was_asked():
    assert _pairs(kubeadm_chain("1.29.15", "v1.31.2")) == [(1, "1.29.15", "1.30.14"), (2, "1.30.14", "1.31.2")]


def test_a_patch_upgrade_is_one_step_and_the_same_version_none():
    assert _pairs(kubeadm_chain("1.30.2", "1.30.14")) == [(1, "1.30.2", "1.30.14")]
    assert kubeadm_chain("1.30.14", "1.30.14") == []


@pytest.mark.parametrize("to, words", [
    ("1.29.15", "downgrade"), ("1.30.1", "downgrade"), ("2.0", "not in versions.KUBERNETES_RELEASES"),
    ("1.99.1", "not in versions.KUBERNETES_RELEASES"), ("latest", "expected a version"),
])
def test_what_cannot_be_an_upgrade_is_bad_input(to, words):
    with pytest.raises(InputError, match=words):
        kubeadm_chain("1.30.2", to)


def test_rke2_chains_go_through_each_minor_newest_release():
    assert _pairs(rke2_chain("v1.33.13+rke2r2", "v1.35")) == [
        (1, "v1.33.13+rke2r2", "v1.34.10+rke2r1"), (2, "v1.34.10+rke2r1", "v1.35.7+rke2r1")]
    assert _pairs(rke2_chain("v1.34.2+rke2r1", "v1.35.7+rke2r1"))[-1] == (2 - 1, "v1.34.2+rke2r1", "v1.35.7+rke2r1")
    with pytest.raises(InputError, match="rke2r revision"):
        rke2_chain("v1.34.2+rke2r1", "v1.35.7")


def test_an_rke2_cluster_is_at_its_lowest_release_so_agents_left_behind_are_upgraded_on_resume():
    from vmstation.maintenance import lowest_rke2_release

    server_then_kubelets = ("rke2 version v1.35.7+rke2r1 (abc)\n"
                            "v1.35.7+rke2r1 v1.34.10+rke2r1 v1.34.9+rke2r2\n")
    assert lowest_rke2_release(server_then_kubelets) == "v1.34.9+rke2r2"
    assert lowest_rke2_release("rke2 version v1.34.10+rke2r1 (abc)\n") == "v1.34.10+rke2r1"   # no API answer
    assert lowest_rke2_release("v1.9.1+rke2r1 v1.10.0+rke2r1") == "v1.9.1+rke2r1"              # by number
    assert lowest_rke2_release("") is None


def stopped_upgrade(plan: bool):
    from vmstation.execute import PhaseOutcome
    from vmstation.maintenance import Part, Upgrade
    from vmstation.runner import RunResult
    from vmstation.status import Outcome

    chain = kubeadm_chain("1.29.15", "1.30")
    failed = RunResult("upgrade-debian", [PhaseOutcome("upgrade-debian.preflight", "masternode", Outcome.FAILED,
                                                       message="every node Ready: not Ready: storagenodet3500")])
    return Upgrade("kubeadm", "1.29.15", "1.30", chain, [Part(chain[0], "control plane masternode", failed)],
                   plan=plan)


def test_a_stopped_run_says_where_and_how_to_resume_and_a_stopped_plan_says_a_run_would_stop_there():
    from vmstation.maintenance import describe_stop

    run = describe_stop(stopped_upgrade(plan=False), "1.30")
    assert run.splitlines() == [
        "stopped at step 1 of 1 (1.29.15 -> 1.30.14), control plane masternode: upgrade-debian.preflight @ "
        "masternode: every node Ready: not Ready: storagenodet3500",
        "the hosts after it were not touched; nothing was rolled back (kubeadm rolls a failed apply back itself)",
        "go on from there: vmstation upgrade debian --to 1.30 --resume"]
    plan = describe_stop(stopped_upgrade(plan=True), "1.30")
    assert plan.splitlines()[0].startswith("the plan stops at step 1 of 1 (1.29.15 -> 1.30.14), control plane ")
    assert "--resume" not in plan and plan.endswith("then vmstation upgrade debian --to 1.30")
