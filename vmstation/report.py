"""What the operator sees: live progress, the plan, the summary, JSON for machines.

Progress is a listener of the runner's events. On a terminal it is a rich live
host x phase table; elsewhere (CI, pipes) one plain line per outcome. The plan and
the summary are plain text built from outcomes, so tests can compare them.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TextIO

from vmstation.execute import PhaseOutcome
from vmstation.operations import CHANGE, CHECK, OK, SKIP, WARN

SYMBOLS = {CHANGE: "~", OK: "=", SKIP: "!", CHECK: ">", WARN: "?"}
STATUS_WORDS = {"ok": "ok", "changed": "changed", "failed": "FAILED", "blocked": "blocked",
                "unsupported": "cannot run here", "resumed": "done earlier", "planned": "planned"}


def format_plan(outcomes: list[PhaseOutcome], show_unchanged: bool = False) -> str:
    """Per host and phase: each file's unified diff and each command that would run."""
    out: list[str] = []
    for outcome in outcomes:
        out.append(f"== {outcome.phase} @ {outcome.host}: {_plan_headline(outcome)}")
        for step in outcome.steps:
            if step.status == OK and not show_unchanged:
                continue
            out.append(f"  {SYMBOLS[step.status]} {step.label}" + (f"  ({step.reason})" if step.reason else ""))
            if step.diff:
                out.extend("      " + line for line in step.diff.rstrip("\n").splitlines())
            for upload in step.uploads:
                out.append(f"      place {upload.path} mode {upload.mode} {upload.owner}:{upload.group}")
            for command in step.commands:
                out.append("      $ " + ("(command hidden: secret)" if step.secret else command))
    return terminal_safe("\n".join(out) + "\n")


def format_summary(outcomes: list[PhaseOutcome]) -> str:
    """A table: phase, host, status, changed, seconds, and why (for anything not plainly done)."""
    rows = [("phase", "host", "status", "changed", "seconds", "note")]
    for o in outcomes:
        note = o.message or "; ".join([f"skipped {s.label}: {s.reason}" for s in o.skipped]
                                      + [f"warning: {s.reason}" for s in o.steps if s.status == WARN])
        rows.append((o.phase, o.host, STATUS_WORDS.get(o.status, o.status), str(o.changed), f"{o.seconds:.1f}",
                     note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5] for row in rows]
    changed = sum(o.changed for o in outcomes if o.status != "planned")
    lines.append(f"{changed} changed, {sum(o.status == 'failed' for o in outcomes)} failed, "
                 f"{sum(o.status == 'blocked' for o in outcomes)} blocked, "
                 f"{sum(o.status == 'unsupported' for o in outcomes)} cannot run here")
    return terminal_safe("\n".join(line.rstrip() for line in lines) + "\n")


def to_json(result) -> str:
    return json.dumps({
        "target": result.target, "exit_code": result.exit_code, "changed": result.changed,
        "seconds": round(result.seconds, 3), "journal": result.journal_path,
        "outcomes": [{"phase": o.phase, "host": o.host, "status": o.status, "changed": o.changed,
                      "seconds": round(o.seconds, 3), "message": o.message,
                      "steps": [{"label": s.label, "status": s.status, "reason": s.reason} for s in o.steps]}
                     for o in result.outcomes],
    }, indent=2, sort_keys=True)


# Control characters (ESC and the C1 set: terminal escape sequences), line and paragraph separators and the
# bidirectional overrides: text a host sends back (file content in diffs, command output in messages) must not
# move the cursor, rewrite the title, hide lines or reorder what the operator reads.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    """``text`` with every character that could act on a terminal shown as an escape (``\\x1b``)."""
    return _UNSAFE.sub(lambda found: found[0].encode("unicode_escape").decode("ascii"), text)


def _plan_headline(outcome: PhaseOutcome) -> str:
    if outcome.status != "planned":
        return STATUS_WORDS.get(outcome.status, outcome.status) + (f": {outcome.message}" if outcome.message else "")
    changes = sum(1 for s in outcome.steps if s.status == CHANGE)
    return f"{changes} to change, {len(outcome.steps) - changes} unchanged or checks"


class LineProgress:
    """One line per outcome: for logs, CI and pipes."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr

    def __call__(self, event: str, data: dict) -> None:
        if event == "phase":
            self.stream.write(f"-- {data['phase']}: {data['title']} ({len(data['hosts'])} hosts)\n")
        elif event == "outcome":
            o: PhaseOutcome = data["outcome"]
            note = f": {terminal_safe(o.message)}" if o.message else ""
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
        if event == "phase":
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


def progress_for(stream: TextIO, quiet: bool = False):
    if quiet:
        return None
    if stream.isatty():
        return LiveProgress()
    return LineProgress(stream)
