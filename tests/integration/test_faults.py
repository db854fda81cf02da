"""Honest outcomes under faults, on real sshd hosts in network namespaces (prefix vmse, 10.77.5.0/24).

Every fault here is real: commands that really fail or hang, a link that really goes down mid-command
(no FIN), a real SIGINT to a real run, a run killed with SIGKILL, two runs at once against one host, and
a process of user nobody on the host looking for the files being placed.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.test_engine_push import inventory_of
from vmstation import operations as op
from vmstation.context import RunContext
from vmstation.errors import InputError
from vmstation.graph import Graph, Phase, Target, all_hosts
from vmstation.inventory import Inventory
from vmstation.journal import RunLock, read_entries
from vmstation.runner import RunOptions, RunResult, run
from vmstation.testing import netns
from vmstation.transport import DEAD_PEER_SECONDS

REPO = Path(__file__).resolve().parents[2]
STAGING = Path(pwd.getpwnam("root").pw_dir) / ".vmstation-staging"


def one_phase(operations, name: str = "work") -> Graph:
    return Graph([Phase(name, name, all_hosts, operations)], [Target("t", "t", (name,))])


def run_t(graph: Graph, inventory: Inventory, **options) -> RunResult:
    from vmstation.transport import SshOptions

    return run(graph, RunContext(inventory), RunOptions("t", ssh=SshOptions(known_hosts=inventory.known_hosts,
                                                                          deadline=5), **options))


def outcome(result: RunResult, host: str, phase: str = "work"):
    return next(o for o in result.outcomes if (o.phase, o.host) == (phase, host))


def wait_until(test, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = test()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def remote_processes(host, pattern: str) -> list[int]:
    """Processes in the host's namespace whose command line contains ``pattern``."""
    found = []
    for pid in netns.pids_in(host.name):
        try:
            if pattern.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "):
                found.append(pid)
        except OSError:
            continue
    return found


# -- 1. every command of a step decides the step -------------------------------------------------------------


