"""What the operator sees: live progress, the plan, the summary, JSON for machines, what sleep and wake tell.

Progress is a listener of the runner's events. On a terminal it is a rich live
host x phase table; elsewhere (CI, pipes) one plain line per outcome. The plan and
the summary are plain text built from outcomes, so tests can compare them.
"""

from __future__ import annotations

import json
import re
import sys
from typing import NamedTuple, TextIO

from vmstation.execute import PhaseOutcome
from vmstation.operations import CHANGE, CHECK, OK, SKIP, WARN
from vmstation.status import Outcome
from vmstation.host_keys import UNKNOWN_KEY

SYMBOLS = {CHANGE: "~", OK: "=", SKIP: "!", CHECK: ">", WARN: "?"}
BRIEF_OVER_LINES = 120             # a full plan longer than this is shown brief unless --diff asks for it
OWN_FILES = "file /usr/local/lib/vmstation/"     # the engine's own modules it ships for the idle check
UNREACHABLE = "unreachable earlier in this run: "
KEY_IN_MESSAGE = re.compile(r"for (?P<address>\S+)(?P<hop> \(its ProxyJump hop[^)]*\))? \((?P<key>[^)]*)\)")
KEY_NOTE = "unknown host key (its fingerprint is listed at the end)"
STATUS_WORDS = {"ok": "ok", "changed": "changed", "failed": "FAILED", "blocked": "blocked",
                "unsupported": "cannot run here", "resumed": "done earlier", "planned": "planned"}


def format_plan(outcomes: list[PhaseOutcome], show_unchanged: bool = False, full: bool | None = True,
                verbose: int = 0) -> str:
    """Per host and phase what would change.

    ``full``: each file's unified diff and each command; False: one line per change with its +/- line
    counts; None (what the CLI passes without --diff): full unless longer than BRIEF_OVER_LINES, then brief. The files
    the engine ships for itself are one line per phase unless ``verbose``.
    """
    text = _full_plan(outcomes, show_unchanged, verbose)
    if full or (full is None and text.count("\n") <= BRIEF_OVER_LINES):
        return terminal_safe(text)
    brief = _brief_plan(outcomes, verbose)
    if full is None:
        brief += f"(brief plan: the full one is {text.count(chr(10))} lines; --diff shows it)\n"
    return terminal_safe(brief)


def _full_plan(outcomes: list[PhaseOutcome], show_unchanged: bool, verbose: int) -> str:
    out: list[str] = []
    for outcome in outcomes:
        out.append(f"== {outcome.phase} @ {outcome.host}: {_plan_headline(outcome)}")
        steps, own = _own_files_apart(outcome.steps, verbose)
        for step in steps:
            if step.status == OK and not show_unchanged:
                continue
            out.append(f"  {SYMBOLS[step.status]} {step.label}" + (f"  ({step.reason})" if step.reason else ""))
            if step.diff:
                out.extend("      " + line for line in step.diff.rstrip("\n").splitlines())
            for upload in step.uploads:
                out.append(f"      place {upload.path} mode {upload.mode} {upload.owner}:{upload.group}")
            if step.fresh_apt_index:
                out.append("      $ apt-get update  (the package lists, once per host and phase)")
            for command in step.commands:
                out.append("      $ " + ("(command hidden: secret)" if step.secret else command))
        out += _own_files_line(own)
    return "\n".join(out) + "\n"


def _brief_plan(outcomes: list[PhaseOutcome], verbose: int) -> str:
    """One line per change: ``~ file /etc/x (+12 -3)``, ``~ command ... (2 commands)``."""
    out: list[str] = []
    for outcome in outcomes:
        out.append(f"== {outcome.phase} @ {outcome.host}: {_plan_headline(outcome)}")
        steps, own = _own_files_apart(outcome.steps, verbose)
        for step in steps:
            if step.status in (CHANGE, CHECK, WARN, SKIP):
                out.append(f"  {SYMBOLS[step.status]} {step.label}{_counts(step)}")
        out += _own_files_line(own)
    return "\n".join(out) + "\n"


