"""The benchmark's hosts: sshd in network namespaces whose logs say what each tool sent.

``BenchHostSet`` is ``vmstation.testing.sshd_hosts.SshdHostSet`` with sshd at
``LogLevel VERBOSE``: sshd then writes one line per authenticated connection
("Accepted publickey") and one per session ("Starting session: command ..." for
an exec request, "Starting session: subsystem 'sftp' ..." for an SFTP session).
Counting those lines is how commands per host are measured: it is the server's
own account, the same for every tool, and needs nothing on the client side.

``write_host_files`` describes the first N hosts for every tool at once: a
``hosts.json`` (addresses, keys, each host's root directory and template values,
the file list of W) and a ``hosts.toml`` in vmstation's inventory schema.

Each sshd also runs in a mount namespace of its own where ``/root`` is a fresh
home made from ``/etc/skel``. The hosts share this machine's filesystem, and
this machine's ``/root/.bashrc`` runs ``pyenv init`` (about 0.5 s): bash sources
``~/.bashrc`` for every command sshd starts, so without a home of their own the
hosts would add half a second to every remote command of every tool and measure
this machine's shell set-up instead of the tools. A real host's root has
Debian's stock ``.bashrc``, which returns at once when not interactive.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bench import spec
from vmstation.testing.inventory_file import InventoryHost, write_inventory
from vmstation.testing.sshd_hosts import SshdHost, SshdHostSet

PREFIX, SUBNET, BRIDGE = "vmsbn", "10.77.16.0/20", "vmsbn0"
_SESSION = re.compile(r"^Starting session: (command|subsystem 'sftp'|shell|forced-command)")


class BenchHostSet(SshdHostSet):
    """SshdHostSet on the benchmark's own prefix, subnet and bridge, with sshd logging every session
    and a stock home per host (see the module docstring)."""

    def __init__(self, count: int):
        super().__init__(count=count, prefix=PREFIX, subnet=SUBNET, bridge=BRIDGE, private_home=True,
                         log_level="VERBOSE")

    def log_of(self, host: SshdHost) -> Path:
        return self.workdir / host.name / "sshd.log"

    def sshd_pid(self, host: SshdHost) -> int:
        """The listening sshd (``ip netns exec``, ``unshare`` and ``sh -c 'exec ...'`` all exec into it)."""
        return self._daemons[host.index].pid


class SshdCpu:
    """sshd-side CPU of one tool run, per host: what the host spent serving it.

    A listening sshd forks a process per connection, which forks the sessions' shells and their commands
    (and sftp-server); each waits for its children, so once a run's processes are gone their user + system
    time is in the listener's ``cutime + cstime`` (/proc/PID/stat, proc(5)). Read before and after the run,
    once the listener has no child left (polled, with a deadline).
    """

    def __init__(self, pids: list[int]):
        self.pids = pids
        self._before = [0.0] * len(pids)
        self._tick = os.sysconf("SC_CLK_TCK")

    def mark(self) -> None:
        self._before = [self._seconds(pid) for pid in self.pids]

    def since_mark(self, deadline: float = 10.0) -> list[float]:
        end = time.monotonic() + deadline
        while any(_has_children(pid) for pid in self.pids) and time.monotonic() < end:
            time.sleep(0.01)
        return [self._seconds(pid) - before for pid, before in zip(self.pids, self._before, strict=True)]

    def _seconds(self, pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        # after the command's name: state is field 3 of proc(5), utime..cstime are fields 14 to 17
        return sum(int(v) for v in fields[11:15]) / self._tick


def _has_children(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/task/{pid}/children").read_text().strip())
    except OSError:
        return False


@dataclass(frozen=True)
class SessionCount:
    """What one host's sshd saw during one tool run."""

    connections: int
    commands: int
    sftp: int


class SessionLog:
    """Reads what the sshd logs gained since ``mark()``; ``cpu``: the same hosts' sshd-side CPU."""

    def __init__(self, paths: list[Path], cpu: "SshdCpu | None" = None):
        self.paths = paths
        self.cpu = cpu
        self._offsets = [0] * len(paths)

    def mark(self) -> None:
        self._offsets = [p.stat().st_size for p in self.paths]

    def since_mark(self) -> list[SessionCount]:
        return [_count(path, offset) for path, offset in zip(self.paths, self._offsets, strict=True)]


def _count(path: Path, offset: int) -> SessionCount:
    with path.open("rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode(errors="replace").splitlines()
    sessions = [m.group(1) for m in map(_SESSION.match, lines) if m]
    return SessionCount(connections=sum(line.startswith("Accepted publickey") for line in lines),
                        commands=sum(kind == "command" for kind in sessions),
                        sftp=sum(kind == "subsystem 'sftp'" for kind in sessions))


def write_host_files(host_set: BenchHostSet, count: int, directory: Path) -> tuple[Path, Path]:
    """Describe the first ``count`` hosts in ``directory``; return (hosts.json, hosts.toml)."""
    directory.mkdir(parents=True, exist_ok=True)
    hosts = host_set.hosts[:count]
    described = {
        "known_hosts": str(host_set.known_hosts),
        "client_key": str(host_set.client_key),
        "templates": str(spec.TEMPLATE_DIR),
        "files": [list(pair) for pair in spec.FILES],
        "apply_command": spec.APPLY_COMMAND,
        "hosts": [{"name": h.name, "address": h.address, "port": h.port, "root": str(h.root),
                   "vars": spec.host_values(h.index + 1, h.address)} for h in hosts],
    }
    json_path = directory / "hosts.json"
    json_path.write_text(json.dumps(described, indent=1))
    toml_path = write_inventory(directory / "hosts.toml",
                                [InventoryHost(h.name, h.address, h.port, _roles(h), "debian") for h in hosts],
                                client_key=host_set.client_key, known_hosts=host_set.known_hosts)
    return json_path, toml_path


def _roles(host: SshdHost) -> tuple[str, ...]:
    """A kubeadm cluster in the inventory needs one control plane; W itself ignores roles."""
    return ("control-plane",) if host.index == 0 else ("worker",)
