"""Run a target: phases in order, hosts in parallel within a phase.

- Phases run one after another in the graph's order; within a phase every
  selected host runs at once (bounded by ``forks``). So a phase that needs all
  hosts of a cluster (wait for nodes Ready) starts only when all of them are done.
- A host that fails a phase is blocked from the phases that need it; other hosts
  and independent phases carry on. A phase whose need ran on other hosts (a worker
  join needs the control plane's init) is blocked where that need failed.
- One SSH connection per host per run, opened the first time a phase needs it.
- Every (phase, host) outcome goes to the journal; ``resume`` skips what the last
  run of the same target finished.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

from vmstation.context import HostContext, RunContext
from vmstation.errors import ConnectError, HostError
from vmstation.execute import PhaseOutcome, run_phase_on_host
from vmstation.graph import Graph, Phase
from vmstation.inventory import Host
from vmstation.journal import Journal
from vmstation.templates import warm_up as warm_up_templates
from vmstation.transport import HostConnection, SshOptions, warm_up


@dataclass(frozen=True)
class RunOptions:
    target: str
    plan: bool = False
    only: tuple[str, ...] = ()
    start_from: str | None = None
    limit: tuple[str, ...] = ()
    resume: bool = False
    forks: int = 32
    ssh: SshOptions | None = None


@dataclass
class RunResult:
    target: str
    outcomes: list[PhaseOutcome] = field(default_factory=list)
    journal_path: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[PhaseOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "blocked")]

    @property
    def unsupported(self) -> list[PhaseOutcome]:
        return [o for o in self.outcomes if o.status == "unsupported"]

    @property
    def changed(self) -> int:
        return sum(o.changed for o in self.outcomes if o.status != "planned")

    @property
    def exit_code(self) -> int:
        """0 all done, 1 something failed, 3 stopped where this machine cannot go on (unsupported).

        Phases blocked only because a need could not run here are part of that stop, not failures.
        """
        if any(o.status == "failed" for o in self.outcomes):
            return 1
        if self.unsupported:
            return 3
        return 1 if self.failed else 0


Listener = Callable[[str, dict], None]


def run(graph: Graph, run_ctx: RunContext, options: RunOptions, listener: Listener | None = None) -> RunResult:
    """Run (or plan) ``options.target`` against ``run_ctx.inventory``."""
    notify = listener or (lambda event, data: None)
    phases = graph.order(options.target, options.only, options.start_from)
    journal = Journal.for_inventory(run_ctx.inventory.path, options.target, plan=options.plan)
    finished = journal.last_finished() if options.resume else set()
    ssh = options.ssh or SshOptions(known_hosts=run_ctx.inventory.known_hosts)
    pool = ConnectionPool(ssh, run_ctx)
    warm_up(ssh)
    warm_up_templates()
    run_ctx.remote = lambda host, script: pool.get(host).run(script).stdout
    run_ctx.values["limit"] = tuple(options.limit)   # node-remove acts on the hosts the operator named
    result = RunResult(options.target, journal_path=str(journal.path))
    started = time.monotonic()
    status: dict[tuple[str, str], str] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, options.forks)) as executor:
            for phase in phases:
                hosts = _selected(phase, run_ctx, options.limit)
                notify("phase", {"phase": phase.name, "title": phase.title, "hosts": [h.name for h in hosts]})
                work = {}
                for host in hosts:
                    reason = _blocked_by(phase, host, status, options.plan)
                    if reason:
                        outcome = PhaseOutcome(phase.name, host.name, "blocked", message=reason)
                    elif (phase.name, host.name) in finished and not phase.volatile:
                        outcome = PhaseOutcome(phase.name, host.name, "resumed", message="finished in the last run")
                    else:
                        work[host.name] = executor.submit(_run_one, phase, host, run_ctx, pool, notify)
                        continue
                    _record(outcome, status, result, journal, notify, run_ctx)
                for name in sorted(work, key=[h.name for h in hosts].index):
                    _record(work[name].result(), status, result, journal, notify, run_ctx)
    finally:
        pool.close_all()
        result.seconds = time.monotonic() - started
        journal.close(result)
    return result


def _run_one(phase: Phase, host: Host, run_ctx: RunContext, pool: "ConnectionPool", notify: Listener) -> PhaseOutcome:
    notify("start", {"phase": phase.name, "host": host.name})
    started = time.monotonic()
    try:
        connection = pool.get(host)
    except HostError as exc:
        return PhaseOutcome(phase.name, host.name, "failed", message=exc.message, seconds=time.monotonic() - started)
    ctx = HostContext(run_ctx, host, connection, facts_source=lambda: pool.facts(host))
    outcome = run_phase_on_host(phase, ctx)
    if outcome.changed:
        pool.forget_facts(host)  # this phase changed the host: the next phase asks afresh
    return outcome


def _record(outcome: PhaseOutcome, status, result: RunResult, journal: Journal, notify: Listener,
            run_ctx: RunContext) -> None:
    outcome.message = run_ctx.redact(outcome.message)
    status[(outcome.phase, outcome.host)] = outcome.status
    result.outcomes.append(outcome)
    journal.record(outcome)
    notify("outcome", {"outcome": outcome})


def _selected(phase: Phase, run_ctx: RunContext, limit: Iterable[str]) -> list[Host]:
    hosts = list(phase.select(run_ctx.inventory))
    limit = set(limit)
    return [h for h in hosts if not limit or h.name in limit]


def _blocked_by(phase: Phase, host: Host, status: dict[tuple[str, str], str], plan: bool) -> str:
    """Why ``host`` cannot run ``phase``: a need that did not succeed on it, or on the hosts it ran on.

    A plan goes on past what cannot run on this machine, so that it shows every phase.
    """
    bad = {"failed", "blocked"} if plan else {"failed", "blocked", "unsupported"}
    for need in phase.needs:
        own = status.get((need, host.name))
        if own in bad:
            return f"needs {need}, which did not finish on {host.name} ({own})"
        if own is None:
            others = sorted(h for (p, h), s in status.items() if p == need and s in bad)
            if others:
                return f"needs {need}, which did not finish on {', '.join(others)}"
    return ""


class ConnectionPool:
    """One connection per host per run; a host that cannot be reached fails fast afterwards."""

    def __init__(self, options: SshOptions, run_ctx: RunContext):
        self.options = options
        self.run_ctx = run_ctx
        self._connections: dict[str, HostConnection] = {}
        self._errors: dict[str, HostError] = {}
        self._facts: dict[str, object] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, host: Host) -> HostConnection:
        with self._lock_for(host):
            if host.name in self._errors:
                raise ConnectError(host.name, f"unreachable earlier in this run: {self._errors[host.name].message}")
            if host.name not in self._connections:
                from vmstation.transport import connect

                try:
                    password = self._become_password(host)
                    self._connections[host.name] = connect(host, self.options, password)
                except HostError as exc:
                    self._errors[host.name] = exc
                    raise
            return self._connections[host.name]

    def facts(self, host: Host):
        from vmstation.facts import host_facts_script, parse_host_facts

        with self._lock_for(host):
            if host.name not in self._facts:
                output = self._connections[host.name].run(host_facts_script(), check=False).stdout
                self._facts[host.name] = parse_host_facts(output)
            return self._facts[host.name]

    def forget_facts(self, host: Host) -> None:
        self._facts.pop(host.name, None)

    def close_all(self) -> None:
        for connection in self._connections.values():
            try:
                connection.close()
            except Exception:  # closing a dead connection must not hide the run's result
                pass

    def _become_password(self, host: Host):
        if host.is_root or not host.become_password:
            return None
        return self.run_ctx.secret(host.become_password)

    def _lock_for(self, host: Host) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(host.name, threading.Lock())
