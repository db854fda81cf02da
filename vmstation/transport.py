"""SSH transport: one checked connection per host per run.

A paramiko ``SSHClient`` carries the login (keys, the agent). Fabric's ``Connection``
used to wrap it; its defaults were wrong for us in four ways, replaced here, and once
they were, it added nothing but an import (paramiko is imported without Invoke:
``import_paramiko``):

- Fabric applies ~/.ssh/config itself, ProxyJump included, and builds the jump
  host's connection with AutoAddPolicy and outside the network guard. We read
  ssh_config ourselves (vmstation.ssh_routes) and check a ProxyJump hop like any host.

- Fabric installs paramiko's AutoAddPolicy (accept any host key). We load the
  inventory's known_hosts and reject unknown keys, unless the operator asked to
  trust new ones, in which case they are recorded in that file (vmstation.host_keys).
- paramiko leaves TCP_NODELAY off, so every round trip waits on delayed ACKs
  (about 40 ms). We open the socket ourselves with TCP_NODELAY set.
- Fabric's ``run`` drives each command through Invoke's threaded runner. We run a
  shell script over one exec channel with the script on stdin (vmstation.remote_script):
  nothing of it lands in argv, and a sudo password travels the same way, after sudo asked.

Dead peers end: TCP keepalive and TCP_USER_TIMEOUT on the socket, SSH keepalive on
the transport, and a deadline on every command. A host whose link vanishes mid-command
(no FIN, as in a power cut) fails within DEAD_PEER_SECONDS (about 25 s, see
``_open_socket``); a command that runs past its deadline fails with CommandTimeout.
"""

from __future__ import annotations

import errno
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

from vmstation.errors import CommandError, ConnectError, HostKeyError, InputError, SudoError
from vmstation.host_keys import check_host_keys
from vmstation.inventory import Host
from vmstation.remote_script import CommandResult, RemoteScript, describe, failure_summary, session_errors
from vmstation.ssh_routes import Route, parsed_ssh_config, route_to

log = logging.getLogger(__name__)

SUDO_PROMPT = "[vmstation] sudo password: "
SUDO_READY = "__vmstation_sudo_ready__"
CONNECT_TIMEOUT = 5.0
COMMAND_DEADLINE = 300.0     # seconds any one remote command may take unless its caller says otherwise
SSH_KEEPALIVE = 5            # seconds of silence before paramiko sends an SSH keepalive
# A peer that stops answering (its link gone, no FIN) is declared dead once data sent to it has gone
# unacknowledged this long (TCP_USER_TIMEOUT, also bounding keepalive probes): keepalives make sure there is
# such data within SSH_KEEPALIVE seconds, so a vanished host fails within about 25 s.
DEAD_PEER_SECONDS = 20


@dataclass(frozen=True)
class SshOptions:
    """How to reach hosts: shared by every connection of a run."""

    known_hosts: str
    trust_new_host_keys: bool = False
    deadline: float = 30.0           # seconds a host may take to connect, retries included
    ssh_config: str | None = None    # None = the user's ~/.ssh/config


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
        raise ConnectError(host.name, f"cannot connect to {host.address}:{host.ssh_port}: {describe(exc)}") from exc


