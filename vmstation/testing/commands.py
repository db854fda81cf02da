"""Running the local commands that build test hosts, with errors that say what failed.

Secrets never go through here in argv: a caller hands them over as ``stdin``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from vmstation.testing import HarnessError


def run(argv: Sequence[str], stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
    """Run ``argv`` and return its stdout; raise HarnessError with stderr's last line when it fails."""
    completed = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and completed.returncode != 0:
        raise HarnessError(f"{' '.join(argv[:4])}: exit {completed.returncode}: {_last_line(completed.stderr)}")
    return completed.stdout


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"
