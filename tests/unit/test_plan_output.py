"""What the operator reads: the plan (diffs and commands), the summary table, JSON and line progress.

Steps come from the operations' own decide(), so the plan shows what a run would do.
"""

from __future__ import annotations

import hashlib
import io
import json
from types import SimpleNamespace

from vmstation.execute import PhaseOutcome
from vmstation.operations import Check, Command, File, KernelModule, Service, Sysctl
from vmstation.report import LineProgress, format_plan, format_summary, to_json

NOTHING: frozenset[str] = frozenset()
SECRET = "s3cr3t-join-token-value"


def file_fact(content: bytes, mode: str = "644") -> str:
    import base64

    return f"{mode} root root\n{hashlib.sha256(content).hexdigest()}\n{base64.b64encode(content).decode()}\n"


def planned_prep() -> PhaseOutcome:
    config = File("/etc/containerd/config.toml", "version = 2\nSystemdCgroup = true\n", source="containerd/v2.toml.j2")
    steps = [
        config.decide(file_fact(b"version = 2\nSystemdCgroup = false\n"), NOTHING),
        File("/etc/modules-load.d/k8s.conf", "overlay\n").decide(file_fact(b"overlay\n"), NOTHING),
        File("/etc/kubernetes/join-token", SECRET + "\n", mode="0600", secret=True).decide("absent\n", NOTHING),
        Sysctl("vm.swappiness", "10").decide("60\nread-only\n", NOTHING),
        KernelModule("br_netfilter").decide("no-modules\n", NOTHING),
        Service("containerd", restart_on=(config.label,)).decide("enabled\nactive\n", frozenset({config.label})),
        Check(f"echo {SECRET}", "print the join command", capture="join", secret=True).decide("", NOTHING),
    ]
    return PhaseOutcome("node-prep", "storagenodet3500", "planned", steps=steps)


def test_plan_shows_the_unified_diff_of_each_file():
    plan = format_plan([planned_prep()])
    assert "== node-prep @ storagenodet3500: 3 to change, 4 unchanged or checks" in plan
    assert "  ~ file /etc/containerd/config.toml  (content differs)" in plan
    assert "      --- a/etc/containerd/config.toml" in plan and "      +++ b/etc/containerd/config.toml" in plan
    assert "      -SystemdCgroup = false" in plan and "      +SystemdCgroup = true" in plan
    assert "      place /etc/containerd/config.toml mode 0644 root:root" in plan


def test_plan_shows_each_command_and_why_a_step_is_skipped():
    plan = format_plan([planned_prep()])
    assert "  ~ service containerd  (restart: file /etc/containerd/config.toml changed)" in plan
    assert "      $ systemctl restart containerd" in plan
    assert "  ! sysctl vm.swappiness=10  (/proc/sys is read-only" in plan
    assert "  ! module br_netfilter  (not loaded and this kernel has no /lib/modules" in plan


def test_plan_hides_secret_content_and_secret_commands():
    plan = format_plan([planned_prep()])
    assert SECRET not in plan
    assert "(secret content of /etc/kubernetes/join-token not shown)" in plan
    assert "      $ (command hidden: secret)" in plan


def test_plan_hides_unchanged_steps_unless_asked():
    assert "modules-load.d" not in format_plan([planned_prep()])
    shown = format_plan([planned_prep()], show_unchanged=True)
    assert "  = file /etc/modules-load.d/k8s.conf  (content, mode and owner match)" in shown


def test_plan_of_a_host_that_could_not_be_asked_says_why():
    failed = PhaseOutcome("node-prep", "masternode", "failed", message="cannot reach 10.77.5.2:22: timed out")
    assert "== node-prep @ masternode: FAILED: cannot reach 10.77.5.2:22: timed out" in format_plan([failed])


def test_summary_table_counts_and_explains():
    outcomes = [
        PhaseOutcome("node-prep", "masternode", "changed", seconds=1.26,
                     steps=[Command("true", "x").decide("", NOTHING),
                            Sysctl("vm.x", "1").decide("0\nread-only", NOTHING)]),
        PhaseOutcome("node-prep", "storagenodet3500", "failed", message="run x failed (exit 3): boom", seconds=0.4),
        PhaseOutcome("kubeadm-join", "storagenodet3500", "blocked", message="needs node-prep, which did not finish"),
        PhaseOutcome("rke2-install", "homelab", "unsupported", message="no RKE2 binaries can be had here"),
        PhaseOutcome("kubeadm-init", "masternode", "resumed", message="finished in the last run"),
    ]
    lines = format_summary(outcomes).splitlines()
    assert lines[0].split() == ["phase", "host", "status", "changed", "seconds", "note"]
    row = lines[1].split(None, 5)
    assert row[:5] == ["node-prep", "masternode", "changed", "1", "1.3"]
    assert row[5] == "skipped sysctl vm.x=1: /proc/sys is read-only for this key here (a container's kernel limits)"
    assert "FAILED" in lines[2] and lines[2].endswith("run x failed (exit 3): boom")
    assert "blocked" in lines[3] and "cannot run here" in lines[4] and "done earlier" in lines[5]
    assert lines[-1] == "1 changed, 1 failed, 1 blocked, 1 cannot run here"
    assert all(line == line.rstrip() for line in lines)


def test_summary_of_a_plan_counts_nothing_as_changed():
    assert format_summary([planned_prep()]).splitlines()[-1].startswith("0 changed")


def test_json_result_is_machine_readable_and_without_secrets():
    result = SimpleNamespace(target="deploy-debian", exit_code=0, changed=0, seconds=1.23456,
                             journal_path="/x/.vmstation/runs/r.jsonl", outcomes=[planned_prep()])
    data = json.loads(to_json(result))
    assert data["target"] == "deploy-debian" and data["seconds"] == 1.235
    (outcome,) = data["outcomes"]
    assert outcome["status"] == "planned" and len(outcome["steps"]) == 7
    assert outcome["steps"][0] == {"label": "file /etc/containerd/config.toml", "status": "change",
                                   "reason": "content differs"}
    assert SECRET not in to_json(result)


def test_line_progress_writes_one_line_per_phase_and_outcome():
    stream = io.StringIO()
    progress = LineProgress(stream)
    progress("phase", {"phase": "node-prep", "title": "prepare nodes", "hosts": ["a", "b"]})
    progress("start", {"phase": "node-prep", "host": "a"})
    progress("outcome", {"outcome": PhaseOutcome("node-prep", "a", "failed", message="no route", seconds=3.04)})
    assert stream.getvalue().splitlines() == ["-- node-prep: prepare nodes (2 hosts)",
                                              "   a                    FAILED (0 changed, 3.0s): no route"]
