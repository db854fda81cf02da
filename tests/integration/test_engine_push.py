"""The engine end to end on real sshd hosts in network namespaces (prefix vmse, 10.77.5.0/24).

Files pushed through the graph to three hosts; a second run changes nothing,
sends one command per host and never opens a staging directory; a failure or a
host that cannot do a phase stays on that host; a connection cut in the middle
of an upload leaves the target whole.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import pwd
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmstation import operations as op
from vmstation.context import RunContext
from vmstation.errors import Unsupported
from vmstation.graph import Graph, Phase, Target, all_hosts
from vmstation.inventory import Cluster, Host, Inventory
from vmstation.report import format_summary
from vmstation.runner import RunOptions, RunResult, run
from vmstation.transport import SshOptions

STAGING = Path(pwd.getpwnam("root").pw_dir) / ".vmstation-staging"


@pytest.fixture(scope="module")
def hosts(hosts) -> Iterator[object]:
    """The module's own hosts (tests/integration/conftest.py), and afterwards no staging left by the cut upload."""
    yield hosts
    for leftover in glob.glob(str(STAGING / "vmse-h*")):  # staging left by the cut upload
        shutil.rmtree(leftover, ignore_errors=True)


def inventory_of(hosts, directory: Path) -> Inventory:
    """The set's hosts as root-by-key hosts of one cluster; journals go under ``directory``."""
    members = tuple(Host(name=h.name, address=h.address, cluster="lab", roles=("worker",),
                         ssh_key=str(hosts.client_key)) for h in hosts)
    cluster = Cluster("lab", "kubeadm", "1.29.15", "10.244.0.0/16", "10.96.0.0/12", f"{hosts[0].address}:6443",
                      "flannel")
    return Inventory(path=str(directory / "hosts.toml"), hosts=members, clusters=(cluster,),
                     known_hosts=str(hosts.known_hosts))


def run_target(graph: Graph, inventory: Inventory, target: str, deadline: float = 10.0, **options) -> RunResult:
    plan = options.get("plan", False)
    return run(graph, RunContext(inventory, plan=plan),
               RunOptions(target, ssh=SshOptions(known_hosts=inventory.known_hosts, deadline=deadline), **options))


def by_host(result: RunResult, phase: str) -> dict[str, object]:
    return {o.host: o for o in result.outcomes if o.phase == phase}