def _counts(step) -> str:
    if step.secret:
        return "  (secret: content hidden)"
    lines = step.diff.splitlines()
    added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    parts = [f"+{added} -{removed}"] if step.diff else []
    if step.commands:
        parts.append(f"{len(step.commands)} command{'s' if len(step.commands) > 1 else ''}")
    if step.reason and not step.diff:
        parts.append(step.reason)
    return f"  ({', '.join(parts)})" if parts else ""


def _own_files_apart(steps, verbose: int):
    if verbose:
        return list(steps), []
    own = [s for s in steps if s.label.startswith(OWN_FILES)]
    return [s for s in steps if not s.label.startswith(OWN_FILES)], own


def _own_files_line(own) -> list[str]:
    changing = [s for s in own if s.status == CHANGE]
    if not changing:
        return []
    return [f"  ~ {len(changing)} of vmstation's own files for the idle check under "
            f"{OWN_FILES.removeprefix('file ')} (-v lists them)"]


def planned_changes(outcomes: list[PhaseOutcome]) -> int:
    """Changes a plan found (each would be made by the same run without --plan)."""
    return sum(o.changed for o in outcomes if o.status == Outcome.PLANNED)


def format_summary(outcomes: list[PhaseOutcome], inventory_path: str | None = None) -> str:
    """A table: phase, host, status, changed, seconds, and why (for anything not plainly done).

    A host that could not be reached is explained once: its later rows say "as above", and an unknown host
    key ends the summary with one line per host (its fingerprint) and the command that records them.
    """
    rows = [("phase", "host", "status", "changed", "seconds", "note")]
    said: dict[str, str] = {}
    blocked = _blocked_by_host(outcomes)
    for o in outcomes:
        if o.status == "blocked" and o.host in said:
            if o is not blocked[o.host][0]:
                continue            # counted on the host's first blocked row
            phases = blocked[o.host]
            if len(phases) > 1:
                rows.append((f"{o.phase} and {len(phases) - 1} more", o.host, STATUS_WORDS["blocked"], "0", "0.0",
                             "by the failure above: " + ", ".join(b.phase for b in phases)))
                continue
        note = _note(o, said)
        rows.append((o.phase, o.host, STATUS_WORDS.get(o.status, o.status), str(o.changed), f"{o.seconds:.1f}",
                     note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5] for row in rows]
    changed = sum(o.changed for o in outcomes if o.status != Outcome.PLANNED)
    planned = planned_changes(outcomes)
    lines.append(f"{changed} changed, {sum(o.status == 'failed' for o in outcomes)} failed, "
                 f"{sum(o.status == 'blocked' for o in outcomes)} blocked, "
                 f"{sum(o.status == 'unsupported' for o in outcomes)} cannot run here"
                 + (f"; the plan has {planned} changes to make" if planned else ""))
    lines += unknown_host_keys(outcomes, inventory_path)
    return terminal_safe("\n".join(line.rstrip() for line in lines) + "\n")


def _blocked_by_host(outcomes: list[PhaseOutcome]) -> dict[str, list[PhaseOutcome]]:
    """Each host's blocked outcomes, in order: after a host's failure they are counted, not repeated."""
    found: dict[str, list[PhaseOutcome]] = {}
    for o in outcomes:
        if o.status == "blocked":
            found.setdefault(o.host, []).append(o)
    return found


def _note(outcome: PhaseOutcome, said: dict[str, str]) -> str:
    """The outcome's reason, or "as above" when it repeats what this host's earlier row said."""
    note = outcome.message or "; ".join([f"skipped {s.label}: {s.reason}" for s in outcome.skipped]
                                        + [f"warning: {s.reason}" for s in outcome.steps if s.status == WARN])
    bare = note.removeprefix(UNREACHABLE)
    if bare.startswith(UNKNOWN_KEY):
        note = bare = KEY_NOTE
    if outcome.status == Outcome.FAILED and said.get(outcome.host) == bare:
        return "as above"
    if outcome.status == Outcome.BLOCKED and outcome.host in said:
        return "by the failure above"
    if outcome.status == Outcome.FAILED:
        said[outcome.host] = bare
    return note


