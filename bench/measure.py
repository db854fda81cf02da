"""Timing one tool run: whole-process wall time and the controller CPU it used.

Each run is a separate process. Wall time is from spawn to exit. CPU is the
growth of ``getrusage(RUSAGE_CHILDREN)`` (user + system) across the run, which
covers the process and every descendant that was waited for. Ansible's OpenSSH
ControlPersist masters outlive ansible-playbook; this process makes itself a
child subreaper, so those masters are re-parented here, and ``run_process``
ends and waits for them before reading the CPU figure: their crypto work counts.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Measured:
    wall: float          # seconds
    cpu: float           # seconds of controller CPU, all descendants
    exit_code: int
    output: str          # stdout + stderr, kept for the raw results and for failures


def become_subreaper() -> None:
    """Adopt the orphans of our descendants (ssh ControlPersist masters) so they can be waited for."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def run_process(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 900) -> Measured:
    """Run ``argv`` to completion; reap what it left behind; return its wall time and CPU."""
    before = _children_cpu()
    started = time.monotonic()
    completed = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - started
    reap_adopted("ssh")
    return Measured(wall, _children_cpu() - before, completed.returncode, completed.stdout + completed.stderr)


def reap_adopted(command_name: str) -> int:
    """End and wait for adopted orphans called ``command_name``; return how many there were."""
    adopted = [pid for pid in _children() if _comm(pid) == command_name]
    for pid in adopted:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in adopted:
        os.waitpid(pid, 0)
    return len(adopted)


def reap_zombies() -> list[tuple[int, str]]:
    """Wait for adopted children that already ended; return the ones still alive (pid, name)."""
    alive = []
    for pid in _children():
        if _state(pid) == "Z":
            os.waitpid(pid, 0)
        else:
            alive.append((pid, _comm(pid)))
    return alive


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(entry.name))
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
