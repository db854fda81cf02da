"""Every distinct command line of this machine (boxes included) while a block runs: secrets must be in none."""

from __future__ import annotations

import threading
from pathlib import Path


class ArgvWatch:
    """Every distinct command line of this machine (boxes included) while the block runs."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.seen = interval, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    try:
                        self.seen.add((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                    except OSError:
                        continue
            self._stop.wait(self.interval)
