"""Sleep and wake as metrics: node-exporter's textfile collector on masternode.

The Grafana dashboards draw who is asleep, since when, why the last idle check decided what
it did and how long wakes take from two files in node-exporter's textfile directory:

    vmstation_idle.prom    written by each scheduled idle check (its decision and every input)
    vmstation_power.prom   written at each sleep and wake event, from a small JSON record of them

Both are written atomically (temporary file beside the target, fsync, rename): node-exporter
reads whole files only, never half of one. Label names avoid ``job``, ``instance`` and
``node``: Prometheus attaches those to every series of masternode's node-exporter target and
would rename ours to ``exported_*``. The workers are named by ``worker``, hosts by ``host``.

Standard library only: this module runs on masternode as

    python3 -m vmstation.power.metrics sleep-start --nodes a,b
    python3 -m vmstation.power.metrics asleep --nodes a --down ADDRESS:PORT [--timeout 300]
    python3 -m vmstation.power.metrics wake-start --nodes a,b
    python3 -m vmstation.power.metrics awake --nodes a [--seconds 42.5]

each with ``--state`` (the event record) and ``--textfile`` (the .prom file it rewrites).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from vmstation.atomic import write_atomically
from vmstation.errors import InputError

TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"     # Debian's textfile directory for node-exporter
IDLE_TEXTFILE = f"{TEXTFILE_DIR}/vmstation_idle.prom"
POWER_TEXTFILE = f"{TEXTFILE_DIR}/vmstation_power.prom"
POWER_STATE = "/var/lib/vmstation/power-events.json"
DOWN_TIMEOUT = 300.0
LABEL_LIMIT = 200        # characters of a reason kept in a label: enough to read, bounded for Prometheus
POLL = 1.0


# ---------------------------------------------------------------------------
# The exposition format (Prometheus text format 0.0.4, as the textfile collector reads it)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One metric: its help, its type and its samples ((labels, value) pairs)."""

    name: str
    help: str
    samples: tuple[tuple[dict, float], ...]
    type: str = "gauge"


def exposition(families: list[Family]) -> str:
    """The text node-exporter reads: HELP and TYPE once per family, then its samples; empty families left out."""
    lines = []
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            lines.append(f"{family.name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def write_textfile(path: str | os.PathLike, families: list[Family]) -> None:
    """Atomically, world-readable: node-exporter runs as nobody."""
    write_atomically(path, exposition(families).encode("utf-8"), mode=0o644)


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape_value(str(value))}"' for key, value in sorted(labels.items())) + "}"


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


# ---------------------------------------------------------------------------
# The idle check: its decision and every input it decided on
# ---------------------------------------------------------------------------


def idle_families(observations, decision, checked_at: float, thresholds) -> list[Family]:
    """Families for one idle check (``vmstation.power.idle``'s Observations, Decision and thresholds)."""
    since = decision.new_state.idle_since
    idle_for = max(0.0, checked_at - since.timestamp()) if since else 0.0
    verdict = "sleep" if decision.sleep else "stay-awake"
    reasons = "; ".join(decision.reasons)
    return [
        Family("vmstation_idle_check_timestamp_seconds", "When the idle check last ran (Unix time).",
               (({}, checked_at),)),
        Family("vmstation_idle_check_sleep", "The last decision: 1 the workers may sleep, 0 they stay awake.",
               (({}, 1.0 if decision.sleep else 0.0),)),
        Family("vmstation_idle_check_info", "The last decision and its reasons, as labels (value always 1).",
               (({"decision": verdict, "reason": _bounded(reasons)}, 1.0),)),
        Family("vmstation_idle_jellyfin_playing_sessions", "Jellyfin sessions playing (or paused within the grace).",
               (({}, float(len(observations.playing))),)),
        Family("vmstation_idle_cpu_percent", "CPU busy share of each host over the check's sample.",
               tuple(({"host": host}, float(percent)) for host, percent in sorted(observations.cpu_percent.items()))),
        Family("vmstation_idle_cpu_threshold_percent", "CPU at or above this keeps the workers awake.",
               (({}, float(thresholds.cpu_threshold_percent)),)),
        Family("vmstation_idle_logged_in_users", "Interactive login sessions (a person at a terminal).",
               (({}, float(len(observations.user_sessions))),)),
        Family("vmstation_idle_running_jobs", "Kubernetes Jobs with active pods.",
               (({}, float(len(observations.running_jobs))),)),
        Family("vmstation_idle_unobserved", "Sources the check could not observe (it stays awake when unsure).",
               (({}, float(len(observations.unknown))),)),
        Family("vmstation_idle_since_timestamp_seconds", "Since when everything has been quiet (absent when busy).",
               (({}, since.timestamp()),) if since else ()),
        Family("vmstation_idle_seconds", "How long everything has been quiet (0 when busy).", (({}, idle_for),)),
        Family("vmstation_idle_needed_seconds", "Quiet time needed before the workers may sleep.",
               (({}, float(thresholds.idle_hours) * 3600.0),)),
    ]