SHAPES = {
    "and-list": "false && true",
    "pipeline": "false | cat",
    "not-last": "false\necho after",
    "subshell": "(false; true)",
    "function": "f() { false; true; }\nf",
    "exit-code": "sh -c 'exit 7' || exit 1",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_failing_command_fails_its_step_whatever_its_shape(hosts, tmp_path, shape):
    """The failing command ends its step as failed with the exit code; nothing after it runs."""
    host = hosts[0]
    after = host.root / f"after-{shape}"

    def operations(ctx):
        yield op.Command("echo 'it broke' >&2; " + SHAPES[shape], f"shape {shape}")
        yield op.Command(op.sh("touch {}", after), "later step")

    result = run_t(one_phase(operations), inventory_of(hosts, tmp_path), limit=(host.name,))
    failed = outcome(result, host.name)
    assert failed.status == "failed" and result.exit_code == 1
    assert failed.message.startswith(f"run shape {shape} failed (exit 1): it broke")
    assert not after.exists()


def test_a_step_that_exits_early_does_not_end_the_steps_after_it(hosts, tmp_path):
    """``exit 0`` inside a command (rhel.install_command ends so) ends that command only."""
    host = hosts[0]
    after = host.root / "after-exit"

    def operations(ctx):
        yield op.Command("echo early; exit 0; echo never", "exits early")
        yield op.Command(op.sh("touch {}", after), "later step")
        yield op.Command("false || true", "a failure that the command itself handles")

    result = run_t(one_phase(operations), inventory_of(hosts, tmp_path), limit=(host.name,))
    assert outcome(result, host.name).status == "changed" and result.exit_code == 0
    assert after.exists()


# -- 2. one host's surprise is that host's failure ---------------------------------------------------------------


def test_an_unexpected_error_fails_one_pair_and_the_other_hosts_go_on(hosts, tmp_path, caplog):
    broken = hosts[1].name
    fstab = {h.name: h.root / "fstab" for h in hosts}
    fstab[hosts[2].name].write_bytes(b"# caf\xe9 (Latin-1)\n/dev/sda2 none swap sw 0 0\n")
    for name in (hosts[0].name, hosts[1].name):
        fstab[name].write_bytes(b"/dev/sda2 none swap sw 0 0\n")

    def operations(ctx):
        if ctx.host.name == broken:
            raise ValueError("a bug in a phase function")
        yield op.Edit(str(fstab[ctx.host.name]), lambda text: text.replace("/dev/sda2", "# /dev/sda2"), "swap off")

    result = run_t(one_phase(operations), inventory_of(hosts, tmp_path))
    assert result.exit_code == 1
    assert outcome(result, broken).status == "failed"
    assert outcome(result, broken).message == "unexpected error: ValueError: a bug in a phase function"
    for name in (hosts[0].name, hosts[2].name):
        assert outcome(result, name).status == "changed"
    assert fstab[hosts[2].name].read_bytes() == b"# caf\xe9 (Latin-1)\n# /dev/sda2 none swap sw 0 0\n"
    entries = read_entries(Path(result.journal_path))
    failed = next(e for e in entries if e.get("host") == broken)
    assert "Traceback" in failed["traceback"] and "a bug in a phase function" in failed["traceback"]
    assert entries[-1]["status"] == "failed" and entries[-1]["exit_code"] == 1


# -- 3. dead peers end -------------------------------------------------------------------------------------------


def test_a_command_past_its_deadline_is_stopped_and_fails_its_host(hosts, tmp_path):
    host = hosts[0]

    def operations(ctx):
        yield op.Command("sleep 97.5", "a command that hangs")

    started = time.monotonic()
    result = run_t(one_phase(operations), inventory_of(hosts, tmp_path), limit=(host.name,), step_deadline=2)
    assert time.monotonic() - started < 15
    failed = outcome(result, host.name)
    assert failed.status == "failed"
    assert failed.message.startswith("run a command that hangs did not end within its deadline of 2s (stopped)")
    wait_until(lambda: not remote_processes(host, "sleep 97.5"), 10, "the hanging command to be gone")


def test_a_host_whose_link_vanishes_mid_command_fails_in_bounded_time_and_the_others_finish(hosts, tmp_path):
    lost = hosts[1]

    def operations(ctx):
        if ctx.host.name == lost.name:
            yield op.Command("sleep 98.5", "a long command")
        else:
            yield op.Command(op.sh("sleep 1; touch {}", tmp_path / ctx.host.name), "short")

    def cut_when_running():
        wait_until(lambda: remote_processes(lost, "sleep 98.5"), 20, "the long command to start")
        netns.set_link(lost.name, up=False)   # no FIN, no RST: the host just stops answering

    cutter = threading.Thread(target=cut_when_running)
    cutter.start()
    started = time.monotonic()
    try:
        result = run_t(one_phase(operations), inventory_of(hosts, tmp_path))
        elapsed = time.monotonic() - started
    finally:
        cutter.join(timeout=30)
        hosts.stop(lost.index)
        hosts.start(lost.index)
    assert elapsed < DEAD_PEER_SECONDS + 30, f"took {elapsed:.1f}s"
    failed = outcome(result, lost.name)
    assert failed.status == "failed" and failed.message.startswith("SSH session failed")
    for other in (hosts[0], hosts[2]):
        assert outcome(result, other.name).status == "changed"
        assert (tmp_path / other.name).exists()


# -- 4 and 5. interrupts, and a journal that tells the truth ---------------------------------------------------------

RUN_SCRIPT = r"""
import json, os, sys
from vmstation import operations as op
from vmstation.context import RunContext
from vmstation.graph import Graph, Phase, Target, all_hosts
from vmstation.inventory import Cluster, Host, Inventory
from vmstation.runner import RunOptions, run
from vmstation.transport import SshOptions

cfg = json.loads(sys.argv[1])
hosts = tuple(Host(name=n, address=a, cluster="lab", roles=("worker",), ssh_key=cfg["key"]) for n, a in cfg["hosts"])
cluster = Cluster("lab", "kubeadm", "1.29.15", "10.244.0.0/16", "10.96.0.0/12", hosts[0].address + ":6443", "flannel")
inventory = Inventory(path=cfg["inventory"], hosts=hosts, clusters=(cluster,), known_hosts=cfg["known_hosts"])

def slow(ctx):
    yield op.File(cfg["roots"][ctx.host.name] + "/slow.conf", "slow\n")
    yield op.Command("echo started; sleep " + cfg["sleep"], "slow step")

def after(ctx):
    yield op.Command("touch " + cfg["roots"][ctx.host.name] + "/after", "after")

graph = Graph([Phase("slow", "slow", all_hosts, slow), Phase("after", "after", all_hosts, after, ("slow",))],
              [Target("t", "t", ("after",))])
result = run(graph, RunContext(inventory), RunOptions("t", ssh=SshOptions(known_hosts=cfg["known_hosts"], deadline=5)))
print(json.dumps({"exit": result.exit_code, "statuses": [[o.phase, o.host, o.status] for o in result.outcomes],
                  "journal": result.journal_path}), flush=True)
sys.stderr.flush()
os._exit(result.exit_code)   # as the CLI does: no waiting for threads still in a cut connection
"""


def start_run(hosts, tmp_path: Path, sleep: str, members=None) -> subprocess.Popen:
    members = list(members or hosts)
    cfg = {"key": str(hosts.client_key), "known_hosts": str(hosts.known_hosts),
           "inventory": str(tmp_path / "hosts.toml"), "hosts": [(h.name, h.address) for h in members],
           "roots": {h.name: str(h.root) for h in members}, "sleep": sleep}
    return subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, json.dumps(cfg)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_ends_the_run_within_5s_with_130_and_the_journal_says_interrupted(hosts, tmp_path,
                                                                                         signal_number):
    process = start_run(hosts, tmp_path, "20.25")
    try:
        wait_until(lambda: all(remote_processes(h, "sleep 20.25") for h in hosts), 20, "the slow step on all hosts")
        process.send_signal(signal_number)
        sent = time.monotonic()
        stdout, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and took < 5, (process.returncode, took, stderr)
    assert "Traceback" not in stderr
    report = json.loads(stdout)
    assert {status for phase, _, status in report["statuses"]} == {"interrupted"}
    assert {phase for phase, _, _ in report["statuses"]} == {"slow"}     # nothing new started
    entries = read_entries(Path(report["journal"]))
    assert entries[-1]["status"] == "interrupted" and entries[-1]["exit_code"] == 130
    assert not any((h.root / "after").exists() for h in hosts)

    # the next run cleans what the interrupted one left on the hosts and finishes
    _end_remote(hosts, "sleep 20.25")
    again = run(_two_phase_graph(hosts), RunContext(inventory_of(hosts, tmp_path)),
                RunOptions("t", ssh=_ssh(hosts)))
    assert again.exit_code == 0
    assert [p for h in hosts for p in glob.glob(str(STAGING / f"{h.name}-*"))] == []


def test_a_second_sigint_ends_the_process_at_once(hosts, tmp_path):
    # a host that is off: its connect hangs, so the first interrupt has something to wait for
    hosts.stop(2)
    try:
        process = start_run(hosts, tmp_path, "20.5")
        wait_until(lambda: remote_processes(hosts[0], "sleep 20.5"), 20, "the slow step")
        process.send_signal(signal.SIGINT)
        first = process.stderr.readline()      # the first interrupt was taken (signals of one kind coalesce)
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
        hosts.start(2)
        _end_remote(hosts, "sleep 20.5")    # the command in flight outlives the cut (bounded by its deadline)
    assert "SIGINT: starting nothing new" in first
    assert process.returncode == 130 and took < 1.5, (took, stderr)
    assert "second interrupt" in stderr and "Traceback" not in stderr


def test_a_run_that_died_is_recognised_as_crashed_and_a_cut_journal_line_is_skipped(hosts, tmp_path, caplog):
    process = start_run(hosts, tmp_path, "21.5", members=hosts[:1])
    try:
        wait_until(lambda: remote_processes(hosts[0], "sleep 21.5"), 20, "the slow step")
        process.kill()                      # SIGKILL: no end record can be written
        process.wait(timeout=10)
    finally:
        _end_remote(hosts, "sleep 21.5")
    (dead,) = (tmp_path / ".vmstation" / "runs").glob("*-t.jsonl")
    with open(dead, "a") as handle:
        handle.write('{"phase": "slow", "ho')       # a line cut short, as by a crash mid-write
    inventory = inventory_of(hosts, tmp_path)
    members = Inventory(inventory.path, inventory.hosts[:1], inventory.clusters, inventory.known_hosts)
    with caplog.at_level(logging.WARNING):
        again = run(_two_phase_graph(hosts), RunContext(members), RunOptions("t", resume=True, ssh=_ssh(hosts)))
    assert again.exit_code == 0
    assert read_entries(dead)[-1]["status"] == "crashed"
    assert any("crashed" in r.getMessage() and str(dead) in r.getMessage() for r in caplog.records)
    assert any("cut short" in r.getMessage() for r in caplog.records)


def _end_remote(hosts, pattern: str) -> None:
    """End a command that an interrupted or killed run left running on the hosts (it holds their lock)."""
    for h in hosts:
        for pid in remote_processes(h, pattern):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _two_phase_graph(hosts) -> Graph:
    roots = {h.name: h.root for h in hosts}
    return Graph([Phase("slow", "slow", all_hosts, lambda ctx: [op.File(f"{roots[ctx.host.name]}/slow.conf", "x\n")]),
                  Phase("after", "after", all_hosts, lambda ctx: [op.Command("true", "after")], ("slow",))],
                 [Target("t", "t", ("after",))])


def _ssh(hosts):
    from vmstation.transport import SshOptions

    return SshOptions(known_hosts=str(hosts.known_hosts), deadline=5)


# -- 6. --resume runs again what changed ---------------------------------------------------------------------------


def test_resume_runs_a_pair_again_when_what_it_would_do_changed(hosts, tmp_path):
    inventory = inventory_of(hosts, tmp_path)
    content = {h.name: "first\n" for h in hosts}

    def operations(ctx):
        yield op.File(str(hosts[0].root / f"resume-{tmp_path.name}-{ctx.host.name}.conf"), content[ctx.host.name])

    assert run_t(one_phase(operations), inventory).exit_code == 0
    content[hosts[1].name] = "second\n"
    resumed = run_t(one_phase(operations), inventory, resume=True)
    assert {o.host: o.status for o in resumed.outcomes} == {hosts[0].name: "resumed", hosts[1].name: "changed",
                                                           hosts[2].name: "resumed"}
    assert (hosts[0].root / f"resume-{tmp_path.name}-{hosts[1].name}.conf").read_text() == "second\n"


# -- 7. handlers survive cuts ----------------------------------------------------------------------------------------


def test_a_handler_whose_trigger_was_placed_runs_on_the_next_run_after_a_cut(hosts, tmp_path):
    host = hosts[0]
    root = host.root / tmp_path.name
    root.mkdir()
    flag = root / "second-time"

    def operations(ctx):
        config = op.File(f"{root}/app.conf", "v2\n")
        yield config
        # fails the first time, after the file was placed and before its handler ran (as a cut would)
        yield op.Command(op.sh("[ -e {0} ] || {{ touch {0}; echo cut >&2; exit 1; }}", flag), "between")
        yield op.Command(op.sh("echo restarted >> {}", f"{root}/restarts.log"), "restart app",
                         when_changed=(config.label,))

    inventory = inventory_of(hosts, tmp_path)
    first = run_t(one_phase(operations), inventory, limit=(host.name,))
    assert outcome(first, host.name).status == "failed" and (root / "app.conf").read_text() == "v2\n"
    assert not (root / "restarts.log").exists()

    second = run_t(one_phase(operations), inventory, limit=(host.name,))
    steps = {s.label: s for s in outcome(second, host.name).steps}
    assert steps[f"file {root}/app.conf"].status == op.OK
    assert steps["run restart app"].status == op.CHANGE
    assert (root / "restarts.log").read_text() == "restarted\n"

    third = run_t(one_phase(operations), inventory, limit=(host.name,))    # cleared once it ran
    assert {s.label: s.status for s in outcome(third, host.name).steps}["run restart app"] == op.OK
    assert (root / "restarts.log").read_text() == "restarted\n"


def test_a_handler_runs_on_the_next_run_after_the_host_went_down_between_placing_and_handling(hosts, tmp_path):
    index = 2
    host = hosts[index]
    root = host.root / tmp_path.name
    root.mkdir()
    started = root / "slow-started"

    def operations(ctx):
        config = op.File(f"{root}/app.conf", "v3\n")
        yield config
        yield op.Command(op.sh("touch {}; sleep 96.5", started), "slow step", creates=str(started))
        yield op.Command(op.sh("echo restarted >> {}", f"{root}/restarts.log"), "restart app",
                         when_changed=(config.label,))

    inventory = inventory_of(hosts, tmp_path)
    cutter = threading.Thread(target=lambda: (wait_until(lambda: remote_processes(host, "sleep 96.5"), 30,
                                                         "the slow step"), hosts.stop(index)))
    cutter.start()
    try:
        first = run_t(one_phase(operations), inventory, limit=(host.name,))
    finally:
        cutter.join(timeout=60)
        hosts.start(index)
    assert outcome(first, host.name).status == "failed" and (root / "app.conf").read_text() == "v3\n"
    assert not (root / "restarts.log").exists()

    second = run_t(one_phase(operations), inventory, limit=(host.name,))
    steps = {s.label: s.status for s in outcome(second, host.name).steps}
    assert steps == {f"file {root}/app.conf": op.OK, "run slow step": op.OK, "run restart app": op.CHANGE}
    assert (root / "restarts.log").read_text() == "restarted\n"


# -- 8. one run at a time ----------------------------------------------------------------------------------------------


def test_a_second_run_on_one_inventory_is_refused_naming_the_holder(hosts, tmp_path):
    inventory = inventory_of(hosts, tmp_path)
    with RunLock(inventory.path):
        with pytest.raises(InputError, match=rf"another vmstation run holds this inventory \(pid {os.getpid()}, "
                                             r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)"):
            run_t(one_phase(lambda ctx: [op.Command("true", "x")]), inventory)


def test_two_runs_at_once_against_one_host_both_finish_and_keep_their_staging(hosts, tmp_path):
    """Run A uploads a big file; run B (another inventory directory, as from another machine) starts meanwhile.

    B waits for A's lock on the host, so it can neither delete A's staging nor interleave its steps with A's."""
    host = hosts[2]
    big = os.urandom(48 << 20)
    target_a, target_b = host.root / "a.img", host.root / "b.conf"
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    dir_a.mkdir()
    dir_b.mkdir()
    results = {}

    def run_a():
        results["a"] = run_t(one_phase(lambda ctx: [op.File(str(target_a), big)]), inventory_of(hosts, dir_a),
                             limit=(host.name,))

    thread = threading.Thread(target=run_a)
    thread.start()
    try:
        def staged_a_while():   # a root login: SFTP writes the temp beside the target, under the host's lock
            for temp in glob.glob(str(host.root / ".a.img.vmstation-*")):
                try:
                    return os.path.getsize(temp) >= 4 << 20
                except OSError:
                    continue
            return False
        wait_until(staged_a_while, 30, "run A's upload to be under way")
        results["b"] = run_t(one_phase(lambda ctx: [op.File(str(target_b), "b\n")]), inventory_of(hosts, dir_b),
                             limit=(host.name,))
    finally:
        thread.join(timeout=120)
    assert [o.status for o in results["a"].outcomes] == ["changed"], results["a"].outcomes[0].message
    assert [o.status for o in results["b"].outcomes] == ["changed"], results["b"].outcomes[0].message
    assert target_a.read_bytes() == big and target_b.read_text() == "b\n"


# -- issue 11, item 1: no secret readable on the way -----------------------------------------------------------------


def test_a_0600_file_is_never_readable_by_another_user_while_it_is_placed(hosts, tmp_path):
    """User nobody on the host polls the target's directory for the engine's temporary copies during a large
    0600 placement, and tries to open each one it sees: it sees them, and never opens one."""
    host = hosts[0]
    directory = host.root / "secret-dir"
    directory.mkdir(mode=0o755, exist_ok=True)
    directory.chmod(0o755)
    for parent in (host.root, host.root.parent, host.root.parent.parent):
        assert parent.stat().st_mode & 0o005 == 0o005, f"{parent} must be searchable by nobody"
    done = directory / "done"
    poll = ('while [ ! -e "$2" ]; do for f in "$1"/.secret.key.vmstation-*; do [ -e "$f" ] || continue; '
            'echo "seen $f"; if head -c1 -- "$f" >/dev/null 2>&1; then echo "opened $f"; fi; done; done')
    watcher = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                                "sh", "-c", poll, "poll", str(directory), str(done)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        secret = os.urandom(96 << 20)
        result = run_t(one_phase(lambda ctx: [op.File(str(directory / "secret.key"), secret, mode="0600",
                                                      secret=True)]),
                       inventory_of(hosts, tmp_path), limit=(host.name,))
    finally:
        done.touch()
        output, errors = watcher.communicate(timeout=30)
    assert [o.status for o in result.outcomes] == ["changed"]
    lines = output.splitlines()
    assert any(line.startswith("seen ") for line in lines), f"nobody never saw a temporary copy: {errors}"
    assert [line for line in lines if line.startswith("opened ")] == []
    placed = directory / "secret.key"
    assert placed.stat().st_mode & 0o777 == 0o600 and placed.read_bytes() == secret
    shutil.rmtree(directory)
