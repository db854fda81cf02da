"""The journal: every (phase, host) outcome of a run, one JSON line each.

Written to ``<inventory dir>/.vmstation/runs/<run id>.jsonl`` as the run goes, so
a run cut short still says how far it got. ``--resume`` reads the newest journal
of the same target and skips the (phase, host) pairs that finished there. Only
names, statuses, counts, timings and redacted messages are written, never file
contents or command output.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path


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
        base = Path(os.environ.get("VMSTATION_STATE_DIR") or Path(inventory_path).resolve().parent / ".vmstation")
        return cls(base / "runs", target, plan)

    def record(self, outcome) -> None:
        self._write({"phase": outcome.phase, "host": outcome.host, "status": outcome.status,
                     "changed": outcome.changed, "skipped": len(outcome.skipped),
                     "seconds": round(outcome.seconds, 3), "commands": outcome.commands_sent,
                     "message": outcome.message})

    def close(self, result) -> None:
        self._write({"run": "end", "target": self.target, "exit_code": result.exit_code,
                     "changed": result.changed, "seconds": round(result.seconds, 3)})
        if self._handle:
            self._handle.close()
            self._handle = None

    def last_finished(self) -> set[tuple[str, str]]:
        """(phase, host) pairs that finished in the newest applied run of this target."""
        if not self.directory.is_dir():
            return set()
        own_name = re.compile(rf"^\d{{8}}-\d{{6}}\.\d{{6}}-\d+-{re.escape(self.target)}\.jsonl$")
        runs = sorted(p for p in self.directory.iterdir() if own_name.match(p.name) and p != self.path)
        if not runs:
            return set()
        finished = set()
        for line in runs[-1].read_text().splitlines():
            entry = json.loads(line)
            if entry.get("status") in ("ok", "changed", "resumed"):
                finished.add((entry["phase"], entry["host"]))
        return finished

    def _write(self, entry: dict) -> None:
        if self._handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", buffering=1)
        self._handle.write(json.dumps(entry, sort_keys=True) + "\n")