def _bounded(text: str) -> str:
    return text if len(text) <= LABEL_LIMIT else text[:LABEL_LIMIT - 3] + "..."


# ---------------------------------------------------------------------------
# Sleep and wake: a record of events per worker, rendered to the power textfile
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerPower:
    """What the dashboards show of one worker; times are Unix seconds, None before the first event."""

    asleep: bool = False
    sleep_start: float | None = None      # the sleep sequence began (record, cordon, drain)
    sleep_end: float | None = None        # the worker was seen down
    wake_start: float | None = None       # the magic packet was sent
    wake_end: float | None = None         # the worker answered again
    wake_seconds: float | None = None     # magic packet to answer: the time-to-wake
    sleeps: int = 0
    wakes: int = 0

    @property
    def state(self) -> int:
        """0 awake, 1 falling asleep (sleep began, not yet seen down), 2 asleep, 3 waking (packet sent)."""
        if self.asleep:
            return WAKING if _after(self.wake_start, self.sleep_end) else ASLEEP
        return FALLING_ASLEEP if _after(self.sleep_start, self.sleep_end, self.wake_end) else AWAKE


AWAKE, FALLING_ASLEEP, ASLEEP, WAKING = 0, 1, 2, 3


def _after(moment: float | None, *others: float | None) -> bool:
    return moment is not None and all(other is None or moment > other for other in others)


@dataclass(frozen=True)
class PowerRecord:
    workers: dict[str, WorkerPower] = field(default_factory=dict)


def apply_event(record: PowerRecord, event: str, nodes: list[str], now: float,
                seconds: float | None = None) -> PowerRecord:
    """The record after ``event`` happened to ``nodes`` at ``now`` (pure)."""
    workers = dict(record.workers)
    for node in nodes:
        workers[node] = _next(workers.get(node, WorkerPower()), event, now, seconds)
    return PowerRecord(workers)


def _next(worker: WorkerPower, event: str, now: float, seconds: float | None) -> WorkerPower:
    if event == "sleep-start":
        return replace(worker, sleep_start=now)
    if event == "asleep":
        return replace(worker, asleep=True, sleep_end=now, sleeps=worker.sleeps + 1)
    if event == "wake-start":
        return replace(worker, wake_start=now)
    if event == "awake":
        # A packet sent by masternode for this wake (after the worker went down) starts the clock on
        # masternode's own time; a wake from the operator's machine only brings the measured seconds.
        pending = worker.wake_start is not None and worker.wake_start >= (worker.sleep_end or 0.0)
        if seconds is None:
            seconds = now - worker.wake_start if pending else None
        end = worker.wake_start + seconds if pending and seconds is not None else now
        start = end - seconds if seconds is not None else worker.wake_start
        return replace(worker, asleep=False, wake_start=start, wake_end=end, wake_seconds=seconds,
                       wakes=worker.wakes + 1)
    raise InputError(f"unknown power event {event!r} (expected sleep-start, asleep, wake-start or awake)")


