"""Run a target: phases in order, hosts in parallel within a phase.

- Phases run one after another in the graph's order; within a phase every
  selected host runs at once (bounded by ``forks``). So a phase that needs all
  hosts of a cluster (wait for nodes Ready) starts only when all of them are done.
- A host that fails a phase is blocked from the phases that need it; other hosts
  and independent phases carry on. A phase whose need ran on other hosts (a worker
  join needs the control plane's init) is blocked where that need failed.
- One SSH connection per host per run, opened the first time a phase needs it.
- Every (phase, host) outcome goes to the journal; ``resume`` skips what the last
  run of the same target finished, when what it would do now is the same.
- Honest under faults: any error of one (phase, host) is that pair's failure; one
  applying run per inventory (``RunLock``); SIGINT or SIGTERM starts nothing new,
  cuts the channels, records ``interrupted`` and ends the run (exit 130) within a
  few seconds; a second signal ends the process at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from typing import Callable, Iterable

from vmstation.context import HostContext, RunContext
from vmstation.errors import ConnectError, HostError, Interrupted, Unsupported
from vmstation.execute import PhaseOutcome, inputs_digest, run_phase_on_host
from vmstation.graph import Graph, Phase
from vmstation.inventory import Host
from vmstation.journal import Journal, RunLock, state_dir
from vmstation.lookahead import Lookahead
from vmstation.status import Outcome
from vmstation.templates import warm_up as warm_up_templates
from vmstation.transport import HostConnection, SshOptions, warm_up

log = logging.getLogger(__name__)


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
    step_deadline: float | None = None      # seconds a step's command may run by default (None: 300)


@dataclass
class RunResult:
    target: str
    outcomes: list[PhaseOutcome] = field(default_factory=list)
    journal_path: str | None = None
    seconds: float = 0.0
    interrupted: str = ""        # the signal that ended the run early, if one did

    @property
    def failed(self) -> list[PhaseOutcome]:
        return [o for o in self.outcomes if Outcome(o.status).bad]

    @property
    def unsupported(self) -> list[PhaseOutcome]:
        return [o for o in self.outcomes if o.status == Outcome.UNSUPPORTED]

    @property
    def changed(self) -> int:
        return sum(o.changed for o in self.outcomes if o.status != Outcome.PLANNED)

    @property
    def exit_code(self) -> int:
        """0 all done, 1 something failed, 3 stopped where this machine cannot go on (unsupported),
        130 interrupted.

        Phases blocked only because a need could not run here are part of that stop, not failures.
        """
        if self.interrupted:
            return 130
        if any(o.status == Outcome.FAILED for o in self.outcomes):
            return 1
        if self.unsupported:
            return 3
        return 1 if self.failed else 0


Listener = Callable[[str, dict], None]


INTERRUPT_GRACE = 3.0     # seconds the pairs in flight get to end after their channels were cut


def run(graph: Graph, run_ctx: RunContext, options: RunOptions, listener: Listener | None = None) -> RunResult:
    """Run (or plan) ``options.target`` against ``run_ctx.inventory``."""
    phases = graph.order(options.target, options.only, options.start_from)
    journal = Journal.for_inventory(run_ctx.inventory.path, options.target, plan=options.plan)
    lock = contextlib.nullcontext() if options.plan else RunLock(run_ctx.inventory.path)
    with lock:
        crashed = [] if options.plan else journal.close_crashed_runs()
        for path in crashed:
            log.warning("the run of %s journaled in %s ended without an end record: it crashed", options.target, path)
        journal.start()
        return _run_phases(phases, journal, run_ctx, options, listener or (lambda event, data: None))


def _run_phases(phases: list[Phase], journal: Journal, run_ctx: RunContext, options: RunOptions,
                notify: Listener) -> RunResult:
    finished = journal.last_finished() if options.resume else {}
    ssh = options.ssh or SshOptions(known_hosts=run_ctx.inventory.known_hosts)
    pool = ConnectionPool(ssh, run_ctx)
    warm_up(ssh)
    warm_up_templates()
    ahead = Lookahead(phases, run_ctx, lambda phase: _selected(phase, run_ctx, options.limit), pool,
                      state_dir(run_ctx.inventory.path) / "facts.json")

    # A command run on a host for another one (a join token, a drain on the control plane) may change what
    # the answers asked ahead say: every host asks afresh after it.
    def remote(host: Host, script: str) -> str:
        ahead.forget()
        return pool.get(host).run(script).stdout

    def connect(host: Host) -> HostConnection:
        ahead.forget()
        return pool.get(host)
    run_ctx.remote, run_ctx.connect = remote, connect
    run_ctx.limit = tuple(options.limit)   # node-remove acts on the hosts the operator named
    if options.step_deadline:
        run_ctx.step_deadline = options.step_deadline
    run_ctx.digest_key = journal.digest_key()
    result = RunResult(options.target, journal_path=str(journal.path))
    started = time.monotonic()
    status: dict[tuple[str, str], str] = {}
    executor = ThreadPoolExecutor(max_workers=max(1, options.forks))
    stop = Stop(pool)
    end, trace = "crashed", ""
    try:
        with stop.on_signals():
            _ask_every_host_early(phases, run_ctx, options, executor, ahead)
            for phase in phases:
                if stop.reason:
                    break
                hosts = _selected(phase, run_ctx, options.limit)
                ahead.starting(phase)
                notify("phase", {"phase": phase.name, "title": phase.title, "hosts": [h.name for h in hosts]})
                work = {}
                for host in hosts:
                    reason = _blocked_by(phase, host, status, options.plan)
                    if reason:
                        outcome = PhaseOutcome(phase.name, host.name, Outcome.BLOCKED, message=reason)
                    elif _unchanged_since_last_run(phase, host, run_ctx, finished):
                        outcome = PhaseOutcome(phase.name, host.name, Outcome.RESUMED,
                                               message="finished in the last run",
                                               digest=finished[(phase.name, host.name)])
                    else:
                        work[host.name] = executor.submit(_run_one, phase, host, run_ctx, pool, notify, ahead)
                        continue
                    _record(outcome, status, result, journal, notify, run_ctx)
                for name in sorted(work, key=[h.name for h in hosts].index):
                    outcome = _outcome_of(work[name], stop, phase, name)
                    _record(outcome, status, result, journal, notify, run_ctx)
        result.interrupted = stop.reason
        end = "interrupted" if stop.reason else "failed" if result.exit_code == 1 else "done"
    except BaseException:
        trace = run_ctx.redact(traceback.format_exc())
        raise
    finally:
        executor.shutdown(wait=not stop.reason, cancel_futures=True)
        pool.close_all()
        result.seconds = time.monotonic() - started
        journal.close(result, end, trace)
    return result


def _ask_every_host_early(phases: list[Phase], run_ctx: RunContext, options: RunOptions, executor,
                          ahead: Lookahead) -> None:
    """Connect to every host of the run and ask its probes at once, in parallel, before the first phase.

    Only when every host gets a worker of its own (``forks``) and no phase may be skipped by ``--resume``
    (which decides without asking hosts): then asking early is exactly what each host's first phase
    would do, only sooner.
    """
    hosts = list({h.name: h for phase in phases for h in _selected(phase, run_ctx, options.limit)}.values())
    if options.resume or len(hosts) < 2 or len(hosts) > options.forks:
        return
    for host in hosts:
        executor.submit(ahead.ask_early, host)


def _outcome_of(future: Future, stop: "Stop", phase: Phase, host: str) -> PhaseOutcome:
    """The pair's outcome; once the run is interrupted, at most INTERRUPT_GRACE more seconds of waiting."""
    while True:
        done, _ = wait_for([future], timeout=0.5)
        if done:
            outcome = future.result()
            break
        if stop.reason and time.monotonic() - stop.since > INTERRUPT_GRACE:
            outcome = PhaseOutcome(phase.name, host, Outcome.INTERRUPTED)
            break
    if stop.reason and outcome.status in (Outcome.FAILED, Outcome.INTERRUPTED):
        outcome.status, outcome.message = Outcome.INTERRUPTED, f"interrupted by {stop.reason} while it ran"
    return outcome


