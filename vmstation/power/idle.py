"""The idle policy: may the workers sleep now?

One policy for both callers: ``vmstation sleep --check`` (which runs this module on
masternode over SSH) and the systemd timer on masternode. ``decide`` is pure:

    observations + state (idle since when) + now + thresholds -> Decision

Every reason to stay awake is listed: a Jellyfin session playing, a host's CPU at
or above the threshold, a user logged in interactively, a Kubernetes Job running,
or something that could not be observed (when unsure, stay awake). Only when all
are quiet does the idle clock run; it persists in a JSON state file across runs,
restarts on any activity, and the workers may sleep once it reaches ``idle_hours``.

The parsers are pure functions over the real outputs of ``who``,
``loginctl list-sessions --no-legend``, ``/proc/stat``, node-exporter's
``/metrics`` and ``kubectl get jobs -A -o json``. ``run_check`` gathers them on the
host it runs on. Standard library only, so masternode needs just python3:

    python3 -m vmstation.power.idle --config /etc/vmstation/idle.json --state /var/lib/vmstation/idle.json

prints the decision as one JSON line (exit 0; 2 for a bad config file). With ``--textfile PATH``
(the scheduled check) it also writes the decision and every input it decided on to
node-exporter's textfile collector (``vmstation.power.metrics``), atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from vmstation.atomic import write_atomically
from vmstation.errors import InputError, VmstationError
from vmstation.power import metrics
from vmstation.power.jellyfin import JellyfinClient, active_playback, parse_date

_TTY = re.compile(r"(tty\w*|pts/\d+|:\d+(\.\d+)?)")


class Thresholds(Protocol):
    """What ``decide`` reads from the inventory's ``Power`` (or a ``CheckConfig``)."""

    @property
    def idle_hours(self) -> float: ...

    @property
    def cpu_threshold_percent(self) -> float: ...


@dataclass(frozen=True)
class Observations:
    """One look at the homelab; each entry is already a sentence for the operator."""

    playing: tuple[str, ...] = ()                        # Jellyfin sessions that count as watching
    cpu_percent: dict[str, float] = field(default_factory=dict)   # host -> busy percent over the sample
    user_sessions: tuple[str, ...] = ()                  # interactive logins
    running_jobs: tuple[str, ...] = ()                   # "namespace/name" of Jobs with active pods
    unknown: tuple[str, ...] = ()                        # what could not be observed, and why


@dataclass(frozen=True)
class IdleState:
    """What persists between checks: since when everything has been quiet (None = not quiet)."""

    idle_since: datetime | None = None


@dataclass(frozen=True)
class Decision:
    sleep: bool
    reasons: tuple[str, ...]
    new_state: IdleState

    def as_json(self, now: datetime) -> str:
        since = self.new_state.idle_since
        return json.dumps({"sleep": self.sleep, "reasons": list(self.reasons), "checked_at": _iso(now),
                           "idle_since": _iso(since) if since else None})


def decide(observations: Observations, state: IdleState, now: datetime, power: Thresholds) -> Decision:
    """Sleep only when nothing is going on and nothing has been for ``power.idle_hours``."""
    busy = awake_reasons(observations, power.cpu_threshold_percent)
    if busy:
        return Decision(False, tuple(busy), IdleState(idle_since=None))
    # A saved time in the future (clock stepped back) cannot be trusted: start from now.
    since = state.idle_since if state.idle_since and state.idle_since <= now else now
    idle_for, needed = now - since, timedelta(hours=power.idle_hours)
    summary = f"idle for {format_duration(idle_for)} of {format_duration(needed)}"
    if idle_for >= needed:
        return Decision(True, (f"{summary}: everything quiet, workers may sleep",), IdleState(since))
    return Decision(False, (summary,), IdleState(since))


