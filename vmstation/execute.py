"""One phase on one host: ask the facts, decide, upload what differs, place it.

Round trips, per host and phase:
- nothing to change: ONE command (every probe of the phase in one script);
- changes: that command, one SFTP session for the uploads (into a private staging
  directory), and ONE command that places every file atomically (copy beside the
  target, set mode and owner, rename) and runs the phase's commands in order.
A cut connection leaves uploads in staging only; the target files are either the
old ones or the new ones, never half-written.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field

from vmstation import facts as facts_mod
from vmstation.atomic import write_atomically
from vmstation.context import HostContext
from vmstation.errors import CommandError, HostError, Unsupported
from vmstation.operations import CHANGE, SKIP, Operation, Step


@dataclass
class PhaseOutcome:
    phase: str
    host: str
    status: str                  # ok | changed | failed | unsupported | blocked | resumed | planned
    steps: list[Step] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0
    commands_sent: int = 0

    @property
    def changed(self) -> int:
        return sum(1 for s in self.steps if s.status == CHANGE)

    @property
    def skipped(self) -> list[Step]:
        return [s for s in self.steps if s.status == SKIP]

    @property
    def succeeded(self) -> bool:
        return self.status in ("ok", "changed", "planned", "resumed")


PLACE_FUNCTIONS = r"""set -e
export LC_ALL=C
umask 022
vms_place() {  # staged-file target mode owner group: copy beside the target, then rename over it
  vms_dir=$(dirname -- "$2")
  mkdir -p -- "$vms_dir"
  vms_tmp="$vms_dir/.$(basename -- "$2").vmstation-tmp"
  cp -- "$1" "$vms_tmp"
  chown -- "$4:$5" "$vms_tmp"
  chmod -- "$3" "$vms_tmp"
  mv -f -- "$vms_tmp" "$2"
}
vms_apt_updated=no
vms_apt_update() {
  if [ "$vms_apt_updated" = no ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    vms_apt_updated=yes
  fi
}
"""


def run_phase_on_host(phase, ctx: HostContext) -> PhaseOutcome:
    """Plan or apply ``phase`` on ``ctx.host``; never raises for host-level trouble."""
    started = time.monotonic()
    outcome = PhaseOutcome(phase.name, ctx.host.name, "ok")
    sent_before = ctx.connection.commands_sent if ctx.connection else 0
    try:
        operations = list(phase.operations(ctx))
        outcome.steps = decide(operations, ctx)
        if ctx.plan:
            outcome.status = "planned"
        else:
            apply(outcome.steps, ctx)
            outcome.status = "changed" if outcome.changed else "ok"
    except Unsupported as exc:
        outcome.status, outcome.message = "unsupported", exc.message
    except HostError as exc:
        outcome.status, outcome.message = "failed", exc.message
    outcome.seconds = time.monotonic() - started
    if ctx.connection:
        outcome.commands_sent = ctx.connection.commands_sent - sent_before
    return outcome


def decide(operations: list[Operation], ctx: HostContext) -> list[Step]:
    """Ask every probe in one command, then decide each operation in order (pure from here on)."""
    if not operations:
        return []
    token = facts_mod.new_token()
    probes = [op.probe(detail=ctx.plan) for op in operations]
    answers = [""] * len(operations)
    if any(probes):
        output = ctx.connection.run(facts_mod.probe_script(probes, token), check=False).stdout
        answers = facts_mod.split_sections(output, token, len(operations))
    return decide_steps(operations, answers)


def decide_steps(operations: list[Operation], answers: list[str]) -> list[Step]:
    """Pure: each operation decided from its probe's answer, in order, seeing what changed before it."""
    steps, changed = [], set()
    for operation, answer in zip(operations, answers, strict=True):
        step = operation.decide(answer, frozenset(changed))
        if step.status == CHANGE:
            changed.add(step.label)
        steps.append(step)
    return steps


def apply(steps: list[Step], ctx: HostContext) -> None:
    """Upload what differs, then place it and run the commands in one script."""
    remote = [s for s in steps if s.runs_remotely]
    if remote:
        staging = ctx.connection.new_staging_dir() if any(s.uploads for s in remote) else None
        staged = _upload(remote, staging, ctx)
        token = facts_mod.new_token()
        script = _apply_script(remote, staged, staging, token)
        result = ctx.connection.run(script, check=False)
        sections = facts_mod.split_sections(result.stdout, token, len(remote) + 1)
        if result.exit_code != 0:
            raise _step_failure(remote, sections, result, token, ctx)
        for step, output in zip(remote, sections[:len(remote)], strict=True):
            if step.capture:
                ctx.run.values[step.capture] = output.strip()
    for step in steps:
        for write in step.local_writes:
            write_atomically(write.path, write.content, write.mode)


def _upload(steps: list[Step], staging: str | None, ctx: HostContext) -> dict[int, str]:
    """Every upload into the staging directory; returns each upload's file name there."""
    staged: dict[int, str] = {}
    for step in steps:
        for upload in step.uploads:
            staged[id(upload)] = str(len(staged))
            ctx.connection.upload(upload.content, f"{staging}/{staged[id(upload)]}")
    return staged


def _apply_script(steps: list[Step], staged: dict[int, str], staging: str | None, token: str) -> str:
    lines = [PLACE_FUNCTIONS]
    if staging:
        lines.append(f"vms_staging={shlex.quote(staging)}")
        lines.append("trap 'rm -rf -- \"$vms_staging\"' EXIT")
        # staging left by an earlier run of this host that was cut off mid-upload
        lines.append('for vms_old in "${vms_staging%-*}"-????????????; do '
                     '[ "$vms_old" = "$vms_staging" ] || rm -rf -- "$vms_old"; done')
    for index, step in enumerate(steps):
        lines.append(f"echo '{facts_mod.MARKER}-{token} {index}'")
        for upload in step.uploads:
            lines.append(f"vms_place \"$vms_staging\"/{staged[id(upload)]} "
                         + " ".join(shlex.quote(v) for v in (upload.path, upload.mode, upload.owner, upload.group)))
        lines.extend(step.commands)
    lines.append(f"echo '{facts_mod.MARKER}-{token} {len(steps)}'")
    return "\n".join(lines) + "\n"


def _step_failure(steps: list[Step], sections: list[str], result, token: str, ctx: HostContext) -> HostError:
    """The step that was running when the script stopped, with the tail of what it printed."""
    index = _last_started(result.stdout, token, len(steps))
    step = steps[index]
    detail = "(output hidden: secret)" if step.secret else _tail(sections[index] + result.stderr)
    return CommandError(ctx.host.name, f"{step.label} failed (exit {result.exit_code}): {detail}",
                        result.exit_code, "" if step.secret else result.stderr)


def _last_started(stdout: str, token: str, count: int) -> int:
    """The index of the last step whose marker the script printed (markers may follow output on its line)."""
    started = re.findall(rf"{re.escape(facts_mod.MARKER)}-{re.escape(token)} (\d+)\n", stdout)
    return min(int(started[-1]) if started else 0, count - 1)


def _tail(text: str, lines: int = 4) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "no output"


__all__ = ["PhaseOutcome", "run_phase_on_host", "decide", "decide_steps", "apply"]