def unknown_host_keys(outcomes: list[PhaseOutcome], inventory_path: str | None = None) -> list[str]:
    """One line per host whose key is not in known_hosts, then the one command that records them all."""
    found: dict[str, str] = {}
    for o in outcomes:
        message = o.message.removeprefix(UNREACHABLE)
        if message.startswith(UNKNOWN_KEY) and o.host not in found:
            match = KEY_IN_MESSAGE.search(message)
            found[o.host] = (f"{match['address']}{match['hop'] or ''}  {match['key']}" if match
                             else message.removeprefix(UNKNOWN_KEY))
    if not found:
        return []
    width = max(len(h) for h in found)
    inventory = f" -i {inventory_path}" if inventory_path and inventory_path != "hosts.toml" else ""
    return ["", "unknown host keys: compare each with the host's own (ssh-keygen -lf "
            "/etc/ssh/ssh_host_ed25519_key.pub on its console), then record them:"] + [
        f"  {host.ljust(width)}  {key}" for host, key in found.items()] + [
        f"  vmstation hosts trust {' '.join(found)}{inventory}    (or run again with --trust-new-host-keys)"]


def to_json(result, plan: bool = False) -> str:
    """The run for machines; a plan also counts what it would change (``to_change``)."""
    return json.dumps({
        "target": result.target, "exit_code": result.exit_code, "changed": result.changed,
        "plan": plan, "to_change": planned_changes(result.outcomes),
        "seconds": round(result.seconds, 3), "journal": result.journal_path,
        "outcomes": [{"phase": o.phase, "host": o.host, "status": o.status, "changed": o.changed,
                      "to_change": o.changed if o.status == Outcome.PLANNED else 0,
                      "seconds": round(o.seconds, 3), "message": o.message,
                      "steps": [{"label": s.label, "status": s.status, "reason": s.reason} for s in o.steps]}
                     for o in result.outcomes],
    }, indent=2, sort_keys=True)


# Control characters (ESC and the C1 set: terminal escape sequences), line and paragraph separators and the
# bidirectional overrides: text a host sends back (file content in diffs, command output in messages) must not
# move the cursor, rewrite the title, hide lines or reorder what the operator reads.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def format_checks(results) -> str:
    """`vmstation verify`'s table: one line per check (a host that could not be reached: one line), then the
    count of failures."""
    from vmstation.verify import UNREACHABLE

    lines = []
    for result in results:
        if result.name == UNREACHABLE:
            lines.append(f"{result.host}: cannot check: {result.detail}")
            continue
        mark = "ok  " if result.passed else "FAIL"
        lines.append(f"{mark} {result.host:<18} {result.phase:<26} {result.name}"
                     + (f"  ({result.detail})" if result.detail else ""))
    lines.append(f"{sum(not r.passed for r in results)} failed")
    return terminal_safe("\n".join(lines) + "\n")


class Line(NamedTuple):
    """One line for the terminal: on stdout, or on stderr (``err``)."""
    text: str
    err: bool = False


def tell_waiting(host, seconds: float, timeout: float) -> None:
    """While `vmstation wake` waits for a host to answer SSH: how long so far, on stderr, as it happens."""
    sys.stderr.write(f"  waiting for {host.name} ({host.address}:{host.ssh_port}): {seconds:.0f} s of "
                     f"{timeout:g} s\n")
    sys.stderr.flush()


def format_wake(result, *, streamed: bool = False) -> list[Line]:
    """What `vmstation wake` tells (a power.cycle.Wake): the plan; or how the packets went, when each host
    answered, and whether the nodes are back in the cluster. ``streamed``: the packets and the answers were told
    as they came (format_sent, format_answered), so they are left out."""
    if result.plan:
        return _wake_plan(result)
    lines = [] if streamed else format_sent(result.sent)
    if result.sent.exit_code:
        return lines
    lines += [] if streamed else format_answered(result)
    if result.missing:
        return lines
    return lines + [_run_told(result.run), Line(_rejoin_note(result.run, result.seconds))]