def awake_reasons(observations: Observations, cpu_threshold: float) -> list[str]:
    """Every reason to stay awake, in a stable order; empty when all is quiet."""
    reasons = [f"Jellyfin: {playing}" for playing in observations.playing]
    reasons += [f"{host}: CPU {percent:.1f}% (threshold {cpu_threshold:g}%)"
                for host, percent in sorted(observations.cpu_percent.items()) if percent >= cpu_threshold]
    reasons += [f"logged in: {who}" for who in observations.user_sessions]
    reasons += [f"Kubernetes Job running: {job}" for job in observations.running_jobs]
    reasons += [f"not observed: {what} (staying awake when unsure)" for what in observations.unknown]
    return reasons


def format_duration(span: timedelta) -> str:
    """``1h10m``, ``2h``, ``45m``: whole minutes, rounded down."""
    minutes = max(0, int(span.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours}h{minutes:02d}m"
    return f"{hours}h" if hours else f"{minutes}m"


# ---------------------------------------------------------------------------
# Parsers: real command output in, plain values out
# ---------------------------------------------------------------------------


def parse_who(text: str, own_tty: str | None = None) -> tuple[str, ...]:
    """``who`` lines (``alice pts/0 2024-05-01 10:02 (10.0.0.5)``) -> ``alice on pts/0 from 10.0.0.5``."""
    sessions = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[1] == own_tty:
            continue
        origin = line[line.index("(") + 1:line.rindex(")")] if line.rstrip().endswith(")") else ""
        sessions.append(f"{fields[0]} on {fields[1]}" + (f" from {origin}" if origin else ""))
    return tuple(sessions)


def parse_loginctl_sessions(text: str, own_session: str | None = None) -> tuple[str, ...]:
    """``loginctl list-sessions --no-legend`` -> interactive sessions (those with a TTY or a seat).

    Columns differ between systemd versions (252: SESSION UID USER SEAT TTY with empty
    cells; 254+: "-" cells and STATE IDLE SINCE; 256: LEADER CLASS), so after the first
    three the cells are recognised by their shape. Sessions without a TTY or seat are
    SSH commands, cron or user managers: not a person at a terminal.
    """
    sessions = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0] == own_session:
            continue
        rest = fields[3:]
        tty = next((cell for cell in rest if _TTY.fullmatch(cell)), None)
        seat = next((cell for cell in rest if cell.startswith("seat")), None)
        if tty or seat:
            sessions.append(f"{fields[2]} on {tty or seat} (session {fields[0]})")
    return tuple(sessions)


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative CPU time (any unit): busy and total, so two samples give a percentage."""

    busy: float
    total: float


def cpu_percent(before: CpuTimes, after: CpuTimes) -> float:
    """Busy share of the time between two samples, 0..100."""
    total = after.total - before.total
    return 0.0 if total <= 0 else max(0.0, min(100.0, 100.0 * (after.busy - before.busy) / total))


def parse_proc_stat(text: str) -> CpuTimes:
    """The ``cpu`` line of /proc/stat: idle + iowait are idle; guest time is already inside user."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            ticks = [int(value) for value in line.split()[1:9]]
            return CpuTimes(busy=sum(ticks) - ticks[3] - ticks[4], total=sum(ticks))
    raise InputError("/proc/stat: no 'cpu' line")


def parse_node_exporter_cpu(text: str) -> CpuTimes:
    """node-exporter ``/metrics``: ``node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5`` summed over CPUs."""
    busy = total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith("node_cpu_seconds_total{"):
            labels, _, value = line.rpartition("} ")
            seconds = float(value.split()[0])
            total += seconds
            if 'mode="idle"' not in labels and 'mode="iowait"' not in labels:
                busy += seconds
            found = True
    if not found:
        raise InputError("node-exporter metrics: no node_cpu_seconds_total samples")
    return CpuTimes(busy=busy, total=total)