class HostConnection:
    """A logged-in SSH session to one host: run scripts, reuse one SFTP session."""

    def __init__(self, host: Host, client, become_password=None, jump=None):
        self.host = host
        self._client = client              # a logged-in paramiko SSHClient
        self._become_password = become_password
        self._jump = jump                  # the ProxyJump hop's own client, closed with this connection
        self._sftp = None
        self.commands_sent = 0

    @classmethod
    def open(cls, host: Host, options: SshOptions, become_password, started: float) -> "HostConnection":
        paramiko = import_paramiko()

        route = route_to(host, options.ssh_config)
        remaining = max(1.0, options.deadline - (time.monotonic() - started))
        jump = _open_jump(host, route.jump, options, remaining) if route.jump else None
        try:
            sock = (_channel_through(jump, host, route) if jump else
                    _open_socket(host, min(CONNECT_TIMEOUT, remaining), route.address, route.host.ssh_port))
            connect_kwargs = {"sock": sock, "banner_timeout": remaining, "auth_timeout": remaining}
            if route.key_files:
                connect_kwargs["key_filename"] = list(route.key_files)
            client = paramiko.SSHClient()
            check_host_keys(client, route.host, options, route.address)
            _login(client, route, options, dict(connect_kwargs, hostname=route.address, port=route.host.ssh_port,
                                                username=route.host.ssh_user))
        except BaseException:
            if jump is not None:
                jump.close()
            raise
        client.get_transport().set_keepalive(SSH_KEEPALIVE)
        return cls(route.host, client, become_password, jump)

    # -- commands ---------------------------------------------------------------------------

    def run(self, script: str, *, sudo: bool | None = None, check: bool = True,
            on_line: Callable[[str], None] | None = None, timeout: float | None = None) -> CommandResult:
        """Run a POSIX shell ``script`` (sent on stdin) as root: directly, or through sudo.

        The script never appears in argv. With sudo and a password, the password is
        written only after sudo printed our prompt, so it can never reach the shell.
        ``timeout``: seconds the command may take (COMMAND_DEADLINE when None); past it, CommandTimeout.
        """
        with self.start(sudo=sudo, on_line=on_line) as remote:
            remote.send(script)
            result = remote.finish(COMMAND_DEADLINE if timeout is None else timeout)
        _log_command(self.host, self.commands_sent, script, result,
                     (not self.host.is_root) if sudo is None else sudo)
        if check and result.exit_code != 0:
            raise CommandError(self.host.name, failure_summary(result), result.exit_code,
                               result.stdout + result.stderr)
        return result

    @contextmanager
    def start(self, *, sudo: bool | None = None,
              on_line: Callable[[str], None] | None = None) -> Iterator["RemoteScript"]:
        """A root shell on one exec channel whose script is sent in parts (``RemoteScript``); closed after."""
        as_sudo = (not self.host.is_root) if sudo is None else sudo
        with session_errors(self.host):
            channel = self._client.get_transport().open_session()
            self.commands_sent += 1
            try:
                early_stderr = self._start_sudo(channel) if as_sudo else _exec(channel, "sh -s")
                yield RemoteScript(self.host, channel, early_stderr, on_line)
            finally:
                channel.close()

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
            self._sftp = self._client.open_sftp()
        return self._sftp

    def staging_base(self) -> str:
        """The directory that holds every staging directory (absolute), made private if it is new."""
        with session_errors(self.host):
            sftp = self.sftp()
            try:
                sftp.mkdir(".vmstation-staging", 0o700)
            except OSError:
                pass  # already there
            return sftp.normalize(".vmstation-staging")

    def new_staging_dir(self) -> str:
        """A private directory in the login user's home for uploads before they are placed (absolute path).

        It sits in the home rather than beside the targets because a sudo user cannot write to /etc over
        SFTP; the placing script copies each file beside its target before renaming it over the target.
        """
        base = self.staging_base()
        with session_errors(self.host):
            sftp = self.sftp()
            path = f"{base}/{self.host.name}-{uuid.uuid4().hex[:12]}"
            sftp.mkdir(path, 0o700)
            return sftp.normalize(path)

    def upload(self, content, remote_path: str) -> None:
        """``content``: bytes, or a LocalFile streamed in 1 MiB chunks (never read whole)."""
        with session_errors(self.host), self.sftp().open(remote_path, "wb") as handle:
            handle.set_pipelined(True)
            _write(handle, content)

    def place(self, content, path: str, mode: int) -> None:
        """Put ``content`` at ``path`` (root:root, ``mode``) atomically by SFTP alone: no process on the host.

        The temp file beside the target is created (exclusively) with the final mode in the open request
        itself, so it is never more open than the target will be; its mode is set again through the handle
        (the server's umask may have narrowed it) before any byte is written; then it is renamed over the
        target (posix-rename@openssh.com: atomic, replaces). A root login's files are born root:root, which
        is why only root:root files take this path. The caller holds the host's lock and made the directory.
        """
        from paramiko.sftp import CMD_HANDLE, CMD_OPEN, SFTP_FLAG_CREATE, SFTP_FLAG_EXCL, SFTP_FLAG_WRITE
        from paramiko.sftp_attr import SFTPAttributes
        from paramiko.sftp_file import SFTPFile

        directory, _, base = path.rpartition("/")
        temp = f"{directory}/.{base}.vmstation-{uuid.uuid4().hex[:6]}"
        attributes = SFTPAttributes()
        attributes.st_mode = mode
        with session_errors(self.host):
            sftp = self.sftp()
            kind, message = sftp._request(CMD_OPEN, temp, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL,
                                          attributes)
            if kind != CMD_HANDLE:
                raise OSError(f"SFTP open of {temp} answered {kind}")
            try:
                with SFTPFile(sftp, message.get_binary(), "wb", -1) as handle:
                    handle.chmod(mode)
                    handle.set_pipelined(True)
                    _write(handle, content)
                sftp.posix_rename(temp, path)
            except BaseException:
                try:
                    sftp.remove(temp)
                except (OSError, EOFError):   # the session is gone: the next placing of this file removes it
                    pass
                raise

    def abort(self) -> None:
        """Cut the connection now (an interrupt): every command in flight ends with a ConnectError."""
        transport = self._client.get_transport()
        if transport is not None:
            transport.close()

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self._client.close()
        if self._jump is not None:
            self._jump.close()