def format_answered(result) -> list[Line]:
    """When each host of a power.cycle.Wake answered SSH after the magic packet; what was not restored if one
    did not."""
    width = max(len(h.name) for h in result.targets)
    lines = [Line(f"{h.name:<{width}}  " + (f"awake: SSH answered {result.awake[h.name]:.1f} s after the magic packet"
                                            if result.awake[h.name] is not None else "did not answer"))
             for h in result.targets]
    if result.missing:
        lines.append(Line(f"not restored: {', '.join(result.missing)} did not answer within {result.timeout:g} s; "
                          "nothing was uncordoned or scaled back (run `vmstation wake` again)", err=True))
    return lines


def format_sent(sent) -> list[Line]:
    """How the magic packets went (a power.cycle.Sent): masternode's run and its own line per packet, or this
    machine's line per host."""
    if not sent.from_here:
        return [_run_told(sent.run)] + [Line(f"  {terminal_safe(p.report)}") for p in sent.packets]
    lines = [Line(f"  {p.host}: {p.report}") for p in sent.packets]
    if sent.not_sent:
        lines.append(Line(f"vmstation: {sent.not_sent.host}: magic packet not sent: {sent.not_sent.report}",
                          err=True))
    return lines


def format_sleep(result, *, streamed: bool = False) -> list[Line]:
    """What `vmstation sleep` tells (a power.cycle.Sleep): the plan; or the idle decision with its reasons, the
    sleep run, and each worker seen asleep or still answering. ``streamed``: the decision was told as it came
    (format_idle_check, before the sleep run), so it is left out."""
    if result.plan:
        note = [] if result.force else [Line("(without --force, the idle check of `vmstation sleep --check` "
                                             "decides first)")]
        return note + [_run_told(result.run, plan=True)]
    lines = format_idle_check(result.check) if result.check is not None and not streamed else []
    if result.run is None:
        return lines
    lines.append(_run_told(result.run))
    if result.run.exit_code:
        return lines
    for host in result.workers:
        seconds = result.down.get(host.name)
        lines.append(Line(f"{host.name}: " + (f"asleep ({host.sleep_method}) after {seconds:.1f} s"
                                              if seconds is not None
                                              else f"still answering SSH after {result.down_timeout:g} s")))
    return lines


def format_idle_check(check) -> list[Line]:
    """The idle check's run, then its reasons and decision (a power.cycle.IdleCheck), or that it gave none."""
    lines = [_run_told(check.run)]
    if check.sleep is None:
        return lines + [Line("the idle check did not run on the control plane: no decision", err=True)]
    lines += [Line(f"  {terminal_safe(reason)}") for reason in check.reasons]
    return lines + [Line("idle: the workers may sleep" if check.sleep else "busy: staying awake")]


def _wake_plan(result) -> list[Line]:
    lines = [Line(f"  would send a magic packet for {h.name} ({h.mac}) from this machine to {result.packet_to}"
                  + (f" via {result.via}" if result.via else "")) for h in result.targets if result.from_here]
    lines += [Line(f"  would wait up to {result.timeout:g} s for {h.name} to answer SSH on {h.address}:{h.ssh_port}")
              for h in result.targets]
    return lines + [_run_told(result.run, plan=True)]


def _run_told(result, plan: bool = False) -> Line:
    """A power run within sleep or wake: its plan (with every diff) and summary; the journal is not named."""
    return Line(format_run(result, plan, show_diff=True, journal=False).removesuffix("\n"))


def _rejoin_note(result, seconds: float) -> str:
    failed = [o for o in result.outcomes if not o.succeeded]
    if failed:
        return terminal_safe("not back in the cluster: "
                             + "; ".join(f"{o.phase} @ {o.host}: {o.message}" for o in failed))
    skipped = sum(len(o.skipped) for o in result.outcomes)
    if skipped:
        return f"cluster rejoin not checked: {skipped} kubectl steps skipped (reasons above)"
    return f"back in the cluster (nodes Ready, restored) {seconds:.1f} s after the magic packet"


def with_progress(start_run, quiet: bool = False):
    """``start_run(listener)`` with its progress drawn on stderr (a live table on a terminal, lines otherwise):
    the one place a run's progress is shown, for every command that runs a target."""
    progress = progress_for(sys.stderr, quiet=quiet)
    try:
        return start_run(progress)
    finally:
        if progress:
            progress.close()