def parse_kubectl_jobs(text: str) -> tuple[str, ...]:
    """``kubectl get jobs -A -o json`` -> ``namespace/name`` of each Job with ``status.active > 0``."""
    try:
        items = json.loads(text)["items"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError("kubectl get jobs -o json: not a Kubernetes list") from exc
    running = []
    for job in items:
        meta, status = job.get("metadata") or {}, job.get("status") or {}
        if (status.get("active") or 0) > 0:
            running.append(f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}")
    return tuple(sorted(running))


# ---------------------------------------------------------------------------
# The state file: JSON, written atomically
# ---------------------------------------------------------------------------


def load_state(path: str | os.PathLike) -> IdleState:
    """The saved state; a missing file is a fresh start, an unreadable one an InputError naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return IdleState()
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: idle state unreadable ({exc.__class__.__name__})") from exc
    since = data.get("idle_since") if isinstance(data, dict) else "?"
    if since is not None and parse_date(since) is None:
        raise InputError(f"{path}: key 'idle_since': expected an ISO 8601 time or null")
    return IdleState(idle_since=parse_date(since))


def save_state(path: str | os.PathLike, state: IdleState) -> None:
    """Written atomically: a crash leaves the old or the new file."""
    since = _iso(state.idle_since) if state.idle_since else None
    write_atomically(path, (json.dumps({"idle_since": since}) + "\n").encode())


# ---------------------------------------------------------------------------
# The scheduled check on masternode
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckConfig:
    """The check's JSON config, written by the engine on masternode (the key lives in its own 0600 file)."""

    idle_hours: float = 2.0
    cpu_threshold_percent: float = 20.0
    jellyfin_url: str | None = None
    jellyfin_api_key_file: str | None = None
    paused_grace_minutes: float = 15.0
    cpu: dict[str, str] = field(default_factory=dict)     # host -> "local" or node-exporter /metrics URL
    cpu_sample_seconds: float = 5.0
    kubectl: tuple[str, ...] = ()      # e.g. ("kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf")


def run_check(config_path: str, state_path: str, save: bool = True,
              textfile: str | None = None) -> tuple[Decision, datetime]:
    """Gather observations here, decide, and (unless ``save`` is False) persist the new state.

    With ``textfile``, the decision and its inputs also go to node-exporter's textfile collector.
    """
    config = load_config(config_path)
    observations = gather_observations(config)
    now = datetime.now(timezone.utc)
    notes: tuple[str, ...] = ()
    try:
        state = load_state(state_path)
    except InputError as exc:
        state, notes = IdleState(), (f"{exc}; idle clock restarted",)
    decision = decide(observations, state, now, config)
    if save:
        save_state(state_path, decision.new_state)
    decision = replace(decision, reasons=decision.reasons + notes)
    if textfile:
        metrics.write_textfile(textfile, metrics.idle_families(observations, decision, now.timestamp(), config))
    return decision, now


def load_config(path: str) -> CheckConfig:
    """Read and check the config file; every error names the file and the key."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the idle check config ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    known = set(CheckConfig.__dataclass_fields__)
    for key in data:
        if key not in known:
            raise InputError(f"{path}: key {key!r}: unknown (expected one of {', '.join(sorted(known))})")
    for key in ("idle_hours", "cpu_threshold_percent", "paused_grace_minutes", "cpu_sample_seconds"):
        if key in data and (not isinstance(data[key], (int, float)) or isinstance(data[key], bool) or data[key] < 0):
            raise InputError(f"{path}: key {key!r}: expected a number >= 0")
    cpu = data.get("cpu", {})
    if not isinstance(cpu, dict) or not all(v == "local" or str(v).startswith(("http://", "https://"))
                                            for v in cpu.values()):
        raise InputError(f"{path}: key 'cpu': expected {{host: \"local\" or \"http://HOST:9100/metrics\"}}")
    kubectl = data.get("kubectl", [])
    if not isinstance(kubectl, list) or not all(isinstance(arg, str) for arg in kubectl):
        raise InputError(f"{path}: key 'kubectl': expected a list of strings (the command and its options)")
    return CheckConfig(**{**data, "kubectl": tuple(kubectl)})


def gather_observations(config: CheckConfig) -> Observations:
    """Look at everything the config names; a source that fails becomes an ``unknown`` entry."""
    unknown: list[str] = []
    return Observations(
        playing=_observe(unknown, "Jellyfin", lambda: _jellyfin_playing(config), ()),
        cpu_percent=_observe(unknown, "CPU", lambda: _cpu_percent(config, unknown), {}),
        user_sessions=_observe(unknown, "logins", _user_sessions, ()),
        running_jobs=_observe(unknown, "Jobs", lambda: _running_jobs(config), ()),
        unknown=tuple(unknown),
    )


def _observe(unknown: list[str], what: str, look, absent):
    try:
        return look()
    except (VmstationError, OSError, subprocess.SubprocessError, ValueError) as exc:
        unknown.append(f"{what}: {exc}")
        return absent


def _jellyfin_playing(config: CheckConfig) -> tuple[str, ...]:
    if not config.jellyfin_url:
        return ()
    if not config.jellyfin_api_key_file:
        raise InputError("jellyfin_url is set but jellyfin_api_key_file is not")
    key = Path(config.jellyfin_api_key_file).read_text(encoding="utf-8").strip()
    sessions = JellyfinClient(config.jellyfin_url, key).sessions()
    grace = timedelta(minutes=config.paused_grace_minutes)
    return tuple(session.describe() for session in active_playback(sessions, paused_grace=grace))


def _cpu_percent(config: CheckConfig, unknown: list[str]) -> dict[str, float]:
    """Two samples ``cpu_sample_seconds`` apart; a host that cannot be sampled is reported, not guessed."""
    first = {host: _observe(unknown, f"CPU of {host}", lambda s=src: _cpu_times(s), None)
             for host, src in config.cpu.items()}
    if not any(first.values()):
        return {}
    time.sleep(config.cpu_sample_seconds)
    result = {}
    for host, before in first.items():
        after = before and _observe(unknown, f"CPU of {host}", lambda s=config.cpu[host]: _cpu_times(s), None)
        if after:
            result[host] = round(cpu_percent(before, after), 1)
    return result


def _cpu_times(source: str) -> CpuTimes:
    if source == "local":
        return parse_proc_stat(Path("/proc/stat").read_text(encoding="ascii"))
    with urllib.request.urlopen(source, timeout=5) as response:
        return parse_node_exporter_cpu(response.read().decode("utf-8", "replace"))


def _user_sessions() -> tuple[str, ...]:
    """loginctl when systemd-logind is there, else who (utmp)."""
    try:
        listing = _run(["loginctl", "list-sessions", "--no-legend"])
        return parse_loginctl_sessions(listing, own_session=os.environ.get("XDG_SESSION_ID"))
    except (OSError, subprocess.SubprocessError):
        own_tty = os.ttyname(0).removeprefix("/dev/") if os.isatty(0) else None
        return parse_who(_run(["who"]), own_tty=own_tty)


def _running_jobs(config: CheckConfig) -> tuple[str, ...]:
    if not config.kubectl:
        return ()
    return parse_kubectl_jobs(_run([*config.kubectl, "get", "jobs", "--all-namespaces", "-o", "json"]))


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise subprocess.SubprocessError(f"{argv[0]} exited {done.returncode}: {detail}")
    return done.stdout


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m vmstation.power.idle", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the check's JSON config file")
    parser.add_argument("--state", required=True, help="the JSON state file (idle since when)")
    parser.add_argument("--dry-run", action="store_true", help="decide, but leave the state file as it is")
    parser.add_argument("--textfile", help="also write the decision and its inputs here (node-exporter's "
                        f"textfile collector, e.g. {metrics.IDLE_TEXTFILE})")
    args = parser.parse_args(argv)
    try:
        decision, now = run_check(args.config, args.state, save=not args.dry_run, textfile=args.textfile)
    except InputError as exc:
        print(f"vmstation idle check: {exc}", file=sys.stderr)
        return 2
    print(decision.as_json(now))
    return 0


if __name__ == "__main__":
    sys.exit(main())