class CreatedNames:
    """Names created in a directory while watched (Linux inotify): proof that something was, or was not, made."""

    IN_CREATE, IN_MOVED_TO = 0x100, 0x80

    def __init__(self, directory: Path):
        directory.mkdir(mode=0o700, exist_ok=True)
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK)
        if self._fd < 0 or self._libc.inotify_add_watch(self._fd, str(directory).encode(),
                                                        self.IN_CREATE | self.IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {directory}")

    def names(self) -> list[str]:
        found = []
        try:
            data = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return found
        offset = 0
        while offset < len(data):
            _, _, _, length = struct.unpack_from("iIII", data, offset)
            name = data[offset + 16: offset + 16 + length].rstrip(b"\0").decode()
            found.append(name)
            offset += 16 + length
        return found

    def close(self) -> None:
        os.close(self._fd)


# -- push, then nothing to do -------------------------------------------------------------------------


def site_operations(name: str, root: Path) -> Iterator[op.Operation]:
    """What the site phase wants on one host; ``root`` is the host's own directory (they share this filesystem)."""
    config = op.File(f"{root}/etc/app/app.conf", f"name = {name}\n", mode="0640")
    yield config
    yield op.File(f"{root}/etc/app/token", "not-shown-anywhere\n", mode="0600", secret=True)
    yield op.Directory(f"{root}/var/lib/app", mode="0750")
    yield op.Command(op.sh("echo applied >> {}", f"{root}/applied.log"), "apply app.conf", when_changed=(config.label,))
    yield op.Sysctl("net.ipv4.ip_forward", "1")  # per network namespace: this host's own kernel value


def site_graph(roots: dict[str, Path]) -> Graph:
    def operations(ctx):
        return site_operations(ctx.host.name, roots[ctx.host.name])
    return Graph([Phase("site", "files and settings", all_hosts, operations)], [Target("site", "site", ("site",))])


def test_push_to_three_hosts_then_a_second_run_changes_nothing_and_uploads_nothing(hosts, tmp_path):
    inventory = inventory_of(hosts, tmp_path)
    graph = site_graph({h.name: h.root for h in hosts})

    planned = run_target(graph, inventory, "site", plan=True)
    assert [o.status for o in planned.outcomes] == ["planned"] * 3
    assert all(not (h.root / "etc/app/app.conf").exists() for h in hosts)

    watch = CreatedNames(STAGING)
    try:
        first = run_target(graph, inventory, "site")
        staged = [n for n in watch.names() if n.startswith("vmse-")]
    finally:
        watch.close()
    assert staged == []        # a root login: the files went by SFTP straight beside their targets, no staging
    assert first.exit_code == 0 and [o.status for o in first.outcomes] == ["changed"] * 3
    assert all(o.changed == 5 and o.commands_sent == 2 for o in first.outcomes)
    for h in hosts:
        conf = h.root / "etc/app/app.conf"
        assert conf.read_text() == f"name = {h.name}\n" and conf.stat().st_mode & 0o777 == 0o640
        assert (h.root / "etc/app/token").stat().st_mode & 0o777 == 0o600
        assert (h.root / "var/lib/app").stat().st_mode & 0o777 == 0o750
        assert (h.root / "applied.log").read_text() == "applied\n"
        assert _in_namespace(h.name, "cat /proc/sys/net/ipv4/ip_forward") == "1"
        assert sorted(p.name for p in (h.root / "etc/app").iterdir()) == ["app.conf", "token"]

    watch = CreatedNames(STAGING)
    try:
        second = run_target(graph, inventory, "site")
        created = [n for n in watch.names() if n.startswith("vmse-")]
    finally:
        watch.close()
    assert second.exit_code == 0 and second.changed == 0
    assert [(o.status, o.changed, o.commands_sent) for o in second.outcomes] == [("ok", 0, 1)] * 3
    assert created == []
    assert all((h.root / "applied.log").read_text() == "applied\n" for h in hosts)
    assert format_summary(second.outcomes).splitlines()[-1] == "0 changed, 0 failed, 0 blocked, 0 cannot run here"


def test_a_changed_file_is_replaced_and_only_its_dependants_run(hosts, tmp_path):
    inventory = inventory_of(hosts, tmp_path)
    graph = site_graph({h.name: h.root for h in hosts})
    run_target(graph, inventory, "site")
    (hosts[1].root / "etc/app/app.conf").write_text("edited by hand\n")
    result = run_target(graph, inventory, "site")
    outcomes = by_host(result, "site")
    assert outcomes[hosts[1].name].changed == 2  # the file and the command that depends on it
    assert [s.label for s in outcomes[hosts[1].name].steps if s.status == op.CHANGE] == \
        [f"file {hosts[1].root}/etc/app/app.conf", "run apply app.conf"]
    assert outcomes[hosts[0].name].status == outcomes[hosts[2].name].status == "ok"
    assert (hosts[1].root / "etc/app/app.conf").read_text() == f"name = {hosts[1].name}\n"


# -- failures stay where they happen --------------------------------------------------------------------------


def test_a_failing_command_fails_its_host_alone_and_blocks_only_its_later_phases(hosts, tmp_path):
    inventory = inventory_of(hosts, tmp_path)
    broken = hosts[1].name

    def first(ctx):
        marker = f"/tmp/vmse-first-{ctx.host.name}-{tmp_path.name}"
        yield op.Command(op.sh("touch {}", marker), "mark", creates=marker)
        if ctx.host.name == broken:
            yield op.Command("echo 'disk on fire' >&2; exit 3", "break")

    def later(ctx):
        yield op.Command("true", "later step")

    graph = Graph([Phase("first", "first", all_hosts, first), Phase("second", "second", all_hosts, later, ("first",)),
                   Phase("apart", "needs nothing", all_hosts, later)], [Target("t", "t", ("second", "apart"))])
    try:
        result = run_target(graph, inventory, "t")
    finally:
        for h in hosts:
            Path(f"/tmp/vmse-first-{h.name}-{tmp_path.name}").unlink(missing_ok=True)
    assert result.exit_code == 1
    failed = by_host(result, "first")[broken]
    assert failed.status == "failed"
    assert failed.message == "run break failed (exit 3): disk on fire"
    assert by_host(result, "second")[broken].status == "blocked"
    assert by_host(result, "second")[broken].message == f"needs first, which did not finish on {broken} (failed)"
    assert by_host(result, "apart")[broken].status == "changed"
    for name in (hosts[0].name, hosts[2].name):
        assert [by_host(result, p)[name].status for p in ("first", "second", "apart")] == ["changed"] * 3


def test_a_host_that_cannot_do_a_phase_says_so_and_the_run_exits_3(hosts, tmp_path):
    inventory = inventory_of(hosts, tmp_path)

    def install(ctx):
        if ctx.host.name == hosts[2].name:
            raise Unsupported(ctx.host.name, "no kubeadm binaries can be had on this machine")
        yield op.Command("true", "install")

    graph = Graph([Phase("install", "install", all_hosts, install),
                   Phase("init", "init", all_hosts, lambda ctx: [op.Command("true", "init")], ("install",))],
                  [Target("t", "t", ("init",))])
    result = run_target(graph, inventory, "t")
    assert result.exit_code == 3
    assert by_host(result, "install")[hosts[2].name].status == "unsupported"
    assert by_host(result, "install")[hosts[2].name].message == "no kubeadm binaries can be had on this machine"
    assert by_host(result, "init")[hosts[2].name].status == "blocked"
    assert by_host(result, "init")[hosts[0].name].status == "changed"


# -- a cut in the middle of an upload ---------------------------------------------------------------------------


def test_a_connection_cut_mid_upload_leaves_the_target_whole_and_the_next_run_completes(hosts, tmp_path):
    index = 1
    host = hosts[index]
    inventory = inventory_of(hosts, tmp_path)
    target = host.root / "srv/images/big.img"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"the old image\n")
    big = os.urandom(32 << 20)
    graph = Graph([Phase("image", "image", all_hosts, lambda ctx: [op.File(str(target), big)])],
                  [Target("t", "t", ("image",))])

    cutter = threading.Thread(target=_stop_when_staged, args=(hosts, index, 4 << 20))
    cutter.start()
    try:
        started = time.monotonic()
        result = run_target(graph, inventory, "t", limit=(host.name,), deadline=3)
        elapsed = time.monotonic() - started
    finally:
        cutter.join(timeout=60)
        hosts.start(index)
    (outcome,) = result.outcomes
    assert outcome.status == "failed" and "SSH session failed" in outcome.message
    assert elapsed < 30
    assert target.read_bytes() == b"the old image\n"
    # a root login places by SFTP alone: the cut leaves at most the temp beside it, root's, with the final mode
    for left in target.parent.iterdir():
        assert left.name == "big.img" or (left.name.startswith(".big.img.vmstation-") and
                                          (left.stat().st_mode & 0o777, left.stat().st_uid) == (0o644, 0))

    again = run_target(graph, inventory, "t", limit=(host.name,))
    assert [o.status for o in again.outcomes] == ["changed"]
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(big).digest()
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.img"]