def _login(client, route: Route, options: SshOptions, connect_kwargs: dict) -> None:
    """Handshake and log in; each way it can fail becomes one line that says what to do."""
    import paramiko

    host = route.host
    sock = connect_kwargs["sock"]
    try:
        client.connect(**connect_kwargs)
    except paramiko.BadHostKeyException as exc:
        sock.close()
        raise HostKeyError(host.name, f"host key for {route.address} does not match {options.known_hosts} "
                           "(possible man-in-the-middle, or the host was reinstalled: "
                           "remove its old line if you are sure)") from exc
    except paramiko.SSHException as exc:
        sock.close()
        if isinstance(exc.__cause__ or exc.__context__, HostKeyError) or "not found in known_hosts" in str(exc):
            raise HostKeyError(host.name, str(exc)) from exc
        if isinstance(exc, paramiko.AuthenticationException):
            locked = [k for k in route.key_files if _is_encrypted_key(k)]
            if locked and not os.environ.get("SSH_AUTH_SOCK") or isinstance(exc, paramiko.PasswordRequiredException):
                key = (locked or list(route.key_files) or ["your key"])[0]
                raise ConnectError(host.name, f"authentication failed for {host.ssh_user}@{route.address}: the key "
                                   f"{key} is passphrase-protected and no SSH agent holds it; run `ssh-add {key}` "
                                   "(with SSH_AUTH_SOCK set in this shell), then run again") from exc
            raise ConnectError(host.name, f"authentication failed for {host.ssh_user}@{route.address} "
                               f"(keys tried: {', '.join(route.key_files) or 'the agent and ~/.ssh/id_*'})") from exc
        raise


def _open_jump(host: Host, hop: Route, options: SshOptions, remaining: float):
    """The ProxyJump hop as a client of its own: guard, known_hosts and login exactly as for a host."""
    import paramiko

    sock = _open_socket(host, min(CONNECT_TIMEOUT, remaining), hop.address, hop.host.ssh_port)
    client = paramiko.SSHClient()
    check_host_keys(client, hop.host, options, hop.address, via=host)
    try:
        client.connect(hop.address, port=hop.host.ssh_port, username=hop.host.ssh_user, sock=sock,
                       key_filename=list(hop.key_files) or None, timeout=remaining, banner_timeout=remaining,
                       auth_timeout=remaining)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(host.name, f"host key of ProxyJump {hop.address} does not match "
                           f"{options.known_hosts}") from exc
    except paramiko.SSHException as exc:
        client.close()
        if isinstance(exc.__cause__ or exc.__context__, HostKeyError):
            raise exc.__cause__ or exc.__context__ from exc
        raise ConnectError(host.name, f"ProxyJump {hop.host.ssh_user}@{hop.address}: {describe(exc)}",
                           transient=not isinstance(exc, paramiko.AuthenticationException)) from exc
    return client


def _channel_through(jump, host: Host, route: Route):
    """A direct-tcpip channel from the hop to the host: the guard checks the host's address all the same."""
    from vmstation.netguard import refusal

    refused = refusal(route.address)
    if refused:
        raise ConnectError(host.name, refused, transient=False)
    try:
        return jump.get_transport().open_channel("direct-tcpip", (route.address, route.host.ssh_port),
                                                 ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT)
    except Exception as exc:
        raise ConnectError(host.name, f"ProxyJump could not reach {route.address}:{route.host.ssh_port}: "
                           f"{describe(exc)}") from exc


def _is_encrypted_key(path: str) -> bool:
    """Whether a private key file needs a passphrase (PEM's ENCRYPTED header, or OpenSSH's bcrypt KDF)."""
    import base64

    try:
        text = open(path, encoding="ascii", errors="replace").read()
    except OSError:
        return False
    if "ENCRYPTED" in text:
        return True
    if "BEGIN OPENSSH PRIVATE KEY" in text:
        body = "".join(line for line in text.splitlines() if line and not line.startswith("-----"))
        try:
            return b"bcrypt" in base64.b64decode(body)[:64]
        except ValueError:
            return False
    return False


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