def power_families(record: PowerRecord) -> list[Family]:
    workers = sorted(record.workers.items())

    def each(attribute: str) -> tuple[tuple[dict, float], ...]:
        return tuple(({"worker": name}, float(getattr(w, attribute))) for name, w in workers
                     if getattr(w, attribute) is not None)

    return [
        Family("vmstation_power_state", "0 awake, 1 falling asleep (drained, not yet seen down), 2 asleep, "
               "3 waking (magic packet sent, not yet answering).", each("state")),
        Family("vmstation_power_asleep", "1 while vmstation has put the worker to sleep, 0 once it woke it.",
               each("asleep")),
        Family("vmstation_power_sleep_start_timestamp_seconds", "When the last sleep began (Unix time).",
               each("sleep_start")),
        Family("vmstation_power_sleep_end_timestamp_seconds", "When the worker was last seen down (Unix time).",
               each("sleep_end")),
        Family("vmstation_power_wake_start_timestamp_seconds", "When the last magic packet was sent (Unix time).",
               each("wake_start")),
        Family("vmstation_power_wake_end_timestamp_seconds", "When the worker last answered after a wake.",
               each("wake_end")),
        Family("vmstation_power_wake_duration_seconds", "Magic packet to SSH answer, the last wake.",
               each("wake_seconds")),
        Family("vmstation_power_sleeps_total", "Sleeps recorded.", each("sleeps"), type="counter"),
        Family("vmstation_power_wakes_total", "Wakes recorded.", each("wakes"), type="counter"),
    ]


def load_record(path: str | os.PathLike) -> PowerRecord:
    """The saved record; missing is empty, unreadable is an InputError naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return PowerRecord({name: WorkerPower(**values) for name, values in data["workers"].items()})
    except FileNotFoundError:
        return PowerRecord()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: power event record unreadable ({exc.__class__.__name__})") from exc


def save_record(path: str | os.PathLike, record: PowerRecord) -> None:
    data = {"workers": {name: asdict(worker) for name, worker in sorted(record.workers.items())}}
    write_atomically(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def record_event(event: str, nodes: list[str], state: str, textfile: str, seconds: float | None = None,
                 now: float | None = None) -> PowerRecord:
    """Apply one event, save the record, rewrite the textfile; return the new record."""
    record = apply_event(load_record(state), event, nodes, time.time() if now is None else now, seconds)
    save_record(state, record)
    write_textfile(textfile, power_families(record))
    return record


def wait_until_down(address: str, port: int, timeout: float) -> bool:
    """True once ``address:port`` stops accepting TCP connections (the worker is off), within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=2):
                pass
        except OSError:
            return True
        time.sleep(POLL)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m vmstation.power.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("event", choices=("sleep-start", "asleep", "wake-start", "awake"))
    parser.add_argument("--nodes", required=True, help="the workers (comma-separated)")
    parser.add_argument("--state", default=POWER_STATE, help="the JSON record of power events")
    parser.add_argument("--textfile", default=POWER_TEXTFILE, help="the .prom file node-exporter reads")
    parser.add_argument("--seconds", type=float, help="awake: the time-to-wake measured by the waker")
    parser.add_argument("--down", action="append", default=[], metavar="ADDRESS:PORT",
                        help="asleep: wait until this stops answering first (one per node, in order)")
    parser.add_argument("--timeout", type=float, default=DOWN_TIMEOUT, help="asleep: how long to wait")
    args = parser.parse_args(argv)
    nodes = [name for name in args.nodes.split(",") if name]
    try:
        if args.down:
            nodes = _seen_down(nodes, args.down, args.timeout)
        if nodes:
            record_event(args.event, nodes, args.state, args.textfile, args.seconds)
    except InputError as exc:
        print(f"vmstation power metrics: {exc}", file=sys.stderr)
        return 2
    return 0 if not args.down or len(nodes) == len(args.down) else 1


def _seen_down(nodes: list[str], endpoints: list[str], timeout: float) -> list[str]:
    if len(endpoints) != len(nodes):
        raise InputError("--down: one ADDRESS:PORT per node, in the order of --nodes")
    down = []
    for node, endpoint in zip(nodes, endpoints, strict=True):
        address, _, port = endpoint.rpartition(":")
        if not port.isdigit():
            raise InputError(f"--down {endpoint!r}: expected ADDRESS:PORT")
        if wait_until_down(address.strip("[]"), int(port), timeout):
            down.append(node)
        else:
            print(f"vmstation power metrics: {node} still answers on {endpoint} after {timeout:g} s; "
                  "not recorded as asleep", file=sys.stderr)
    return down


if __name__ == "__main__":
    sys.exit(main())