def _stop_when_staged(hosts, index: int, size: int) -> None:
    """Power the host off once the temp file beside the target has ``size`` bytes: the upload is under way."""
    pattern = str(hosts[index].root / "srv/images/.big.img.vmstation-*")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for temp in glob.glob(pattern):
            try:
                if os.path.getsize(temp) >= size:
                    hosts.stop(index)
                    return
            except OSError:
                continue
        time.sleep(0.002)


def _in_namespace(netns: str, command: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "sh", "-c", command], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()


# -- one host acting for another: On(...) and a ReadFrom handle -------------------------------------------


def test_an_operation_declared_on_another_host_runs_there_and_a_handle_carries_a_masked_value(hosts, tmp_path):
    """Two hosts each declare a step on the first host (where it runs, in plan and apply: its own address is
    seen there) and read a secret the first host holds, through a typed handle: masked, redacted, delivered."""
    from vmstation.handles import Capture, ReadFrom

    inventory = inventory_of(hosts, tmp_path)
    first, others = hosts[0], list(hosts)[1:]
    (first.root / "secret").write_text("s3cr3t-value-from-the-first-host\n")
    secret = ReadFrom("the first host's secret", secret=True, source=lambda ctx: inventory.hosts[0],
                      script=op.sh("cat -- {}\n", f"{first.root}/secret"), parse=lambda out: out.strip() or None,
                      placeholder="(placeholder)")
    where = Capture("where")
    log = first.root / "acted-for.log"
    roots = {h.name: h.root for h in hosts}

    def operations(ctx):
        acted = op.sh("ip -4 -o addr show | grep -qF {} && echo {} >> {}", f" {first.address}/", ctx.host.name, log)
        yield op.On(inventory.hosts[0], op.Command(acted, f"note {ctx.host.name} on the first host",
                                                   unless=op.sh("grep -qx {} {}", ctx.host.name, log)))
        value = ctx.read(secret)
        assert repr(value) == "***"       # masked wherever it is printed
        yield op.File(f"{roots[ctx.host.name]}/delivered", value.reveal() + "\n", mode="0600", secret=True)
        yield op.Check("ip -4 -o addr show | grep -c ' 10.77.5.'", "where am I", capture=where)

    graph = Graph([Phase("handoff", "act on the first host", lambda inv: inv.hosts[1:], operations)],
                  [Target("t", "t", ("handoff",))])
    options = RunOptions("t", ssh=SshOptions(known_hosts=inventory.known_hosts, deadline=10))
    planned = run(graph, RunContext(inventory, plan=True), RunOptions("t", plan=True, ssh=options.ssh))
    labels = [s.label for o in planned.outcomes for s in o.steps]
    assert f"run note {others[0].name} on the first host (on {first.name})" in labels
    assert not log.exists()                                        # a plan asks there, changes nothing

    run_ctx = RunContext(inventory)
    result = run(graph, run_ctx, options)
    assert [o.status for o in result.outcomes] == ["changed", "changed"], format_summary(result.outcomes)
    assert sorted(log.read_text().split()) == sorted(h.name for h in others)   # ran where the first host's address is
    for host in others:
        assert (host.root / "delivered").read_text() == "s3cr3t-value-from-the-first-host\n"
    assert run_ctx.redact("leaked: s3cr3t-value-from-the-first-host") == "leaked: ***"
    assert run_ctx.captured(where) == "1"

    again = run(graph, RunContext(inventory), options)
    assert [o.status for o in again.outcomes] == ["ok", "ok"], format_summary(again.outcomes)