def _unchanged_since_last_run(phase: Phase, host: Host, run_ctx: RunContext,
                              finished: dict[tuple[str, str], str]) -> bool:
    """--resume: the pair finished in the last run, and what it would do now is what it did then.

    Decided from the inventory and templates alone (no host is asked): a phase that needs the host's facts
    or another host's answer to know what it would do runs again.
    """
    recorded = finished.get((phase.name, host.name))
    if not recorded or phase.volatile:
        return False
    offline = dataclasses.replace(run_ctx, remote=_no_remote(host))
    try:
        operations = list(phase.operations(HostContext(offline, host, None)))
    except Exception:  # needs facts, another host, or fails: let the real run decide
        return False
    return inputs_digest(operations, run_ctx.digest_key) == recorded


def _no_remote(host: Host):
    def refuse(other: Host, script: str) -> str:
        raise Unsupported(host.name, "deciding --resume asks no host")
    return refuse


def _run_one(phase: Phase, host: Host, run_ctx: RunContext, pool: "ConnectionPool", notify: Listener,
             ahead: Lookahead | None = None) -> PhaseOutcome:
    notify("start", {"phase": phase.name, "host": host.name})
    started = time.monotonic()
    try:
        connection = pool.get(host)
    except HostError as exc:
        return PhaseOutcome(phase.name, host.name, Outcome.FAILED, message=exc.message,
                            seconds=time.monotonic() - started)
    except Exception as exc:  # a surprise while connecting is this host's failure, not the run's end
        return PhaseOutcome(phase.name, host.name, Outcome.FAILED,
                            message=f"unexpected error: {type(exc).__name__}: {exc}",
                            seconds=time.monotonic() - started, trace=traceback.format_exc())
    ctx = HostContext(run_ctx, host, connection, facts_source=lambda: pool.facts(host))
    try:
        ctx.prefetched = ahead.answers(phase, host) if ahead else None    # the target's probes, asked up front
    except Exception:  # noqa: BLE001 - a surprise up front only costs the phase its own probe command
        log.warning("%s: asking ahead failed; %s asks on its own\n%s", host.name, phase.name, traceback.format_exc())
        ctx.prefetched = None
    outcome = run_phase_on_host(phase, ctx)
    outcome.commands_sent = pool.commands_not_counted(host)   # the phase's own and, for its first, asked ahead
    if outcome.changed:
        pool.forget_facts(host)  # this phase changed the host: the next phase asks afresh
    if ahead and not run_ctx.plan and (outcome.changed or outcome.status != Outcome.OK and
                                       any(s.runs_remotely for s in outcome.steps)):
        ahead.forget()           # it changed something (or may have, failing while it applied): every host asks afresh
    return outcome


