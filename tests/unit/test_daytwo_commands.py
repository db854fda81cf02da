"""Backup, certificate and upgrade commands as strings and the CLI's bad-input paths (no host)."""

from __future__ import annotations

import os
import stat
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmstation import backup, certs
from vmstation.cli import main


def test_snapshot_names_sort_by_time_and_retention_keeps_the_newest_only(tmp_path):
    stamp = backup.new_stamp(datetime(2026, 11, 28, 11, 0, 5, tzinfo=timezone.utc))
    assert stamp == "20261128T110005Z"
    assert backup.local_path(tmp_path, "debian", stamp) == tmp_path / "backups/debian/etcd-20261128T110005Z.db"
    names = [f"etcd-2026112{d}T000000Z.db" for d in range(1, 6)] + ["notes.txt", "etcd-latest.db"]
    assert backup.to_prune(names, keep=2) == [f"etcd-2026112{d}T000000Z.db" for d in range(1, 4)]
    assert backup.to_prune(names[:2], keep=7) == []
    for name in names:
        (tmp_path / name).write_text("x")
    removed = backup.prune(tmp_path, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etcd-20261123T000000Z.db", "etcd-20261124T000000Z.db",
                                                          "etcd-20261125T000000Z.db", "etcd-latest.db", "notes.txt"]
    assert len(removed) == 2 and backup.prune(tmp_path / "absent") == []


def test_the_kubeadm_snapshot_uses_the_static_pods_certificates_and_lands_0600_under_the_run_stamp():
    script = backup.kubeadm_snapshot_command("S")
    for flag in ("--endpoints=https://127.0.0.1:2379", "--cacert=/etc/kubernetes/pki/etcd/ca.crt",
                 "--cert=/etc/kubernetes/pki/etcd/server.crt", "--key=/etc/kubernetes/pki/etcd/server.key"):
        assert script.count(flag) == 2                    # the host's etcdctl, else the etcd container's
    assert script.startswith("umask 077\n") and "chmod 0600 /var/lib/vmstation/backups/etcd-S.db.part" in script
    assert script.endswith("mv /var/lib/vmstation/backups/etcd-S.db.part /var/lib/vmstation/backups/etcd-S.db")
    assert "\"$rke2\" etcd-snapshot save --dir /var/lib/vmstation/backups/rke2 --name vmstation" in \
        backup.rke2_snapshot_command("S")


def test_the_static_pods_come_back_even_when_the_restart_script_fails_half_way(tmp_path):
    """The manifests are moved back by the script's EXIT trap: run it in a scratch tree, killed after the move."""
    script = certs.restart_static_pods_command(wait_seconds=0).replace("/etc/kubernetes", str(tmp_path))
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    for pod in certs.CONTROL_PLANE_PODS:
        (manifests / f"{pod}.yaml").write_text(pod)
    failing = script.replace("sleep 0", "exit 3")
    done = subprocess.run(["sh", "-ec", failing], capture_output=True, text=True, check=False)
    assert done.returncode == 3
    assert sorted(p.name for p in manifests.iterdir()) == sorted(f"{p}.yaml" for p in certs.CONTROL_PLANE_PODS)
    assert not (tmp_path / "vmstation-manifests-parked").exists()


@pytest.mark.parametrize("args, words", [
    (["upgrade", "debian", "--to", "latest"], "expected a version such as 1.30"),
    (["upgrade", "debian", "--to", "1.99"], "Kubernetes 1.99 is not in versions.KUBERNETES_RELEASES"),
    (["upgrade", "rke2", "--to", "v1.35.7"], "an RKE2 release names its rke2r revision"),
    (["upgrade", "debian", "--to", "1.30", "--plan", "--resume"], "--plan and --resume cannot be used together"),
    (["backup", "--keep", "0"], "0 is not in the range x>=1"),
    (["certs", "renew", "etcd", "--plan"], "vmstation: certs renew: no cluster 'etcd': name debian (the kubeadm "
                                           "cluster) or rke2, or neither to renew both\n"),
    (["certs", "renew", "kubeadm", "--yes"], "no cluster 'kubeadm'"),
])
def test_bad_upgrade_and_backup_options_are_one_line_exit_2_before_any_host(tmp_path, args, words):
    inventory = Path(__file__).resolve().parents[2] / "hosts.toml"      # the real homelab: never contacted
    env = {**os.environ, "VMSTATION_ALLOWED_NETWORKS": "127.0.0.0/8"}
    result = CliRunner().invoke(main, args + ["-i", str(inventory)], env=env)
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args, runs", [
    (["debian"], [("certs-renew", 32)]),
    (["rke2"], [("certs-rotate-rke2", 1)]),
    ([], [("certs-renew", 32), ("certs-rotate-rke2", 1)]),         # none named: both, as before
])
def test_certs_renew_runs_the_named_clusters_target_only(monkeypatch, args, runs):
    """The CLI's choice alone: which target each form runs (the box test in test_daytwo.py runs them)."""
    from vmstation import cli

    asked = []
    monkeypatch.setattr(cli, "_session", lambda *a, **k: "session")
    monkeypatch.setattr(cli, "_run", lambda session, target, plan, forks, verbose: asked.append((target, forks,
                                                                                                plan)) or 0)
    result = CliRunner().invoke(main, ["certs", "renew", *args, "--plan"])
    assert result.exit_code == 0, result.output
    assert asked == [(target, forks, True) for target, forks in runs]


def test_the_words_the_cli_takes_are_those_the_messages_name():
    from vmstation import cli

    assert set(cli.RENEW_TARGETS) == set(certs.RENEW_CLUSTERS)
    assert [certs.renew_command(kind) for kind in ("kubeadm", "rke2")] == ["vmstation certs renew debian",
                                                                           "vmstation certs renew rke2"]


def test_certs_renew_asks_about_the_named_cluster_only():
    result = CliRunner().invoke(main, ["certs", "renew", "rke2"], input="n\n")
    assert result.exit_code == 1 and "Rotate the RKE2 servers' certificates" in result.output
    assert "Debian" not in result.output


def test_restore_prints_the_documented_procedures():
    result = CliRunner().invoke(main, ["restore"])
    assert result.exit_code == 0
    assert "etcdutl snapshot restore" in result.output and "--cluster-reset-restore-path" in result.output


def test_a_fetched_snapshot_is_a_secret_of_mode_0600(tmp_path):
    from vmstation.operations import Fetch

    fetch = Fetch("/var/lib/vmstation/backups/etcd-S.db", str(tmp_path / "etcd-S.db"))
    step = fetch.decide("c3RhbmQtaW4=\n", frozenset())
    assert step.secret and step.local_writes[0].mode == stat.S_IRUSR | stat.S_IWUSR