def test_a_large_local_artifact_is_streamed_to_every_host_and_a_second_run_leaves_it(hosts, tmp_path):
    artifact = tmp_path / "images.tar"
    artifact.write_bytes(os.urandom(5 << 20) + b"end")
    content = op.local_file(artifact)                 # one digest for every host of the run

    def operations(ctx):
        yield op.File(f"{roots[ctx.host.name]}/var/lib/images.tar", content, mode="0600")

    roots = {h.name: h.root for h in hosts}
    graph = Graph([Phase("big", "a large artifact", all_hosts, operations)], [Target("t", "t", ("big",))])
    inventory = inventory_of(hosts, tmp_path)
    first = run_target(graph, inventory, "t", deadline=30)
    assert [o.status for o in first.outcomes] == ["changed"] * 3, format_summary(first.outcomes)
    assert all((h.root / "var/lib/images.tar").read_bytes() == artifact.read_bytes() for h in hosts)
    again = run_target(graph, inventory, "t")
    assert [o.status for o in again.outcomes] == ["ok"] * 3


# -- issue 16: the whole target probed up front ----------------------------------------------------------------------


def lookahead_graph(root_of) -> Graph:
    """Three phases; the second reads the host's facts, the third's guard sees what the first made."""
    def first(ctx):
        yield op.File(f"{root_of(ctx)}/one.conf", "one\n")

    def second(ctx):
        yield op.File(f"{root_of(ctx)}/kernel.conf", f"kernel = {ctx.facts.kernel}\n")

    def third(ctx):
        yield op.Command(op.sh("echo ran >> {}", f"{root_of(ctx)}/third.log"), "third",
                         creates=f"{root_of(ctx)}/one.conf")
    phases = [Phase("first", "first", all_hosts, first), Phase("second", "second", all_hosts, second, ("first",)),
              Phase("third", "third", all_hosts, third, ("second",))]
    return Graph(phases, [Target("t", "t", ("third",))])


