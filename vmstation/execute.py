"""One phase on one host: ask the facts, decide, upload what differs, place it.

Round trips, per host and phase:
- nothing to change: ONE command (every probe of the phase in one script);
- changes: that command, one SFTP session for the uploads (into a private staging
  directory), and ONE command that places every file atomically and runs the phase's
  commands in order.

The placing script (``apply_script``), its shape decided once for honest outcomes and
for secrets on the way:
- it first takes the host's lock (``flock`` on a root-only file), so two runs, even
  from two operators' machines, never interleave; then it says so, and only then are
  the uploads made, so staging that the locked script finds of this host was left by
  a dead run and is removed;
- a file is created beside its target by ``mktemp`` (0600, root), given its final
  owner and mode while still empty, then filled and renamed over the target: no
  content is ever readable by anyone the final file would not let read it;
- every command of a step runs as its own script (``set -e``, ``pipefail`` under
  bash, stdin from /dev/null) under ``timeout`` with the step's deadline, and its
  exit status is checked by the placing script: ``a && b``, pipelines, ``exit``
  inside a command, none can hide a failure or end the steps after it;
- a handler (restart, reload, a command run when something changed) that this
  script will run is first recorded on the host; the record is removed once it ran,
  so a cut in between makes the next run run it (``pending_markers``).
With a root login, the root:root files of the steps before the first command skip
staging: under the lock, with the handlers recorded, SFTP itself creates each temp
file with its final mode, writes it and posix-renames it (``placed_by_sftp``).
A cut connection leaves uploads in staging (or such a temp file) only; the target
files are either the old ones or the new ones, never half-written.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import shlex
import time
import traceback
from dataclasses import dataclass, field, fields, is_dataclass

from vmstation import facts as facts_mod
from vmstation.atomic import write_atomically
from vmstation.context import HostContext
from vmstation.errors import CommandError, CommandTimeout, HostError, Interrupted, Unsupported
from vmstation.operations import CHANGE, SKIP, On, Operation, Step
from vmstation.operations.base import Upload, size_of
from vmstation.operations.files import split_stat_batch, stat_batch_probe
from vmstation.status import Outcome


@dataclass
class PhaseOutcome:
    phase: str
    host: str
    status: Outcome
    steps: list[Step] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0
    commands_sent: int = 0
    digest: str = ""             # what this pair would do (``inputs_digest``): --resume skips it only if unchanged
    trace: str = ""              # the traceback of an unexpected error (journal only, redacted)

    @property
    def changed(self) -> int:
        return sum(1 for s in self.steps if s.status == CHANGE)

    @property
    def skipped(self) -> list[Step]:
        return [s for s in self.steps if s.status == SKIP]

    @property
    def succeeded(self) -> bool:
        return Outcome(self.status).succeeded


STATE_DIR = "/var/lib/vmstation"          # on the host: the lock and the handlers still to run (root only)
LOCK_WAIT = 60                            # seconds a run waits for another run's lock on a host
STEP_DEADLINE = 300.0                     # seconds a step's command may run unless its operation says otherwise

# Each command of a step runs as a script of its own that starts with this library.
STEP_LIBRARY = r"""set -e
[ -z "${BASH_VERSION:-}" ] || set -o pipefail
umask 022
"""

# What a step that declares ``fresh_apt_index`` runs before its own commands: apt-get update, once per placing
# script (a phase installing three packages updates the lists once).
APT_INDEX_UPDATE = r"""if [ ! -e "$VMS_RUN/apt-updated" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  : > "$VMS_RUN/apt-updated"
fi"""

# vms_place staged-file target mode owner group: an empty temp with the final owner and mode, filled, renamed
PLACE_FUNCTIONS = r"""vms_place() {
  vms_dir=$(dirname -- "$2") || return
  (umask 022 && mkdir -p -- "$vms_dir") || return
  vms_base=$(basename -- "$2") || return
  rm -f -- "$vms_dir/.$vms_base.vmstation-"??????   # left by a placing script that died (we hold the lock)
  vms_tmp=$(mktemp -- "$vms_dir/.$vms_base.vmstation-XXXXXX") || return
  if chown -- "$4:$5" "$vms_tmp" && chmod -- "$3" "$vms_tmp" && cat -- "$1" > "$vms_tmp" && mv -f -- "$vms_tmp" "$2"
  then vms_tmp=; else vms_rc=$?; rm -f -- "$vms_tmp"; vms_tmp=; return "$vms_rc"; fi
}
vms_cmd() {  # deadline script
  if [ -n "$vms_timeout" ]; then timeout -k 5 "$1" "$vms_shell" "$2" </dev/null 9>&-
  else "$vms_shell" "$2" </dev/null 9>&-; fi
}
"""


def run_phase_on_host(phase, ctx: HostContext) -> PhaseOutcome:
    """Plan or apply ``phase`` on ``ctx.host``; never raises: any error is this pair's failure."""
    started = time.monotonic()
    outcome = PhaseOutcome(phase.name, ctx.host.name, Outcome.OK)
    try:
        operations = list(phase.operations(ctx))
        outcome.digest = inputs_digest(operations, ctx.run.digest_key)
        pending = pending_markers(phase.name, ctx.host.name, operations)
        ahead = getattr(ctx, "prefetched", None)     # (digest, answers) asked up front (vmstation.lookahead)
        answers = ahead[1] if ahead and ahead[0] == outcome.digest else None
        outcome.steps = decide(operations, ctx, pending, answers)
        if ctx.plan:
            outcome.status = Outcome.PLANNED
        else:
            apply(outcome.steps, ctx, _triggered(operations, outcome.steps, pending))
            outcome.status = Outcome.CHANGED if outcome.changed else Outcome.OK
    except Unsupported as exc:
        outcome.status, outcome.message = Outcome.UNSUPPORTED, exc.message
    except Interrupted as exc:
        outcome.status, outcome.message = Outcome.INTERRUPTED, exc.message
    except HostError as exc:
        outcome.status, outcome.message = Outcome.FAILED, exc.message
    except Exception as exc:  # a bug or a surprise on one host is that host's failure, not the run's end
        outcome.status = Outcome.FAILED
        outcome.message = f"unexpected error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        outcome.trace = traceback.format_exc()
    outcome.seconds = time.monotonic() - started
    return outcome


def decide(operations: list[Operation], ctx: HostContext, pending: dict[int, str] | None = None,
           answers: list[str] | None = None) -> list[Step]:
    """Ask every probe in one command, then decide each operation in order (pure from here on).

    ``pending``: operation index -> marker of a handler recorded on the host by a cut run; asked in the
    same command, and a recorded handler decides as if its triggers changed. ``answers``: the sections of
    ``phase_probes`` already asked (the target's probes sent up front, ``lookahead``): no command then.
    """
    if not operations:
        return []
    pending = pending or {}
    if answers is None:
        probes = phase_probes(operations, ctx, pending)
        answers = [""] * len(probes)
        if any(probes):
            token = facts_mod.new_token()
            output = ctx.connection.run(facts_mod.probe_script(probes, token), check=False).stdout
            answers = facts_mod.split_sections(output, token, len(probes))
    return decide_answers(operations, ctx, pending, answers)


def phase_probes(operations: list[Operation], ctx: HostContext, pending: dict[int, str]) -> list[str]:
    """The probe sections of one phase on one host: each operation's own, then one stat and one sha256sum for
    all its whole files, then the handlers a cut run recorded (when the phase has handlers)."""
    batched = _batched_files(operations, ctx.plan)
    probes = ["" if index in batched or isinstance(op, On) else op.probe(detail=ctx.plan)   # On: asked there
              for index, op in enumerate(operations)]
    probes.append(stat_batch_probe(list(batched.values())) if batched else "")
    probes.append(sh_list_markers(ctx.host.name) if pending else "")
    return probes


def decide_answers(operations: list[Operation], ctx: HostContext, pending: dict[int, str],
                   answers: list[str]) -> list[Step]:
    """The steps from the answers of ``phase_probes`` (an ``On`` operation is asked on its own host first)."""
    batched = _batched_files(operations, ctx.plan)
    own = list(answers[:len(operations)])
    for index, fact in zip(batched, split_stat_batch(answers[len(operations)], len(batched)), strict=True):
        own[index] = fact
    own = _with_answers_elsewhere(operations, own, ctx)
    recorded = set(answers[len(operations) + 1].split()) if pending else set()
    left_over = {index for index, marker in pending.items() if marker in recorded}
    return decide_steps(operations, own, left_over)


def _batched_files(operations: list[Operation], detail: bool) -> dict[int, str]:
    """Operation index -> path, for the whole files whose probe is the phase's one stat and sha256sum."""
    paths = {}
    for index, operation in enumerate(operations):
        path = operation.stat_path(detail) if hasattr(operation, "stat_path") else None
        if path is not None:
            paths[index] = path
    return paths


def decide_steps(operations: list[Operation], answers: list[str], left_over: set[int] = frozenset()) -> list[Step]:
    """Pure: each operation decided from its probe's answer, in order, seeing what changed before it.

    ``left_over``: indexes of handlers a cut run recorded and did not run: they decide as if triggered.
    """
    steps, changed = [], set()
    for index, (operation, answer) in enumerate(zip(operations, answers, strict=True)):
        seen = changed | set(_triggers(operation)) | {"(a cut run's change)"} if index in left_over else changed
        step = operation.decide(answer, frozenset(seen))
        if step.status == CHANGE:
            changed.add(step.label)
        steps.append(step)
    return steps


def apply(steps: list[Step], ctx: HostContext, handlers: dict[int, str] | None = None) -> None:
    """Upload what differs, then place it and run the commands in one script (see the module docstring).

    ``handlers``: step index -> marker recorded on the host while that handler is still to run.
    """
    for on, indexes in _by_host(steps):     # steps of an ``On`` run on that host, in their place in the order
        remote = [(index, steps[index]) for index in indexes if steps[index].runs_remotely]
        if remote:
            _run_remote([s for _, s in remote], ctx if on is None else _elsewhere(ctx, on),
                        {position: (handlers or {})[index] for position, (index, _) in enumerate(remote)
                         if index in (handlers or {}) and on is None})
        for index in indexes:
            for write in steps[index].local_writes:
                write_atomically(write.path, write.content, write.mode)


def _by_host(steps: list[Step]) -> list[tuple[object, list[int]]]:
    """Runs of consecutive steps on the same host (None: the phase's own host), in order."""
    runs: list[tuple[object, list[int]]] = []
    for index, step in enumerate(steps):
        if runs and runs[-1][0] is step.on:
            runs[-1][1].append(index)
        else:
            runs.append((step.on, [index]))
    return runs


def _elsewhere(ctx: HostContext, host) -> HostContext:
    """The context of another host of the run, over its own connection, for an ``On`` operation."""
    if ctx.run.connect is None:
        raise Unsupported(ctx.host.name, f"this step runs on {host.name}, and this run reaches no other host")
    return HostContext(ctx.run, host, ctx.run.connect(host))


def _with_answers_elsewhere(operations: list[Operation], answers: list[str], ctx: HostContext) -> list[str]:
    """The probes of ``On`` operations asked on their own hosts, one command per host."""
    elsewhere: dict[str, list[int]] = {}
    for index, operation in enumerate(operations):
        if isinstance(operation, On):
            elsewhere.setdefault(operation.host.name, []).append(index)
    for indexes in elsewhere.values():
        other = _elsewhere(ctx, operations[indexes[0]].host)
        token = facts_mod.new_token()
        script = facts_mod.probe_script([operations[i].probe(detail=ctx.plan) for i in indexes], token)
        output = other.connection.run(script, check=False).stdout
        for index, answer in zip(indexes, facts_mod.split_sections(output, token, len(indexes)), strict=True):
            answers[index] = answer
    return answers


def _run_remote(steps: list[Step], ctx: HostContext, handlers: dict[int, str]) -> None:
    token = facts_mod.new_token()
    direct = placed_by_sftp(steps, ctx.host.is_root)
    uploads = any(id(u) not in direct for s in steps for u in s.uploads)
    connection = ctx.connection
    staging_base = connection.staging_base() if uploads else None
    deadline = _script_deadline(steps, ctx)
    with connection.start() as script:
        before = sftp_prelude(direct.values(), ctx.host.name, handlers) if direct else ""
        script.send(prologue(token, ctx.host.name, staging_base, before))
        script.wait_for(f"{facts_mod.MARKER}-{token} locked", LOCK_WAIT + 30)
        _place_by_sftp(steps, direct, ctx)     # under the lock, handlers recorded, before any command
        if uploads:
            staging = connection.new_staging_dir()
            script.send(f"vms_staging={shlex.quote(staging)}\n")   # removed by the script's exit trap, whatever happens
            staged = _upload(steps, staging, ctx, direct)
        else:
            staged = {}
        script.send(apply_script(steps, staged, token, ctx.host.name, handlers, _step_deadline(ctx),
                                 placed=set(direct)))
        result = script.finish(deadline)
    sections = facts_mod.split_sections(result.stdout, token, len(steps) + 1)
    if result.exit_code != 0:
        raise _step_failure(steps, sections, result, token, ctx)
    for step, output in zip(steps, sections[:len(steps)], strict=True):
        if step.capture:
            ctx.run.keep(step.capture, output.strip())


def placed_by_sftp(steps: list[Step], root_login: bool) -> dict[int, Upload]:
    """The uploads SFTP places by itself (``HostConnection.place``): with a root login, root:root files of
    the steps before the first command (so no command ever sees them early or late). Others are staged and
    placed by the script (a sudo login cannot write to /etc over SFTP; other owners need the host's names)."""
    direct: dict[int, Upload] = {}
    if not root_login:
        return direct
    for step in steps:
        if step.commands:
            break
        direct.update({id(u): u for u in step.uploads if (u.owner, u.group) == ("root", "root")})
    return direct


def sftp_prelude(uploads, host: str, handlers: dict[int, str]) -> str:
    """What the locked script does before SFTP places files: record the handlers, make the directories and
    remove temp files a dead run left beside these targets; shell builtins unless there is work to do."""
    lines = _record_handlers(host, handlers)
    for directory in dict.fromkeys(u.path.rpartition("/")[0] or "/" for u in uploads):
        quoted = shlex.quote(directory)
        lines.append(f"[ -d {quoted} ] || mkdir -p -- {quoted} || exit 70")
    for upload in uploads:
        directory, _, base = upload.path.rpartition("/")
        pattern = shlex.quote(f"{directory}/.{base}.vmstation-") + "??????"
        lines.append(f'for vms_old in {pattern}; do [ ! -e "$vms_old" ] || rm -f -- "$vms_old"; done')
    return "\n".join(lines) + "\n"


def _place_by_sftp(steps: list[Step], direct: dict[int, Upload], ctx: HostContext) -> None:
    for step in steps:
        for upload in step.uploads:
            if id(upload) in direct:
                try:
                    ctx.connection.place(upload.content, upload.path, int(upload.mode, 8))
                except HostError as exc:
                    raise type(exc)(ctx.host.name, f"{step.label}: placing {upload.path} over SFTP: "
                                    f"{exc.message}") from exc


def _upload(steps: list[Step], staging: str, ctx: HostContext, placed=()) -> dict[int, str]:
    """Every upload not ``placed`` already into the staging directory; returns each one's file name there."""
    staged: dict[int, str] = {}
    for step in steps:
        for upload in step.uploads:
            if id(upload) in placed:
                continue
            staged[id(upload)] = str(len(staged))
            ctx.connection.upload(upload.content, f"{staging}/{staged[id(upload)]}")
    return staged


def prologue(token: str, host: str, staging_base: str | None, before_locked: str = "") -> str:
    """The start of the placing script: the host's lock, leftovers of dead runs, ``before_locked``, then
    'locked'."""
    lines = [
        "export LC_ALL=C",
        "umask 022",
        'trap \'rm -rf -- ${vms_staging:+"$vms_staging"} ${vms_run:+"$vms_run"} ${vms_tmp:+"$vms_tmp"}\' EXIT',
        f"(umask 077 && mkdir -p {STATE_DIR}) || exit 70",
        f'exec 9>>"{STATE_DIR}/lock-$(uname -n)" || exit 70',
        f"if command -v flock >/dev/null 2>&1 && ! flock -w {LOCK_WAIT} 9; then "
        f"echo 'another vmstation run held this host'\"'\"'s lock for {LOCK_WAIT}s' >&2; exit 75; fi",
        "vms_run=$(mktemp -d) || exit 70",
        "export VMS_RUN=\"$vms_run\"",
        "vms_shell=sh; command -v bash >/dev/null 2>&1 && vms_shell=bash",
        "vms_timeout=; command -v timeout >/dev/null 2>&1 && vms_timeout=yes",
    ]
    if staging_base:
        # staging of this host that no run holds the lock for any more: a run that was cut or interrupted
        pattern = shlex.quote(f"{staging_base}/{host}-") + "????????????"
        lines.append(f'for vms_old in {pattern}; do [ ! -e "$vms_old" ] || rm -rf -- "$vms_old"; done')
    if before_locked:
        lines.append(before_locked.rstrip("\n"))
    lines.append(f"echo '{facts_mod.MARKER}-{token} locked'")
    return "\n".join(lines) + "\n"


def apply_script(steps: list[Step], staged: dict[int, str], token: str, host: str,
                 handlers: dict[int, str], default_deadline: float, placed: set[int] = frozenset()) -> str:
    """The rest of the placing script: record handlers, then each step's files and commands, each checked.

    ``placed``: uploads SFTP already placed (``placed_by_sftp``); their handlers were recorded before that.
    """
    marker = f"{facts_mod.MARKER}-{token}"
    lines = [PLACE_FUNCTIONS, _heredoc('"$vms_run/lib"', STEP_LIBRARY, f"{marker}-lib"),
             f"vms_fail() {{ printf '\\n%s\\n' \"{marker} failed $1 $2\"; exit \"$2\"; }}"]
    if placed:
        lines.append(f"vms_pending={_pending_root(host)}")
    else:
        lines += _record_handlers(host, handlers)
    for index, step in enumerate(steps):
        lines.append(f"echo '{marker} {index}'; echo '{marker} {index}' >&2")
        for upload in step.uploads:
            if id(upload) in placed:
                continue
            lines.append("vms_place \"$vms_staging\"/" + staged[id(upload)] + " "
                         + " ".join(shlex.quote(v) for v in (upload.path, upload.mode, upload.owner, upload.group))
                         + f" || vms_fail {index} $?")
        commands = (APT_INDEX_UPDATE, *step.commands) if step.fresh_apt_index else step.commands
        for number, command in enumerate(commands):
            path = f'"$vms_run/{index}.{number}"'
            lines.append(_heredoc(path, f'. "$VMS_RUN/lib"\n{command}\n', f"{marker}-cmd"))
            deadline = int(step.deadline or default_deadline)
            lines.append(f"vms_cmd {deadline} {path} || vms_fail {index} $?")
        if index in handlers:
            lines.append(f'rm -f -- "$vms_pending/{handlers[index]}"')
    lines.append(f"echo '{marker} {len(steps)}'")
    return "\n".join(lines) + "\n"


def _record_handlers(host: str, handlers: dict[int, str]) -> list[str]:
    if not handlers:
        return []
    return [f"vms_pending={_pending_root(host)}", '(umask 077 && mkdir -p "$vms_pending") || exit 70',
            *[f': > "$vms_pending/{name}" || exit 70' for name in handlers.values()]]


def _heredoc(path: str, text: str, delimiter: str) -> str:
    return f"cat > {path} <<'{delimiter}'\n{text}{'' if text.endswith(chr(10)) else chr(10)}{delimiter}"


# -- handlers that survive cuts ----------------------------------------------------------------------


def pending_markers(phase: str, host: str, operations: list[Operation]) -> dict[int, str]:
    """Operation index -> the name of the record a cut run leaves on the host for that handler."""
    return {index: hashlib.sha256(f"{phase}\0{operation.label}".encode()).hexdigest()[:24]
            for index, operation in enumerate(operations) if _triggers(operation) or _reloads(operation)}


def _pending_root(host: str) -> str:
    return shlex.quote(f"{STATE_DIR}/pending/{host}")


def sh_list_markers(host: str) -> str:
    """The recorded handlers' names, with shell builtins only: a no-op run starts no extra process for this."""
    return f'for vms_m in {_pending_root(host)}/*; do [ ! -e "$vms_m" ] || echo "${{vms_m##*/}}"; done'


def _triggers(operation: Operation) -> tuple[str, ...]:
    return tuple(getattr(operation, "restart_on", ())) + tuple(getattr(operation, "when_changed", ()))


def _reloads(operation: Operation) -> bool:
    return bool(getattr(operation, "daemon_reload", False))


def _triggered(operations: list[Operation], steps: list[Step], markers: dict[int, str]) -> dict[int, str]:
    """The handlers among ``steps`` that run because something changed: recorded on the host before placing."""
    return {index: markers[index] for index, step in enumerate(steps)
            if index in markers and step.status == CHANGE and step.runs_remotely}


# -- what a pair would do, for --resume ----------------------------------------------------------------


def inputs_digest(operations: list[Operation], key: bytes = b"") -> str:
    """A digest of everything ``operations`` would put on or run on a host (contents, commands, paths, modes).

    Functions (an Edit's transform) count by name and by the values they close over. Keyed (HMAC with the
    state directory's own random key) because contents can hold secrets and journals are plain files.
    """
    digest = hmac.new(key, digestmod=hashlib.sha256)
    for operation in operations:
        digest.update(_stable(operation).encode(errors="surrogateescape"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _stable(value) -> str:
    if is_dataclass(value) and not isinstance(value, type):
        inner = ",".join(f"{f.name}={_stable(getattr(value, f.name))}" for f in fields(value))
        return f"{type(value).__name__}({inner})"
    if isinstance(value, bytes):
        return "sha256:" + hashlib.sha256(value).hexdigest()
    if isinstance(value, (list, tuple, frozenset, set)):
        items = [_stable(v) for v in value]
        return "[" + ",".join(sorted(items) if isinstance(value, (set, frozenset)) else items) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_stable(k)}:{_stable(v)}" for k, v in sorted(value.items(), key=str)) + "}"
    if isinstance(value, re.Pattern):
        return f"re({value.pattern!r})"
    if callable(value):
        cells = [_stable(c.cell_contents) for c in (getattr(value, "__closure__", None) or ())]
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}{cells}"
    return repr(value)


