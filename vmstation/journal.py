"""The journal: every (phase, host) outcome of a run, one JSON line each, and the run's end.

Written to ``<inventory dir>/.vmstation/runs/<run id>.jsonl`` as the run goes, so
a run cut short still says how far it got. The end record says how the run ended:
``done``, ``failed``, ``interrupted`` or ``crashed`` (with the traceback); a journal
without one belongs to a run that died, and the next run says so and closes it as
``crashed``. ``--resume`` reads the newest journal of the same target and skips a
(phase, host) pair that finished there only when the digest of what it would do
is the same (``execute.inputs_digest``). Only names, statuses, counts, timings,
digests and redacted messages and tracebacks are written, never file contents or
command output.

``RunLock``: one applying run per inventory at a time (a lock file in the same
state directory naming the holder's pid and start time).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import time
from pathlib import Path

from vmstation.errors import InputError

log = logging.getLogger(__name__)


def state_dir(inventory_path: str) -> Path:
    return Path(os.environ.get("VMSTATION_STATE_DIR") or Path(inventory_path).resolve().parent / ".vmstation")


class Journal:
    def __init__(self, directory: Path, target: str, plan: bool):
        self.directory = directory
        self.target = target
        self.plan = plan
        # microseconds too: two runs in one second of one process (fab tasks, tests) must not share a file
        now = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
        run_id = f"{stamp}-{os.getpid()}-{target}"
        self.path = directory / f"{run_id}{'.plan' if plan else ''}.jsonl"
        self._handle = None

    @classmethod
    def for_inventory(cls, inventory_path: str, target: str, plan: bool = False) -> "Journal":
        return cls(state_dir(inventory_path) / "runs", target, plan)

    def start(self) -> None:
        """The first record, so that a run that dies before any outcome still leaves a journal to recognise."""
        self._write({"run": "start", "target": self.target, "pid": os.getpid(), "plan": self.plan})

    def record(self, outcome) -> None:
        entry = {"phase": outcome.phase, "host": outcome.host, "status": outcome.status,
                 "changed": outcome.changed, "skipped": len(outcome.skipped),
                 "seconds": round(outcome.seconds, 3), "commands": outcome.commands_sent,
                 "message": outcome.message}
        if getattr(outcome, "digest", ""):
            entry["digest"] = outcome.digest
        if getattr(outcome, "trace", ""):
            entry["traceback"] = outcome.trace
        self._write(entry)

    def close(self, result, status: str, trace: str = "") -> None:
        """The end record: ``status`` is done | failed | interrupted | crashed, with the exit code it gives."""
        entry = {"run": "end", "target": self.target, "status": status, "exit_code": result.exit_code,
                 "changed": result.changed, "seconds": round(result.seconds, 3)}
        if trace:
            entry["traceback"] = trace
        self._write(entry)
        if self._handle:
            self._handle.close()
            self._handle = None

    def digest_key(self) -> bytes:
        """The state directory's random key for digests (made once, 0600): journals need not be secret."""
        path = self.directory.parent / "digest.key"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:         # another run made it meanwhile
            return path.read_bytes()
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32))
        return path.read_bytes()

    def close_crashed_runs(self) -> list[Path]:
        """Journals of this target's earlier runs that have no end record: those runs died. Close them.

        Called while holding the RunLock, so no run that is still alive can be taken for a dead one.
        """
        crashed = []
        for path in self._own_runs()[-1:]:   # every run checks the one before it, so only the newest can be open
            entries = read_entries(path)
            if entries and entries[-1].get("run") != "end":
                with open(path, "a") as handle:
                    handle.write(("" if _ends_with_newline(path) else "\n") + json.dumps(
                        {"run": "end", "target": self.target, "status": "crashed",
                         "note": "no end record: the run died (recognised by a later run)"}, sort_keys=True) + "\n")
                crashed.append(path)
        return crashed

    def last_finished(self) -> dict[tuple[str, str], str]:
        """(phase, host) -> the digest of what it did, for pairs that finished in the newest applied run."""
        runs = self._own_runs()
        if not runs:
            return {}
        finished = {}
        for entry in read_entries(runs[-1]):
            if entry.get("status") in ("ok", "changed", "resumed") and "phase" in entry and "host" in entry:
                finished[(entry["phase"], entry["host"])] = entry.get("digest", "")
        return finished

    def _own_runs(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        own_name = re.compile(rf"^\d{{8}}-\d{{6}}\.\d{{6}}-\d+-{re.escape(self.target)}\.jsonl$")
        return sorted(p for p in self.directory.iterdir() if own_name.match(p.name) and p != self.path)

    def _write(self, entry: dict) -> None:
        if self._handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", buffering=1)
        self._handle.write(json.dumps(entry, sort_keys=True) + "\n")


def read_entries(path: Path) -> list[dict]:
    """Every decodable entry of a journal; a line cut short (a crash mid-write) is skipped with a warning."""
    entries = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            log.warning("%s: line %d is not a journal entry (cut short?); skipped", path, number)
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return True
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class RunLock:
    """One applying run per inventory: an exclusive lock on ``<state dir>/run.lock``, released at exit.

    The kernel drops the lock when the holder dies, so a crashed run never leaves it held.
    """

    def __init__(self, inventory_path: str):
        self.path = state_dir(inventory_path) / "run.lock"
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(f"{self.path}: another vmstation run holds this inventory ({holder}); "
                             "wait for it to end") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
