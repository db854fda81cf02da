"""What the operator reads when a plan is long or hosts are unknown (issue 12, item 4 and 6), and the
precedence of ssh_config (item 3) as pure logic: hosts.toml, then ssh_config, then defaults."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.unit.test_plan_output import SECRET, planned_prep
from vmstation.errors import ConnectError
from vmstation.execute import PhaseOutcome
from vmstation.inventory import load_text
from vmstation.operations import File
from vmstation.report import BRIEF_OVER_LINES, LineProgress, format_plan, format_summary, to_json

NOTHING: frozenset[str] = frozenset()


def long_plan(hosts: int = 4) -> list[PhaseOutcome]:
    big = "".join(f"line {i}\n" for i in range(80))
    own = [File(f"/usr/local/lib/vmstation/vmstation/m{i}.py", "x = 1\n", source="vmstation/x").decide("absent\n",
                                                                                                       NOTHING)
           for i in range(6)]
    return [PhaseOutcome("debian.power", f"host{n}", "planned",
                         steps=[File("/etc/big.conf", big).decide("absent\n", NOTHING), *own])
            for n in range(hosts)] + [planned_prep()]


def test_a_long_plan_is_brief_by_default_with_counts_and_the_full_one_on_request():
    full = format_plan(long_plan(), full=True, verbose=1)
    assert full.count("\n") > BRIEF_OVER_LINES
    brief = format_plan(long_plan(), full=None)
    assert "  ~ file /etc/big.conf  (+80 -0)" in brief.splitlines()
    assert "  ~ file /etc/containerd/config.toml  (+1 -1)" in brief.splitlines()
    assert brief.splitlines()[-1].startswith("(brief plan: the full one is ") and "--diff" in brief
    assert SECRET not in brief and SECRET not in full
    assert len(brief.splitlines()) < 40


def test_the_engines_own_files_are_one_line_unless_verbose():
    plan = format_plan(long_plan(1), full=True)
    own = [line for line in plan.splitlines() if "vmstation/vmstation/m" in line]
    assert own == []
    assert "  ~ 6 of vmstation's own files for the idle check under /usr/local/lib/vmstation/ (-v lists them)" \
        in plan.splitlines()
    assert sum("vmstation/vmstation/m" in line for line in format_plan(long_plan(1), full=True, verbose=1)
               .splitlines()) >= 6


def test_plan_json_counts_the_changes_it_would_make():
    outcomes = long_plan(2)
    result = SimpleNamespace(target="deploy-debian", exit_code=0, changed=0, seconds=0.1, journal_path="j",
                             outcomes=outcomes)
    data = json.loads(to_json(result, plan=True))
    assert data["changed"] == 0 and data["plan"] is True
    assert data["to_change"] == sum(o.changed for o in outcomes) > 0
    assert format_summary(outcomes).splitlines()[-1].endswith(f"the plan has {data['to_change']} changes to make")


def test_an_unknown_host_key_is_one_line_per_host_at_the_end_and_blocked_phases_are_not_repeated():
    key = ("unknown host key for 10.77.5.2 (ssh-ed25519 SHA256:abc) not in /k; compare it with the host's own, "
           "then record it with `vmstation hosts trust masternode` (or --trust-new-host-keys)")
    outcomes = [PhaseOutcome("p1", "masternode", "failed", message=key),
                PhaseOutcome("p2", "masternode", "failed", message="unreachable earlier in this run: " + key),
                PhaseOutcome("p3", "masternode", "blocked", message="needs p1, which did not finish on masternode"),
                PhaseOutcome("p1", "worker", "ok")]
    lines = format_summary(outcomes, inventory_path="lab/hosts.toml").splitlines()
    assert sum("SHA256:abc" in line for line in lines) == 1
    assert lines[1].endswith("unknown host key (its fingerprint is listed at the end)")
    assert lines[2].endswith("as above") and lines[3].endswith("by the failure above")
    assert lines[-2] == "  masternode  10.77.5.2  ssh-ed25519 SHA256:abc"
    assert lines[-1].strip().startswith("vmstation hosts trust masternode -i lab/hosts.toml")


# -- ssh_config precedence (ssh_routes.route_to) -----------------------------------------------------------

INVENTORY = """
[clusters.debian]
kind = "kubeadm"
[hosts.masternode]
address = "10.77.5.2"
cluster = "debian"
roles = ["control-plane"]
{extra}
"""


def route(tmp_path: Path, ssh_config: str, extra: str = ""):
    from vmstation.ssh_routes import route_to

    config = tmp_path / "ssh_config"
    config.write_text(ssh_config)
    host = load_text(INVENTORY.format(extra=extra)).host("masternode")
    return route_to(host, str(config))


def test_ssh_config_fills_what_hosts_toml_leaves_unset(tmp_path):
    result = route(tmp_path, "Host masternode\n  HostName 10.77.57.9\n  User ops\n  Port 2222\n"
                             "  IdentityFile ~/.ssh/lab_key\n")
    assert (result.address, result.host.ssh_user, result.host.ssh_port) == ("10.77.57.9", "ops", 2222)
    assert result.key_files == (str(Path("~/.ssh/lab_key").expanduser()),)
    assert result.host.address == "10.77.5.2"          # the node's address in the cluster stays


def test_hosts_toml_wins_over_ssh_config_and_defaults_come_last(tmp_path):
    result = route(tmp_path, "Host 10.77.5.*\n  User ops\n  Port 2222\n", extra='ssh_user = "root"')
    assert (result.host.ssh_user, result.host.ssh_port) == ("root", 2222)
    bare = route(tmp_path, "Host elsewhere\n  User ops\n")
    assert (bare.address, bare.host.ssh_user, bare.host.ssh_port, bare.key_files) == ("10.77.5.2", "root", 22, ())


def test_proxyjump_becomes_a_checked_hop_and_proxycommand_is_refused(tmp_path):
    result = route(tmp_path, "Host masternode\n  ProxyJump ops@bastion:2200\nHost bastion\n  HostName 10.77.57.1\n")
    assert (result.jump.address, result.jump.host.ssh_user, result.jump.host.ssh_port) == ("10.77.57.1", "ops", 2200)
    with pytest.raises(ConnectError, match="ProxyCommand .* vmstation does not run it") as caught:
        route(tmp_path, "Host masternode\n  ProxyCommand nc %h %p\n")
    assert not caught.value.transient
    with pytest.raises(ConnectError, match="several hops"):
        route(tmp_path, "Host masternode\n  ProxyJump a,b\n")


def test_match_exec_is_refused_without_running_it(tmp_path):
    ran = tmp_path / "ran"
    with pytest.raises(ConnectError, match="`Match exec`: vmstation does not run it") as caught:
        route(tmp_path, f"Match exec \"touch {ran}\"\n  User ops\nHost masternode\n  Port 2222\n")
    assert not caught.value.transient and not ran.exists()


def test_a_run_loads_neither_fabric_nor_invoke(tmp_path):
    """paramiko is imported without Invoke (and its unittest.mock and asyncio); Fabric is not imported at all."""
    script = ("import sys\n"
              "from vmstation import known_hosts, runner\n"
              "from vmstation.transport import SshOptions, warm_up\n"
              f"known_hosts.load({str(tmp_path / 'known_hosts')!r})\n"
              f"warm_up(SshOptions(known_hosts={str(tmp_path / 'known_hosts')!r}, ssh_config=None))\n"
              "import paramiko\n"
              "print(sorted(m for m in ('fabric', 'invoke', 'unittest.mock', 'asyncio') if m in sys.modules))\n")
    (tmp_path / "known_hosts").write_text("")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "HOME": str(tmp_path)})
    assert result.stdout.strip() == "[]", result.stderr


def test_no_engine_module_names_a_policy_that_accepts_unknown_keys():
    """Fabric's AutoAddPolicy is replaced on every client (tests/integration/test_ssh_routes.py watches them
    connect); no module of the product may name AutoAddPolicy or WarningPolicy in code."""
    import ast

    package = Path(__file__).resolve().parents[2] / "vmstation"
    offenders = []
    for path in package.rglob("*.py"):
        if "testing" in path.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = getattr(node, "attr", None) or getattr(node, "id", None)
            if name in ("AutoAddPolicy", "WarningPolicy"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_verify_results_are_drawn_by_the_report_at_the_edge():
    from vmstation.report import format_checks
    from vmstation.verify import UNREACHABLE, CheckResult

    text = format_checks([CheckResult("masternode", "debian.system-prep", "no swap in use", True),
                          CheckResult("storagenodet3500", "debian.cni-plugins", "bridge plugin", False,
                                      "absent\x1b[2J"),
                          CheckResult("homelab", "", UNREACHABLE, False, "connection refused")])
    assert text.splitlines() == [
        "ok   masternode         debian.system-prep         no swap in use",
        "FAIL storagenodet3500   debian.cni-plugins         bridge plugin  (absent\\x1b[2J)",
        "homelab: cannot check: connection refused",
        "2 failed"]


def test_blocked_phases_after_a_failure_are_one_row_per_host_with_their_count():
    outcomes = [PhaseOutcome("p1", "worker", "failed", message="cannot reach 10.77.5.3:22: timed out"),
                *[PhaseOutcome(f"p{i}", "worker", "blocked", message=f"needs p{i - 1}, which did not finish on worker")
                  for i in range(2, 6)],
                PhaseOutcome("p1", "masternode", "ok")]
    lines = format_summary(outcomes).splitlines()
    blocked_rows = [line for line in lines if " blocked " in line]
    assert len(blocked_rows) == 1
    assert blocked_rows[0].startswith("p2 and 3 more") and blocked_rows[0].endswith(
        "by the failure above: p2, p3, p4, p5")
    assert lines[-1] == "0 changed, 1 failed, 4 blocked, 0 cannot run here"

    progress = io.StringIO()
    line_progress = LineProgress(progress)
    for outcome in outcomes:
        line_progress("outcome", {"outcome": outcome})
    told = progress.getvalue().splitlines()
    assert len(told) == 3 and "blocked" in told[1] and told[1].endswith("by the failure above")