def format_run(result, plan: bool, *, as_json: bool = False, show_diff: bool | None = None, verbose: int = 0,
               inventory_path: str | None = None, journal: bool = True) -> str:
    """What is printed after a run: its JSON; or the plan (for --plan), the summary and the journal's path."""
    if as_json:
        return to_json(result, plan=plan) + "\n"
    text = format_plan(result.outcomes, full=show_diff, verbose=verbose) if plan else ""
    text += format_summary(result.outcomes, inventory_path=inventory_path)
    return text + (f"journal: {result.journal_path}\n" if journal else "")


def terminal_safe(text: str) -> str:
    """``text`` with every character that could act on a terminal shown as an escape (``\\x1b``)."""
    return _UNSAFE.sub(lambda found: found[0].encode("unicode_escape").decode("ascii"), text)


def _plan_headline(outcome: PhaseOutcome) -> str:
    if outcome.status != Outcome.PLANNED:
        message = KEY_NOTE if UNKNOWN_KEY in outcome.message else outcome.message
        return STATUS_WORDS.get(outcome.status, outcome.status) + (f": {message}" if message else "")
    changes = sum(1 for s in outcome.steps if s.status == CHANGE)
    return f"{changes} to change, {len(outcome.steps) - changes} unchanged or checks"


class LineProgress:
    """One line per outcome: for logs, CI and pipes. A host's failure is told once; later ones say so."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.said: dict[str, str] = {}
        self.blocked: dict[str, int] = {}

    def __call__(self, event: str, data: dict) -> None:
        if event == "run":
            self.stream.write(run_line(data) + "\n")
        elif event == "phase":
            self.stream.write(f"-- {data['phase']}: {data['title']} ({len(data['hosts'])} hosts)\n")
        elif event == "outcome":
            o: PhaseOutcome = data["outcome"]
            if o.status == "blocked" and o.host in self.blocked:
                self.blocked[o.host] += 1         # told once per host; the summary counts them all
                return
            if o.status == "blocked" and o.host in self.said:
                self.blocked[o.host] = 1
            note = _note(o, self.said)
            note = f": {terminal_safe(note)}" if note else ""
            self.stream.write(f"   {o.host:<20} {STATUS_WORDS.get(o.status, o.status)}"
                              f" ({o.changed} changed, {o.seconds:.1f}s){note}\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class LiveProgress:
    """A rich live table, hosts down, phases across, redrawn as outcomes arrive."""

    CELL = {"ok": "[green]ok", "changed": "[yellow]changed", "failed": "[red]FAILED", "blocked": "[red]blocked",
            "unsupported": "[magenta]n/a here", "resumed": "[dim]earlier", "planned": "[cyan]planned",
            "running": "[blue]running"}

    def __init__(self):
        from rich.live import Live

        self.cells: dict[tuple[str, str], str] = {}
        self.phases: list[str] = []
        self.hosts: list[str] = []
        self.live = Live(self._table(), refresh_per_second=8, transient=False)
        self.live.start()

    def __call__(self, event: str, data: dict) -> None:
        if event == "run":
            self.live.console.print(run_line(data), markup=False, highlight=False)
        elif event == "phase":
            self.phases.append(data["phase"])
            self.hosts.extend(h for h in data["hosts"] if h not in self.hosts)
        elif event == "start":
            self.cells[(data["phase"], data["host"])] = "running"
        elif event == "outcome":
            self.cells[(data["outcome"].phase, data["outcome"].host)] = data["outcome"].status
        self.live.update(self._table())

    def close(self) -> None:
        self.live.stop()

    def _table(self):
        from rich.table import Table

        table = Table(show_lines=False)
        table.add_column("phase")
        for host in self.hosts:
            table.add_column(host)
        for phase in self.phases:
            table.add_row(phase, *[self.CELL.get(self.cells.get((phase, h), ""), "") for h in self.hosts])
        return table


def run_line(data: dict) -> str:
    """The first line of every run: what runs, and from which inventory."""
    return f"vmstation {data['target']}{' (plan)' if data['plan'] else ''}: inventory {data['inventory']}"


def progress_for(stream: TextIO, quiet: bool = False):
    if quiet:
        return None
    if stream.isatty():
        return LiveProgress()
    return LineProgress(stream)
