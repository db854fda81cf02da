"""Every phase of a target probed up front: one command per host for a whole no-op.

The first time a host is needed, the operations of every phase still to come on it are built and all
their probes sent in ONE command (``facts.probe_script``), with the host facts when a phase reads them.
A phase then decides from those answers, sending nothing, as long as

- what it would do is what was built up front (the digest of its operations is the same: values an
  earlier phase captured, another host's answers, could change it), and
- nothing changed anywhere since: a phase that changed something on any host (or a command run on a host
  for another one, such as a join token) makes every host probe again, from the next phase on, in one
  command (later facts may depend on the change: a package installed, a node joined).

Phases read host facts (OS, versions) to know their operations. Up front they see the facts the host
reported last time (``.vmstation/facts.json``, kept per inventory, not secret) and the same command asks
the facts afresh: a phase built on facts that turned out different is probed again at its turn. A phase
that cannot be built up front (it needs another host, or the facts of a host never seen) is probed at its
turn too, as without this module.

The runner asks every host at the start of a run, all at once (``ask_early``): a host whose first phase
waits for another host's (deploy-debian checks the control plane's certificates first) is then not
connected to only when that phase comes, one host after another.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

from vmstation import facts as facts_mod
from vmstation.context import HostContext, RunContext
from vmstation.errors import HostError, Unsupported
from vmstation.execute import inputs_digest, pending_markers, phase_probes
from vmstation.graph import Phase
from vmstation.inventory import Host


class _NoFacts(Exception):
    """A phase read host facts of a host never seen before: it cannot be built up front."""


class Lookahead:
    """The answers asked up front, per (phase, host), with the digest of the operations they were asked for."""

    def __init__(self, phases: list[Phase], run_ctx: RunContext, selected, pool, memo: Path | None):
        self._phases = phases
        self._run_ctx = run_ctx
        self._selected = selected          # phase -> the hosts it runs on (the runner's selection and --limit)
        self._pool = pool
        self._memo = FactsMemo(memo)
        self._answers: dict[tuple[str, str], tuple[str, list[str]]] = {}
        self._asked: set[str] = set()
        self._generation = 0               # how many times everything was forgotten (``forget``)
        self._wave = ""                    # the phase the runner is running now (``starting``)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def answers(self, phase: Phase, host: Host) -> tuple[str, list[str]] | None:
        """``(digest, answers)`` for ``phase`` on ``host``, asking the host once for every phase from here on."""
        with self._lock_for(host.name):
            with self._guard:
                ready = self._answers.pop((phase.name, host.name), None)
                if ready is not None:
                    return ready
                ask = host.name not in self._asked
                self._asked.add(host.name)
            if ask:
                self._ask(phase, host)
            with self._guard:
                return self._answers.pop((phase.name, host.name), None)

    def ask_early(self, host: Host) -> None:
        """Ask ``host`` now, from its first phase on, so that its answers are ready when its phases come."""
        first = next((p for p in self._phases if host.name in {h.name for h in self._selected(p)}), None)
        if first is not None:
            with self._lock_for(host.name):
                with self._guard:
                    if host.name in self._asked:
                        return
                    self._asked.add(host.name)
                self._ask(first, host)

    def starting(self, phase: Phase) -> None:
        """The runner starts ``phase`` on its hosts: a change during it does not spoil its own answers."""
        with self._guard:
            self._wave = phase.name

    def forget(self) -> None:
        """Something changed: every host probes again, from its next phase on (the one running keeps its answers)."""
        with self._guard:
            # The phase running now keeps its answers: its hosts run side by side, asked early or not.
            self._answers = {key: answer for key, answer in self._answers.items() if key[0] == self._wave}
            self._asked.clear()
            self._generation += 1

    def _ask(self, start: Phase, host: Host) -> None:
        with self._guard:
            generation = self._generation
        guess = self._memo.get(host.name)
        built, wants_facts = [], False
        for phase in self._phases[self._phases.index(start):]:
            if host.name not in {h.name for h in self._selected(phase)}:
                continue
            read: list[bool] = []
            try:
                operations, ctx = self._build(phase, host, guess, read)
            except _NoFacts:
                wants_facts = True
                continue
            except Exception:  # noqa: BLE001 - it needs another host or fails: the phase's own turn decides
                wants_facts = wants_facts or bool(read)
                continue
            wants_facts = wants_facts or bool(read)
            if operations:
                pending = pending_markers(phase.name, host.name, operations)
                digest = inputs_digest(operations, self._run_ctx.digest_key)
                built.append((phase.name, digest, phase_probes(operations, ctx, pending), bool(read)))
        if not built:
            return
        sections = [facts_mod.host_facts_script() if wants_facts else ""]
        sections += [probe for _, _, probes, _ in built for probe in probes]
        token = facts_mod.new_token()
        try:
            output = self._pool.get(host).run(facts_mod.probe_script(sections, token), check=False).stdout
        except HostError:
            return          # each phase asks on its own turn and fails there, as it would have
        answers = facts_mod.split_sections(output, token, len(sections))
        fresh = None
        if wants_facts:
            fresh = facts_mod.parse_host_facts(answers[0])
            self._pool.remember_facts(host, fresh)
            self._memo.put(host.name, fresh)
        position = 1
        with self._guard:
            # Something changed while the host answered: what it said stands for the phase running now (its
            # hosts run side by side anyway), not for the phases after the change.
            stale = generation != self._generation
            for name, digest, probes, read_facts in built:
                if (not read_facts or fresh == guess) and not (stale and name != self._wave):
                    self._answers[(name, host.name)] = (digest, answers[position:position + len(probes)])
                position += len(probes)

    def _build(self, phase: Phase, host: Host, guess, read: list[bool]):
        def facts():
            read.append(True)
            if guess is None:
                raise _NoFacts()
            return guess

        offline = dataclasses.replace(self._run_ctx, remote=_refuse(host))
        ctx = HostContext(offline, host, None, facts_source=facts)
        return list(phase.operations(ctx)), ctx

    def _lock_for(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())


def _refuse(host: Host):
    def remote(other: Host, script: str) -> str:
        raise Unsupported(host.name, "a phase built up front asks no other host")
    return remote


class FactsMemo:
    """The host facts each host reported last time, read once per run (``facts.json`` in the state directory)."""

    def __init__(self, path: Path | None):
        self._path = path
        self._facts: dict[str, dict] | None = None
        self._lock = threading.Lock()

    def get(self, host: str) -> facts_mod.HostFacts | None:
        with self._lock:
            raw = self._load().get(host)
        if not isinstance(raw, dict):
            return None
        try:
            return facts_mod.HostFacts(**{**raw, "paths": frozenset(raw.get("paths", ()))})
        except TypeError:      # written by another version: ask afresh
            return None

    def put(self, host: str, facts: facts_mod.HostFacts) -> None:
        if self._path is None or self.get(host) == facts:
            return
        from vmstation.atomic import write_atomically

        with self._lock:
            known = self._load()
            known[host] = {**dataclasses.asdict(facts), "paths": sorted(facts.paths)}
            self._path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(str(self._path), json.dumps(known, sort_keys=True).encode(), 0o600)

    def _load(self) -> dict:
        if self._facts is None:
            try:
                loaded = json.loads(self._path.read_text()) if self._path else {}
            except (OSError, ValueError):
                loaded = {}
            self._facts = loaded if isinstance(loaded, dict) else {}
        return self._facts
