"""The one plan and snapshot helper of the plan tests: phases decided without SSH, held by snapshots.

A plan is decided the way ``execute.decide`` does, each probe answered by a ``fact`` function (what a fresh
host prints). ``assert_snapshot`` holds a text in tests/unit/snapshots/NAME.txt; given a ``base`` snapshot,
it holds only the delta from it (NAME.delta, a unified diff), so that two plans that share their structure
(the homelab and the test boxes) are stored once. VMSTATION_UPDATE_SNAPSHOTS=1 rewrites them.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from vmstation.execute import PhaseOutcome, decide_steps
from vmstation.report import format_plan

SNAPSHOTS = Path(__file__).parent / "snapshots"


def decided(phase, ctx, fact) -> PhaseOutcome:
    """``phase`` on ``ctx.host``, each operation's probe answered by ``fact(operation)``."""
    operations = list(phase.operations(ctx))
    return PhaseOutcome(phase.name, ctx.host.name, "planned", decide_steps(operations, [fact(o) for o in operations]))


def plan_text(outcomes, tmp_path: Path | None = None, **options) -> str:
    text = format_plan(list(outcomes), **options)
    return text.replace(str(tmp_path), "<tmp>") if tmp_path else text


def assert_snapshot(name: str, text: str, base: str | None = None) -> None:
    """``text`` equals snapshots/NAME.txt, or (``base``) equals snapshots/BASE.txt changed by NAME.delta."""
    path = SNAPSHOTS / (f"{name}.delta" if base else f"{name}.txt")
    held = delta(base, text) if base else text
    if os.environ.get("VMSTATION_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(held)
    assert path.exists(), f"{path} is missing: run with VMSTATION_UPDATE_SNAPSHOTS=1 and review it"
    assert held == path.read_text(), f"plan differs from {path} (VMSTATION_UPDATE_SNAPSHOTS=1 rewrites it)"


def delta(base: str, text: str) -> str:
    """The unified diff from snapshots/BASE.txt to ``text`` (one line of context)."""
    original = (SNAPSHOTS / f"{base}.txt").read_text().splitlines(keepends=True)
    return "".join(difflib.unified_diff(original, text.splitlines(keepends=True), f"{base}.txt", "this plan", n=1))
