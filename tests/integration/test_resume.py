"""Hosts that are down, and --resume, on real sshd hosts (prefix vmse, 10.77.5.0/24).

A host that is powered off, or that has no SSH listener, fails alone within its
connect deadline while the others finish; its later phases are blocked. Once it
is back, ``--resume`` runs only what did not finish (and the volatile phases).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


from vmstation import operations as op
from vmstation.context import RunContext
from vmstation.graph import Graph, Phase, Target, all_hosts
from vmstation.inventory import Cluster, Host, Inventory
from vmstation.runner import RunOptions, RunResult, run
from vmstation.transport import SshOptions

DEADLINE = 3.0
NO_LISTENER_PORT = 2222


def inventory_of(hosts, directory: Path, extra: tuple[Host, ...] = ()) -> Inventory:
    members = tuple(Host(name=h.name, address=h.address, cluster="lab", roles=("worker",),
                         ssh_key=str(hosts.client_key)) for h in hosts) + extra
    cluster = Cluster("lab", "kubeadm", "1.29.15", "10.244.0.0/16", "10.96.0.0/12", f"{hosts[0].address}:6443",
                      "flannel")
    return Inventory(path=str(directory / "hosts.toml"), hosts=members, clusters=(cluster,),
                     known_hosts=str(hosts.known_hosts))


def two_phase_graph(roots: dict[str, Path]) -> Graph:
    """base -> extra, and a volatile phase whose captured value later phases would use."""
    def base(ctx):
        yield op.File(f"{roots[ctx.host.name]}/base.conf", f"base of {ctx.host.name}\n")

    def extra(ctx):
        yield op.File(f"{roots[ctx.host.name]}/extra.conf", "extra\n")

    def token(ctx):
        yield op.Check("echo fresh-token", "read the join token", capture=f"token-{ctx.host.name}")

    return Graph([Phase("base", "base files", all_hosts, base),
                  Phase("token", "join token", all_hosts, token, ("base",), volatile=True),
                  Phase("extra", "extra files", all_hosts, extra, ("token",))],
                 [Target("site", "site", ("extra",))])


def run_site(graph: Graph, inventory: Inventory, resume: bool = False, listener=None) -> tuple[RunResult, RunContext]:
    run_ctx = RunContext(inventory)
    options = RunOptions("site", resume=resume, ssh=SshOptions(known_hosts=inventory.known_hosts, deadline=DEADLINE))
    return run(graph, run_ctx, options, listener), run_ctx


class PhaseClock:
    """When each phase started, seconds after the clock was made (a runner listener)."""

    def __init__(self):
        self.zero = time.monotonic()
        self.started: dict[str, float] = {}

    def __call__(self, event: str, data: dict) -> None:
        if event == "phase":
            self.started[data["phase"]] = time.monotonic() - self.zero


def statuses(result: RunResult) -> dict[tuple[str, str], str]:
    return {(o.phase, o.host): o.status for o in result.outcomes}


def test_down_hosts_fail_alone_within_their_deadline_and_resume_finishes_them(hosts, tmp_path):
    roots = {h.name: h.root / tmp_path.name for h in hosts}
    for root in roots.values():
        root.mkdir()
    roots["vmse-nolistener"] = tmp_path / "nolistener"
    no_listener = Host(name="vmse-nolistener", address=hosts[2].address, ssh_port=NO_LISTENER_PORT, cluster="lab",
                       roles=("worker",), ssh_key=str(hosts.client_key))
    inventory = inventory_of(hosts, tmp_path, (no_listener,))
    graph = two_phase_graph(roots)
    up, off = [hosts[0].name, hosts[2].name], hosts[1].name

    hosts.stop(1)
    try:
        clock = PhaseClock()
        first, _ = run_site(graph, inventory, listener=clock)
    finally:
        hosts.start(1)
    # the first phase waits for its slowest host: the down ones give up at their deadline (plus at most one
    # retry back-off of 3 s), not at some TCP timeout
    assert clock.started["token"] < DEADLINE + 4.5, f"base took {clock.started['token']:.1f}s"
    got = statuses(first)
    for name in up:
        assert [got[(phase, name)] for phase in ("base", "token", "extra")] == ["changed", "ok", "changed"]
        assert (roots[name] / "extra.conf").read_text() == "extra\n"
    for name in (off, "vmse-nolistener"):
        failed = next(o for o in first.outcomes if (o.phase, o.host) == ("base", name))
        assert failed.status == "failed" and "cannot reach" in failed.message
        assert got[("token", name)] == got[("extra", name)] == "blocked"
    blocked = next(o for o in first.outcomes if (o.phase, o.host) == ("token", off))
    assert blocked.message == f"needs base, which did not finish on {off} (failed)"
    assert first.exit_code == 1

    inventory = inventory_of(hosts, tmp_path)  # the host without a listener is taken out of the inventory
    second, run_ctx = run_site(graph, inventory, resume=True)
    got = statuses(second)
    for name in up:
        assert (got[("base", name)], got[("extra", name)]) == ("resumed", "resumed")
        assert got[("token", name)] == "ok"  # volatile: runs again so later phases have its value
    assert [got[(phase, off)] for phase in ("base", "token", "extra")] == ["changed", "ok", "changed"]
    assert (roots[off] / "extra.conf").read_text() == "extra\n"
    assert run_ctx.values[f"token-{off}"] == "fresh-token"
    assert all(o.commands_sent == 0 for o in second.outcomes if o.status == "resumed")
    assert second.exit_code == 0

    third, _ = run_site(graph, inventory, resume=True)
    assert {s for (phase, _), s in statuses(third).items() if phase != "token"} == {"resumed"}

    fourth, _ = run_site(graph, inventory)
    assert fourth.changed == 0 and {o.status for o in fourth.outcomes} == {"ok"}


def test_the_journal_records_every_outcome_and_the_end_of_the_run(hosts, tmp_path):
    roots = {h.name: h.root / tmp_path.name for h in hosts}
    for root in roots.values():
        root.mkdir()
    result, _ = run_site(two_phase_graph(roots), inventory_of(hosts, tmp_path))
    journal = Path(result.journal_path)
    assert journal.parent == tmp_path / ".vmstation" / "runs"
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert entries[0] == {"run": "start", "target": "site", "pid": os.getpid(), "plan": False}
    entries = entries[1:]
    assert len(entries) == 3 * 3 + 1
    assert {(e["phase"], e["host"]) for e in entries[:-1]} == {(p, h.name) for p in ("base", "token", "extra")
                                                                for h in hosts}
    assert all(e["status"] in ("changed", "ok") and e["commands"] >= 1 for e in entries[:-1])
    assert entries[-1] == {"run": "end", "target": "site", "status": "done", "exit_code": 0, "changed": 6,
                           "seconds": entries[-1]["seconds"]}