def test_a_whole_no_op_is_one_command_per_host_and_a_change_makes_later_phases_ask_again(hosts, tmp_path):
    roots = {h.name: h.root / f"ahead-{tmp_path.name}" for h in hosts}
    graph = lookahead_graph(lambda ctx: roots[ctx.host.name])
    inventory = inventory_of(hosts, tmp_path)

    first = run_target(graph, inventory, "t")
    assert first.exit_code == 0
    steps = {(o.phase, o.host): {s.label: s.status for s in o.steps} for o in first.outcomes}
    for h in hosts:
        # the third phase was asked again after the first placed one.conf: its guard saw the file, nothing ran
        assert steps[("third", h.name)] == {"run third": op.OK}
        assert not (roots[h.name] / "third.log").exists()
        assert (roots[h.name] / "kernel.conf").read_text().startswith("kernel = ")
    assert (tmp_path / ".vmstation" / "facts.json").exists()       # the facts this run saw, for the next one

    second = run_target(graph, inventory, "t")
    assert second.exit_code == 0 and second.changed == 0
    sent = {h.name: sum(o.commands_sent for o in second.outcomes if o.host == h.name) for h in hosts}
    assert sent == {h.name: 1 for h in hosts}          # every phase's probes and the facts in one command

    (roots[hosts[1].name] / "one.conf").write_text("edited\n")
    third = run_target(graph, inventory, "t")
    changed = {(o.phase, o.host) for o in third.outcomes if o.changed}
    assert changed == {("first", hosts[1].name)}
    assert (roots[hosts[1].name] / "one.conf").read_text() == "one\n"


def test_every_host_is_asked_at_the_start_even_when_its_first_phase_waits_for_another_host(hosts, tmp_path):
    """deploy-debian's shape: a check on one host first, every host's phases after it. Each host is connected
    to and asked at the start, side by side: the others' probes ran while the first host's slow check did,
    and a no-op is still one command per host."""
    roots = {h.name: h.root / f"early-{tmp_path.name}" for h in hosts}
    first_host = hosts[0].name

    def gate(ctx):
        yield op.Check(op.sh("sleep 1; mkdir -p {0}; date +%s.%N > {0}/gate-done", str(roots[ctx.host.name])),
                       "a slow check on the first host")

    def rest(ctx):
        root = str(roots[ctx.host.name])
        yield op.Check(op.sh("mkdir -p {0}; date +%s.%N > {0}/asked", root), "every host asked")
    graph = Graph([Phase("gate", "gate", lambda inventory: [h for h in inventory.hosts if h.name == first_host],
                         gate),
                   Phase("rest", "rest", all_hosts, rest, ("gate",))], [Target("t", "t", ("rest",))])
    inventory = inventory_of(hosts, tmp_path)

    result = run_target(graph, inventory, "t")
    assert result.exit_code == 0, [(o.phase, o.host, o.message) for o in result.outcomes]
    gate_done = float((roots[first_host] / "gate-done").read_text())
    for h in hosts[1:]:
        assert float((roots[h.name] / "asked").read_text()) < gate_done      # asked while the gate still ran
    sent = {h.name: sum(o.commands_sent for o in result.outcomes if o.host == h.name) for h in hosts}
    assert sent == {h.name: 1 for h in hosts}
