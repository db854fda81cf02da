"""The two status vocabularies of a run, as enums (``StrEnum``: each is also its word, so journals, JSON
reports and snapshots read as before).

``StepStatus``: what an operation decided for one host. ``Outcome``: how a (phase, host) pair ended.
"""

from __future__ import annotations

from enum import StrEnum


class StepStatus(StrEnum):
    CHANGE = "change"    # something will be done
    OK = "ok"            # already so, with the reason
    SKIP = "skip"        # cannot be done here, with the reason: never reported as done
    CHECK = "check"      # runs every time but changes nothing: waits, captures
    WARN = "warn"        # a preflight warning the operator must see; nothing runs


class Outcome(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"    # cannot run on this machine (exit 3), never a failure of the host
    BLOCKED = "blocked"            # a phase it needs did not finish
    RESUMED = "resumed"            # --resume: finished in the last run, unchanged since
    PLANNED = "planned"
    INTERRUPTED = "interrupted"

    @property
    def succeeded(self) -> bool:
        return self in SUCCEEDED

    @property
    def bad(self) -> bool:
        """Stops the phases that need this pair (failed or blocked)."""
        return self in (Outcome.FAILED, Outcome.BLOCKED)


SUCCEEDED = frozenset({Outcome.OK, Outcome.CHANGED, Outcome.PLANNED, Outcome.RESUMED})