def _open_socket(host: Host, timeout: float, address: str | None = None, port: int | None = None) -> socket.socket:
    """A TCP connection to ``address`` (a HostName is resolved first, and every address it has is guarded).

    A refused port or a network with no route fails at once (waiting will not help); a timeout or a host
    that does not answer may be one still booting, and ``connect`` tries again until its deadline.
    """
    from vmstation.netguard import refusal

    address, port = address or host.address, port or host.ssh_port
    for resolved in _addresses_of(host, address, port):
        refused = refusal(resolved)
        if refused:
            raise ConnectError(host.name, refused, transient=False)
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except (ConnectionRefusedError, socket.gaierror) as exc:
        raise ConnectError(host.name, f"cannot reach {address}:{port}: {describe(exc)}"
                           + (" (nothing listens there: check the port)" if isinstance(exc, ConnectionRefusedError)
                              else ""), transient=False) from exc
    except OSError as exc:   # no route at all will not come; a host that does not answer ARP may be booting
        raise ConnectError(host.name, f"cannot reach {address}:{port}: {describe(exc)}",
                           transient=exc.errno != errno.ENETUNREACH) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _detect_dead_peers(sock)
    sock.settimeout(None)
    return sock


def _detect_dead_peers(sock: socket.socket) -> None:
    """Let the kernel give up on a peer that stopped answering, instead of retransmitting for 15 minutes.

    Keepalive probes cover an idle connection (we wait for output); TCP_USER_TIMEOUT covers data sent and
    never acknowledged (a script, an upload, paramiko's SSH keepalive). Linux options; skipped elsewhere.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", SSH_KEEPALIVE), ("TCP_KEEPINTVL", SSH_KEEPALIVE), ("TCP_KEEPCNT", 3),
                        ("TCP_USER_TIMEOUT", DEAD_PEER_SECONDS * 1000)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def warm_up(options: SshOptions) -> None:
    """Import and load what connecting needs once, before worker threads start (they would queue on locks)."""
    import encodings.idna  # noqa: F401  (socket.create_connection imports it on first use)

    import_paramiko()

    import tenacity  # noqa: F401

    parsed_ssh_config(options.ssh_config)


def _addresses_of(host: Host, address: str, port: int) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)})
    except socket.gaierror as exc:
        raise ConnectError(host.name, f"cannot resolve {address}: {describe(exc)}", transient=False) from exc


def import_paramiko():
    """paramiko, imported without Invoke.

    paramiko.config imports Invoke (when installed, as Fabric's dependency) only to run ssh_config's
    ``Match exec`` commands, and Invoke imports unittest.mock and asyncio: about 65 ms of every run's start
    on this machine for nothing, since vmstation refuses ``Match exec`` (``route_to``) as it refuses
    ProxyCommand. The ``fab`` entry point imports Invoke itself, before this, and keeps it.
    """
    import sys

    if "paramiko" not in sys.modules and "invoke" not in sys.modules:
        sys.modules["invoke"] = None          # makes `import invoke` fail inside paramiko.config only
        try:
            import paramiko  # noqa: F401
        finally:
            if sys.modules.get("invoke", 0) is None:
                del sys.modules["invoke"]
    import paramiko

    return paramiko


def _write(handle, content) -> None:
    """``content``: bytes, or a LocalFile streamed in 1 MiB chunks (never read whole)."""
    if isinstance(content, (bytes, bytearray)):
        handle.write(content)
        return
    with content.open() as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            handle.write(chunk)


def _log_command(host: Host, number: int, script: str, result: CommandResult, as_sudo: bool) -> None:
    """-v: one line per command sent; -vv: how it answered (sizes and stderr's tail: stdout can carry a
    join token, so it is never logged)."""
    if not log.isEnabledFor(logging.INFO):
        return
    first = next((line.strip() for line in script.splitlines() if line.strip() and not line.startswith("#")), "")
    log.info("%s: command %d%s: %d lines, first: %.100s -> exit %d", host.name, number, " (sudo)" if as_sudo else "",
             script.count("\n") + 1, first, result.exit_code)
    log.debug("%s: command %d answered %d bytes on stdout; stderr: %.300s", host.name, number, len(result.stdout),
              result.stderr.strip()[-300:] or "(empty)")


def _is_transient(exc: BaseException) -> bool:
    """Worth another attempt: the host may still be booting. Wrong keys and passwords are not."""
    import paramiko

    if isinstance(exc, (HostKeyError, SudoError, paramiko.AuthenticationException, paramiko.BadHostKeyException)):
        return False
    if isinstance(exc, ConnectError):
        return exc.transient and "authentication failed" not in exc.message
    return isinstance(exc, (OSError, EOFError, paramiko.SSHException))

