"""What every operation shares: the Step it decides, uploads, quoting, the base class."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

CHANGE, OK, SKIP, CHECK, WARN = "change", "ok", "skip", "check", "warn"


def sh(template: str, *args) -> str:
    """A shell command with every argument quoted: ``sh("rm -f -- {}", path)``."""
    return template.format(*(shlex.quote(str(a)) for a in args))


@dataclass(frozen=True)
class Upload:
    path: str
    content: bytes
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"


@dataclass(frozen=True)
class LocalWrite:
    """A file written on the operator's machine (fetched kubeconfig, artifacts)."""

    path: str
    content: bytes
    mode: int = 0o600


@dataclass(frozen=True)
class Step:
    label: str
    status: str
    reason: str = ""
    uploads: tuple[Upload, ...] = ()
    commands: tuple[str, ...] = ()
    diff: str = ""
    local_writes: tuple[LocalWrite, ...] = ()
    capture: str | None = None       # name under which this step's output is kept for later phases
    secret: bool = False             # never show content, diff or output
    deadline: float | None = None    # seconds each of its commands may run (None: the run's default, 300 s)

    @property
    def runs_remotely(self) -> bool:
        return self.status in (CHANGE, CHECK) and bool(self.uploads or self.commands)


class Operation:
    """Base of all operations. Subclasses are frozen dataclasses."""

    label: str

    def probe(self, detail: bool) -> str:
        """Shell snippet printing this operation's fact. ``detail``: also what a diff needs."""
        return ""

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        """Pure: the fact (probe's output) -> what to do. ``changed``: labels changed earlier in the phase."""
        raise NotImplementedError