# -- failures -----------------------------------------------------------------------------------------


def _script_deadline(steps: list[Step], ctx: HostContext) -> float:
    """The whole placing script's deadline: every command's own, the lock wait and some slack."""
    default = _step_deadline(ctx)
    commands = sum(((s.deadline or default) + 5) * (len(s.commands) + s.fresh_apt_index) for s in steps)
    return commands + LOCK_WAIT + 60 + sum(size_of(u.content) for s in steps for u in s.uploads) / 1e6


def _step_deadline(ctx: HostContext) -> float:
    return getattr(ctx.run, "step_deadline", None) or STEP_DEADLINE


def _step_failure(steps: list[Step], sections: list[str], result, token: str, ctx: HostContext) -> HostError:
    """The step that failed, with its exit code and the tail of its own stderr."""
    failed = re.search(rf"{re.escape(facts_mod.MARKER)}-{re.escape(token)} failed (\d+) (\d+)\n", result.stdout)
    if failed is None:     # the script itself stopped (the host's lock, no mktemp): no step is to blame
        return CommandError(ctx.host.name, f"placing script failed (exit {result.exit_code}): "
                            f"{_tail(result.stderr)}", result.exit_code, result.stderr)
    index, code = int(failed.group(1)), int(failed.group(2))
    step = steps[min(index, len(steps) - 1)]
    own_stderr = facts_mod.split_sections(result.stderr, token, len(steps) + 1)[index]
    if step.secret:
        detail = "(output hidden: secret)"
    else:
        detail = _tail(own_stderr or sections[index].replace(failed.group(0).strip(), ""))
    if code == 124:
        deadline = int(step.deadline or _step_deadline(ctx))
        return CommandTimeout(ctx.host.name, f"{step.label} did not end within its deadline of {deadline}s "
                              f"(stopped): {detail}", deadline)
    return CommandError(ctx.host.name, f"{step.label} failed (exit {code}): {detail}", code,
                        "" if step.secret else own_stderr)


def _tail(text: str, lines: int = 4) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "no output"


__all__ = ["PhaseOutcome", "run_phase_on_host", "decide", "decide_steps", "apply"]
