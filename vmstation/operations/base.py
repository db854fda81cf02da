"""What every operation shares: the Step it decides, uploads, quoting, the base class."""

from __future__ import annotations

import functools
import hashlib
import shlex
from dataclasses import dataclass, replace
from typing import Any

from vmstation.status import StepStatus

CHANGE, OK, SKIP, CHECK, WARN = StepStatus.CHANGE, StepStatus.OK, StepStatus.SKIP, StepStatus.CHECK, StepStatus.WARN


def sh(template: str, *args) -> str:
    """A shell command with every argument quoted: ``sh("rm -f -- {}", path)``."""
    return template.format(*(shlex.quote(str(a)) for a in args))


@dataclass(frozen=True)
class LocalFile:
    """A file on the operator's machine as a File's content (an air-gapped binary, the RKE2 image tarball):
    streamed to each host, never read whole; its sha256 is computed once per run and shared by every host and
    by the preflight (``local_file``). A changed file is a new digest, so --resume sees the change."""

    path: str
    size: int
    sha256: str

    def open(self):
        return open(self.path, "rb")

    def read(self) -> bytes:
        """The whole content: only for `vmstation render`, which writes it out."""
        with self.open() as handle:
            return handle.read()


def local_file(path) -> LocalFile:
    """``path`` as a LocalFile, its digest computed once per (path, size, modification time) in this process."""
    import os

    real = os.path.realpath(path)
    stat = os.stat(real)
    return LocalFile(str(path), stat.st_size, _sha256_of(real, stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def size_of(content: "bytes | LocalFile") -> int:
    return content.size if isinstance(content, LocalFile) else len(content)


@dataclass(frozen=True)
class Upload:
    path: str
    content: "bytes | LocalFile"
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
    status: StepStatus
    reason: str = ""
    uploads: tuple[Upload, ...] = ()
    commands: tuple[str, ...] = ()
    diff: str = ""
    local_writes: tuple[LocalWrite, ...] = ()
    capture: Any = None              # Capture handle (or name) under which this step's output is kept
    secret: bool = False             # never show content, diff or output
    deadline: float | None = None    # seconds each of its commands may run (None: the run's default, 300 s)
    on: Any = None                   # the Host it runs on when not the phase's own host (``On``)
    fresh_apt_index: bool = False    # its commands need apt's package lists fresh: the executor updates them
                                     # first, once per placing script

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


def label_of(reference: "Operation | str") -> str:
    """What a handler's trigger refers to: an operation of the same phase (or, as before, its label)."""
    return reference if isinstance(reference, str) else reference.label


def labels_of(references) -> tuple[str, ...]:
    return tuple(label_of(reference) for reference in references)


@dataclass(frozen=True)
class On(Operation):
    """``operation`` done on another host of the run (drain a node on its control plane), declared as such.

    The executor asks its probe over ``host``'s own connection, shows it in a plan as "(on HOST)", and
    runs what it decides there with ``host``'s placing script and lock; the phase stays a description.
    """

    host: Any               # vmstation.inventory.Host
    operation: Operation

    @property
    def label(self) -> str:
        return f"{self.operation.label} (on {self.host.name})"

    def probe(self, detail: bool) -> str:
        return self.operation.probe(detail)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        step = self.operation.decide(fact, changed)
        return replace(step, label=self.label, on=self.host)
