"""A shell on one exec channel: its script sent on stdin, its output read until it exits or its deadline.

Output is decoded incrementally (UTF-8, undecodable bytes replaced), so no content can raise; a connection
cut mid-command fails this host alone (``session_errors``); a command past its deadline is CommandTimeout.
"""

from __future__ import annotations

import codecs
import select
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from vmstation.errors import CommandError, CommandTimeout, ConnectError
from vmstation.inventory import Host


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


@contextmanager
def session_errors(host: Host) -> Iterator[None]:
    """A connection cut mid-command or mid-upload fails this host alone (a HostError), not the whole run."""
    import paramiko

    try:
        yield
    except (EOFError, OSError, paramiko.SSHException) as exc:
        reason = "the host closed the connection" if isinstance(exc, EOFError) else describe(exc)
        raise ConnectError(host.name, f"SSH session failed: {reason}") from exc


class RemoteScript:
    """A shell on one exec channel: send its script in parts, wait for a line, then collect the result.

    Parts let a script take a lock on the host and say so before the uploads it guards start.
    Output is decoded incrementally (UTF-8, undecodable bytes replaced), so no content can raise.
    """

    def __init__(self, host: Host, channel, early_stderr: str, on_line=None):
        self.host, self.channel, self.on_line = host, channel, on_line
        self._out = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._err = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stdout, self.stderr, self._pending = "", early_stderr, ""

    def send(self, text: str) -> None:
        with session_errors(self.host):
            self.channel.sendall(text.encode())

    def wait_for(self, line: str, timeout: float) -> None:
        """Read until ``line`` is a whole line of stdout; CommandError if the script ended first."""
        deadline = time.monotonic() + timeout
        with session_errors(self.host):
            while f"\n{line}\n" not in "\n" + self.stdout:
                if not self._read(deadline, timeout):
                    result = CommandResult(self.channel.recv_exit_status(), self.stdout, self.stderr)
                    raise CommandError(self.host.name, failure_summary(result), result.exit_code,
                                       result.stdout + result.stderr)

    def finish(self, timeout: float) -> CommandResult:
        """Close stdin, read everything until the script exits (within ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with session_errors(self.host):
            self.channel.shutdown_write()
            while self._read(deadline, timeout):
                pass
            code = self.channel.recv_exit_status()
        self.stdout += self._out.decode(b"", final=True)
        self.stderr += self._err.decode(b"", final=True)
        return CommandResult(code, self.stdout, self.stderr)

    def _read(self, deadline: float, timeout: float) -> bool:
        """Take what has arrived; False once the command has exited and everything was read."""
        channel = self.channel
        if time.monotonic() > deadline:
            raise CommandTimeout(self.host.name, f"no end within its deadline of {timeout:.0f}s "
                                 f"(last output: {_tail_of(self.stderr or self.stdout)})", timeout)
        got = False
        if channel.recv_ready():
            chunk = self._out.decode(channel.recv(65536))
            self.stdout += chunk
            got = True
            if self.on_line:
                self._pending += chunk
                *lines, self._pending = self._pending.split("\n")
                for line in lines:
                    self.on_line(line)
        if channel.recv_stderr_ready():
            self.stderr += self._err.decode(channel.recv_stderr(65536))
            got = True
        if got:
            return True
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            if channel.exit_status == -1 and not _active(channel):
                raise EOFError("the connection was lost before the command ended")
            return False
        if not _active(channel):
            raise EOFError("the connection was lost while the command ran")
        select.select([channel], [], [], 0.2)
        return True


def _active(channel) -> bool:
    transport = channel.get_transport()
    return transport is not None and transport.is_active()


def _tail_of(text: str) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-2:]
    return " | ".join(kept)[-300:] or "none"


def failure_summary(result: CommandResult) -> str:
    tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
    return f"exit code {result.exit_code}: " + " | ".join(tail)


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
