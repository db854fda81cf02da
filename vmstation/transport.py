"""SSH transport: one checked connection per host per run.

A Fabric ``Connection`` carries the login (it reads ``~/.ssh/config`` and uses the
agent), but three of its defaults are wrong for us and are replaced here:

- Fabric installs paramiko's AutoAddPolicy (accept any host key). We load the
  inventory's known_hosts and reject unknown keys, unless the operator asked to
  trust new ones, in which case they are recorded in that file.
- paramiko leaves TCP_NODELAY off, so every round trip waits on delayed ACKs
  (about 40 ms). We open the socket ourselves with TCP_NODELAY set.
- Fabric's ``run`` drives each command through Invoke's threaded runner. We run a
  shell script over one exec channel with the script on stdin: nothing of it
  lands in argv, and a sudo password travels the same way, after sudo asked.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import shlex
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from vmstation.errors import CommandError, ConnectError, GuardRefusal, HostKeyError, InputError, SudoError
from vmstation.inventory import Host

log = logging.getLogger(__name__)

SUDO_PROMPT = "[vmstation] sudo password: "
SUDO_READY = "__vmstation_sudo_ready__"
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SshOptions:
    """How to reach hosts: shared by every connection of a run."""

    known_hosts: str
    trust_new_host_keys: bool = False
    deadline: float = 30.0           # seconds a host may take to connect, retries included
    ssh_config: str | None = None    # None = the user's ~/.ssh/config (Fabric's default)


def connect(host: Host, options: SshOptions, become_password=None) -> "HostConnection":
    """Open a checked connection to ``host``, retrying transient failures until its deadline."""
    import tenacity

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_transient),
        wait=tenacity.wait_random_exponential(multiplier=0.3, max=3.0),
        stop=tenacity.stop_after_delay(options.deadline),
        before_sleep=lambda state: log.warning(
            "%s: connect attempt %d failed (%s); retrying", host.name, state.attempt_number,
            state.outcome.exception()),
        reraise=True,
    )
    started = time.monotonic()
    try:
        return retrying(HostConnection.open, host, options, become_password, started)
    except (ConnectError, InputError):   # a malformed known_hosts is bad input, not an unreachable host
        raise
    except Exception as exc:  # tenacity re-raised a low-level error after the deadline
        raise ConnectError(host.name, f"cannot connect to {host.address}:{host.ssh_port}: {_describe(exc)}") from exc


class HostConnection:
    """A logged-in SSH session to one host: run scripts, reuse one SFTP session."""

    def __init__(self, host: Host, fabric_connection, become_password=None):
        self.host = host
        self._fabric = fabric_connection
        self._become_password = become_password
        self._sftp = None
        self.commands_sent = 0

    @classmethod
    def open(cls, host: Host, options: SshOptions, become_password, started: float) -> "HostConnection":
        import fabric
        import paramiko

        remaining = max(1.0, options.deadline - (time.monotonic() - started))
        sock = _open_socket(host, min(CONNECT_TIMEOUT, remaining))
        connect_kwargs = {"sock": sock, "banner_timeout": remaining, "auth_timeout": remaining}
        if host.ssh_key:
            connect_kwargs["key_filename"] = os.path.expanduser(host.ssh_key)
        conn = fabric.Connection(host.address, user=host.ssh_user, port=host.ssh_port,
                                 config=_fabric_config(options.ssh_config), connect_kwargs=connect_kwargs)
        _check_host_keys(conn.client, host, options)
        try:
            conn.open()
        except paramiko.BadHostKeyException as exc:
            sock.close()
            raise HostKeyError(host.name, f"host key for {host.address} does not match {options.known_hosts} "
                               "(possible man-in-the-middle, or the host was reinstalled: "
                               "remove its old line if you are sure)") from exc
        except paramiko.SSHException as exc:
            sock.close()
            if isinstance(exc.__cause__ or exc.__context__, HostKeyError) or "not found in known_hosts" in str(exc):
                raise HostKeyError(host.name, str(exc)) from exc
            if isinstance(exc, paramiko.AuthenticationException):
                raise ConnectError(host.name, f"authentication failed for {host.ssh_user}@{host.address}") from exc
            raise
        return cls(host, conn, become_password)

    # -- commands ---------------------------------------------------------------------------

    def run(self, script: str, *, sudo: bool | None = None, check: bool = True,
            on_line: Callable[[str], None] | None = None, timeout: float | None = None) -> CommandResult:
        """Run a POSIX shell ``script`` (sent on stdin) as root: directly, or through sudo.

        The script never appears in argv. With sudo and a password, the password is
        written only after sudo printed our prompt, so it can never reach the shell.
        """
        as_sudo = (not self.host.is_root) if sudo is None else sudo
        with _session_errors(self.host):
            channel = self._fabric.client.get_transport().open_session()
            self.commands_sent += 1
            try:
                early_stderr = self._start_sudo(channel) if as_sudo else _exec(channel, "sh -s")
                channel.sendall(script.encode())
                channel.shutdown_write()
                stdout, stderr, code = _collect(channel, on_line, timeout)
                stderr = early_stderr + stderr
            finally:
                channel.close()
        result = CommandResult(code, stdout, stderr)
        if check and code != 0:
            raise CommandError(self.host.name, _failure_summary(result), code, stdout + stderr)
        return result

    def _start_sudo(self, channel) -> str:
        """Start a root shell through sudo; answer its prompt once. Returns stderr seen after it started."""
        inner = f"printf '%s\\n' {SUDO_READY} >&2; exec sh -s"
        channel.exec_command(f"sudo -S -p {shlex.quote(SUDO_PROMPT)} -- sh -c {shlex.quote(inner)}")
        seen_prompt = False
        buffer = ""
        deadline = time.monotonic() + 30
        while SUDO_READY not in buffer:
            if time.monotonic() > deadline or channel.exit_status_ready() and not channel.recv_stderr_ready():
                raise SudoError(self.host.name, f"sudo did not start a shell: {buffer.strip()[-200:]!r}")
            select.select([channel], [], [], 0.5)
            if channel.recv_stderr_ready():
                buffer += channel.recv_stderr(4096).decode(errors="replace")
            if SUDO_PROMPT in buffer:
                if seen_prompt or self._become_password is None:
                    why = "refused the password" if seen_prompt else "asked for a password and none is configured"
                    raise SudoError(self.host.name, f"sudo {why} for user {self.host.ssh_user} "
                                    f"(become_password = {self.host.become_password or 'unset'})")
                seen_prompt = True
                buffer = buffer.replace(SUDO_PROMPT, "")
                channel.sendall((self._become_password.reveal() + "\n").encode())
        return buffer.split(SUDO_READY + "\n", 1)[-1]

    # -- files ------------------------------------------------------------------------------

    def sftp(self):
        """The one SFTP session of this connection (opened on first use)."""
        if self._sftp is None:
            self._sftp = self._fabric.client.open_sftp()
        return self._sftp

    def new_staging_dir(self) -> str:
        """A private directory in the login user's home for uploads before they are placed (absolute path).

        It sits in the home rather than beside the targets because a sudo user cannot write to /etc over
        SFTP; the placing script copies each file beside its target before renaming it over the target.
        """
        with _session_errors(self.host):
            sftp = self.sftp()
            try:
                sftp.mkdir(".vmstation-staging", 0o700)
            except OSError:
                pass  # already there
            path = f".vmstation-staging/{self.host.name}-{uuid.uuid4().hex[:12]}"
            sftp.mkdir(path, 0o700)
            return sftp.normalize(path)

    def upload(self, content: bytes, remote_path: str) -> None:
        with _session_errors(self.host), self.sftp().open(remote_path, "wb") as handle:
            handle.set_pipelined(True)
            handle.write(content)

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self._fabric.close()


# ---------------------------------------------------------------------------------------------


@contextmanager
def _session_errors(host: Host) -> Iterator[None]:
    """A connection cut mid-command or mid-upload fails this host alone (a HostError), not the whole run."""
    import paramiko

    try:
        yield
    except (EOFError, OSError, paramiko.SSHException) as exc:
        reason = "the host closed the connection" if isinstance(exc, EOFError) else _describe(exc)
        raise ConnectError(host.name, f"SSH session failed: {reason}") from exc


def ssh_answers(address: str, port: int = 22, connect_timeout: float = 1.0, read_timeout: float = 2.0) -> bool:
    """Whether an SSH server sends its banner at ``address:port``: a host is up when this is true."""
    from vmstation.netguard import refusal

    refused = refusal(address)
    if refused:
        raise ConnectError(address, refused)
    try:
        with socket.create_connection((address, port), timeout=connect_timeout) as conn:
            conn.settimeout(read_timeout)
            return conn.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _exec(channel, command: str) -> str:
    channel.exec_command(command)
    return ""


def _open_socket(host: Host, timeout: float) -> socket.socket:
    from vmstation.netguard import refusal

    refused = refusal(host.address)
    if refused:
        raise GuardRefusal(host.name, refused)
    try:
        sock = socket.create_connection((host.address, host.ssh_port), timeout=timeout)
    except OSError as exc:
        raise ConnectError(host.name, f"cannot reach {host.address}:{host.ssh_port}: {_describe(exc)}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock


def warm_up(options: SshOptions) -> None:
    """Import and load what connecting needs once, before worker threads start (they would queue on locks)."""
    import encodings.idna  # noqa: F401  (socket.create_connection imports it on first use)

    import tenacity  # noqa: F401

    _parsed_ssh_config(options.ssh_config)


def _fabric_config(ssh_config: str | None):
    """A Config of its own for each connection (Invoke's Config is not safe to share between threads),
    over ssh_config files parsed once per run."""
    import fabric

    return fabric.Config(ssh_config=_parsed_ssh_config(ssh_config))


@functools.lru_cache(maxsize=8)
def _parsed_ssh_config(path: str | None):
    """The user's (or the given) ssh_config files, parsed once: a read-only paramiko SSHConfig."""
    import fabric

    return (fabric.Config(runtime_ssh_path=path) if path else fabric.Config()).base_ssh_config


def _check_host_keys(client, host: Host, options: SshOptions) -> None:
    """Replace Fabric's AutoAddPolicy: known keys only, new ones only when asked, and recorded.

    known_hosts is parsed once per run; each client gets only the entries for its own host.
    """
    known_hosts = os.path.expanduser(options.known_hosts)
    name = host.address if host.ssh_port == 22 else f"[{host.address}]:{host.ssh_port}"
    for key_type, key in (_parsed_known_hosts(known_hosts).lookup(name) or {}).items():
        client.get_host_keys().add(name, key_type, key)
    client.set_missing_host_key_policy(_TrustNewPolicy(known_hosts) if options.trust_new_host_keys
                                       else _RejectPolicy(host, known_hosts))


def _parsed_known_hosts(path: str):
    import paramiko

    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return paramiko.HostKeys()
    return _parse_known_hosts(path, stamp)


@functools.lru_cache(maxsize=4)
def _parse_known_hosts(path: str, stamp: int):
    """Keyed by modification time too: a key recorded by --trust-new-host-keys is seen by later connections."""
    from vmstation import known_hosts

    return known_hosts.load(path)


class _RejectPolicy:
    def __init__(self, host: Host, known_hosts: str):
        self.host, self.known_hosts = host, known_hosts

    def missing_host_key(self, client, hostname, key):
        raise HostKeyError(self.host.name, f"unknown host key for {hostname} ({key.get_name()} "
                           f"{key.fingerprint}) not in {self.known_hosts}; check it, then run again with "
                           "--trust-new-host-keys to record it")


class _TrustNewPolicy:
    """The operator said to trust keys seen for the first time: record them in known_hosts."""

    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        from vmstation import known_hosts

        known_hosts.append(self.known_hosts, hostname, key)     # newline-safe, atomic, under a lock
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("recorded new host key for %s (%s) in %s", hostname, key.fingerprint, self.known_hosts)


def _collect(channel, on_line, timeout) -> tuple[str, str, int]:
    out, err, pending = [], [], ""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("remote command timed out")
        got = False
        if channel.recv_ready():
            chunk = channel.recv(65536).decode(errors="replace")
            out.append(chunk)
            got = True
            if on_line:
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    on_line(line)
        if channel.recv_stderr_ready():
            err.append(channel.recv_stderr(65536).decode(errors="replace"))
            got = True
        if not got:
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            select.select([channel], [], [], 0.2)
    return "".join(out), "".join(err), channel.recv_exit_status()


def _failure_summary(result: CommandResult) -> str:
    tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
    return f"exit code {result.exit_code}: " + " | ".join(tail)


def _is_transient(exc: BaseException) -> bool:
    """Worth another attempt: the host may still be booting. Wrong keys and passwords are not."""
    import paramiko

    if isinstance(exc, (HostKeyError, GuardRefusal, SudoError, paramiko.AuthenticationException,
                        paramiko.BadHostKeyException)):
        return False
    if isinstance(exc, ConnectError):
        return "authentication failed" not in exc.message
    return isinstance(exc, (OSError, EOFError, paramiko.SSHException))


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