def _record(outcome: PhaseOutcome, status, result: RunResult, journal: Journal, notify: Listener,
            run_ctx: RunContext) -> None:
    outcome.message = run_ctx.redact(outcome.message)
    outcome.trace = run_ctx.redact(outcome.trace)
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
    bad = {Outcome.FAILED, Outcome.BLOCKED} | (set() if plan else {Outcome.UNSUPPORTED})
    for need in phase.needs:
        own = status.get((need, host.name))
        if own in bad:
            return f"needs {need}, which did not finish on {host.name} ({own})"
        if own is None:
            others = sorted(h for (p, h), s in status.items() if p == need and s in bad)
            if others:
                return f"needs {need}, which did not finish on {', '.join(others)}"
    return ""


class Stop:
    """SIGINT/SIGTERM during a run: the first interrupts it (``reason``), a second ends the process at once."""

    def __init__(self, pool: "ConnectionPool"):
        self.pool, self.reason, self.since = pool, "", 0.0

    @contextlib.contextmanager
    def on_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only; a run in another thread is stopped by its caller
            return
        previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _handle(self, number: int, frame) -> None:
        if self.reason:
            os.write(2, b"vmstation: second interrupt: stopping now\n")
            os._exit(130)
        self.reason, self.since = signal.Signals(number).name, time.monotonic()
        os.write(2, f"vmstation: {self.reason}: starting nothing new, cutting the connections "
                 "(again to stop at once)\n".encode())
        self.pool.interrupt(self.reason)


class ConnectionPool:
    """One connection per host per run; a host that cannot be reached fails fast afterwards."""

    def __init__(self, options: SshOptions, run_ctx: RunContext):
        self.options = options
        self.run_ctx = run_ctx
        self._connections: dict[str, HostConnection] = {}
        self._errors: dict[str, HostError] = {}
        self._facts: dict[str, object] = {}
        self._counted: dict[str, int] = {}       # commands_sent per host already counted for a phase
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.stopped = ""

    def get(self, host: Host) -> HostConnection:
        with self._lock_for(host):
            if self.stopped:
                raise Interrupted(host.name, f"interrupted by {self.stopped}: nothing new starts")
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

    def commands_not_counted(self, host: Host) -> int:
        """Commands sent to ``host`` since this was last asked: each counted for the phase that caused it."""
        connection = self._connections.get(host.name)
        if connection is None:
            return 0
        with self._guard:
            counted = self._counted.get(host.name, 0)
            self._counted[host.name] = connection.commands_sent
        return connection.commands_sent - counted

    def facts(self, host: Host):
        from vmstation.facts import host_facts_script, parse_host_facts

        with self._lock_for(host):
            if host.name not in self._facts:
                output = self._connections[host.name].run(host_facts_script(), check=False).stdout
                self._facts[host.name] = parse_host_facts(output)
            return self._facts[host.name]

    def remember_facts(self, host: Host, facts) -> None:
        with self._lock_for(host):
            self._facts[host.name] = facts

    def forget_facts(self, host: Host) -> None:
        self._facts.pop(host.name, None)

    def close_all(self) -> None:
        for connection in list(self._connections.values()):
            try:
                connection.close()
            except Exception:  # closing a dead connection must not hide the run's result
                pass

    def interrupt(self, reason: str) -> None:
        """No new connection from now on; cut the open ones, so the commands in flight end at once."""
        self.stopped = reason
        for connection in list(self._connections.values()):
            connection.abort()

    def _become_password(self, host: Host):
        if host.is_root or not host.become_password:
            return None
        return self.run_ctx.secret(host.become_password)

    def _lock_for(self, host: Host) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(host.name, threading.Lock())
