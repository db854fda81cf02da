"""SSH transport: one checked connection per host per run.

A paramiko ``SSHClient`` carries the login (keys, the agent). Fabric's ``Connection``
used to wrap it; its defaults were wrong for us in four ways, replaced here, and once
they were, it added nothing but an import (paramiko is imported without Invoke:
``import_paramiko``):

- Fabric applies ~/.ssh/config itself, ProxyJump included, and builds the jump
  host's connection with AutoAddPolicy and outside the network guard. We read
  ssh_config ourselves (``route_to``): for each key the inventory leaves unset,
  HostName, User, Port, IdentityFile and ProxyJump come from it (inventory, then
  ssh_config, then defaults); a ProxyJump hop is checked like any host (known_hosts,
  the guard); a ProxyCommand is refused, since its traffic could be checked by neither.

- Fabric installs paramiko's AutoAddPolicy (accept any host key). We load the
  inventory's known_hosts and reject unknown keys, unless the operator asked to
  trust new ones, in which case they are recorded in that file.
- paramiko leaves TCP_NODELAY off, so every round trip waits on delayed ACKs
  (about 40 ms). We open the socket ourselves with TCP_NODELAY set.
- Fabric's ``run`` drives each command through Invoke's threaded runner. We run a
  shell script over one exec channel with the script on stdin: nothing of it
  lands in argv, and a sudo password travels the same way, after sudo asked.

Dead peers end: TCP keepalive and TCP_USER_TIMEOUT on the socket, SSH keepalive on
the transport, and a deadline on every command. A host whose link vanishes mid-command
(no FIN, as in a power cut) fails within DEAD_PEER_SECONDS (about 25 s, see
``_open_socket``); a command that runs past its deadline fails with CommandTimeout.
"""

from __future__ import annotations

import codecs
import dataclasses
import errno
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

from vmstation.errors import CommandError, CommandTimeout, ConnectError, HostKeyError, InputError, SudoError
from vmstation.inventory import Host

log = logging.getLogger(__name__)

SUDO_PROMPT = "[vmstation] sudo password: "
SUDO_READY = "__vmstation_sudo_ready__"
CONNECT_TIMEOUT = 5.0
UNKNOWN_KEY = "unknown host key for "      # the report gathers these into one line per host
DEFAULT_SSH_CONFIG = "~/.ssh/config"
COMMAND_DEADLINE = 300.0     # seconds any one remote command may take unless its caller says otherwise
SSH_KEEPALIVE = 5            # seconds of silence before paramiko sends an SSH keepalive
# A peer that stops answering (its link gone, no FIN) is declared dead once data sent to it has gone
# unacknowledged this long (TCP_USER_TIMEOUT, also bounding keepalive probes): keepalives make sure there is
# such data within SSH_KEEPALIVE seconds, so a vanished host fails within about 25 s.
DEAD_PEER_SECONDS = 20


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
    ssh_config: str | None = None    # None = the user's ~/.ssh/config


@dataclass(frozen=True)
class Route:
    """How to reach one host once ssh_config filled what the inventory left unset."""

    host: Host                        # ssh_user, ssh_port and ssh_key as they will be used
    address: str                      # where the TCP connection goes (HostName, else the inventory's address)
    key_files: tuple[str, ...] = ()   # IdentityFile(s); empty: the agent and the default keys
    jump: "Route | None" = None       # a ProxyJump hop, checked like any host


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


def route_to(host: Host, ssh_config: str | None = None) -> Route:
    """``host`` with what ssh_config says for it, where hosts.toml is silent (as ``ssh HOST`` would read it).

    The Host blocks are matched against the inventory's host name, then its address; the name's block wins.
    HostName is where SSH connects (the inventory's address stays the node's address in the cluster).
    """
    config = _parsed_ssh_config(ssh_config)
    if _has_match_exec(config):
        raise ConnectError(host.name, "ssh_config has a `Match exec`: vmstation does not run it (a command run "
                           "while reading the configuration escapes the network guard, as a ProxyCommand "
                           "would); use Host blocks", transient=False)
    by_address = config.lookup(host.address)
    by_name = config.lookup(host.name)
    merged = {**by_address, **{k: v for k, v in by_name.items() if k != "hostname"}}
    given = host.ssh_set
    changes = {}
    if "ssh_user" not in given and "user" in merged:
        changes["ssh_user"] = merged["user"]
    if "ssh_port" not in given and "port" in merged:
        changes["ssh_port"] = _config_port(host, merged["port"])
    key_files = (host.ssh_key,) if host.ssh_key else ()
    if "ssh_key" not in given and merged.get("identityfile"):
        key_files = tuple(merged["identityfile"])
    if merged.get("proxycommand", "none").lower() != "none":
        raise ConnectError(host.name, f"ssh_config gives a ProxyCommand for {host.name}: vmstation does not run "
                           "it (its traffic would escape host-key checking and the network guard); use ProxyJump",
                           transient=False)
    jump = None
    if merged.get("proxyjump", "none").lower() != "none":
        jump = _jump_route(host, merged["proxyjump"], ssh_config)
    hostname = by_name.get("hostname", host.name)
    address = hostname if hostname != host.name else host.address
    effective = dataclasses.replace(host, **changes) if changes else host
    return Route(effective, address, tuple(os.path.expanduser(k) for k in key_files), jump)


def _has_match_exec(config) -> bool:
    """Whether any ``Match`` block tests ``exec`` (paramiko runs those commands in every lookup)."""
    return any(match.get("type") == "exec" for block in getattr(config, "_config", [])
               for match in block.get("matches", []))


def _jump_route(host: Host, spec: str, ssh_config: str | None) -> Route:
    """One ProxyJump hop ``[user@]name[:port]``, itself completed from ssh_config."""
    if "," in spec:
        raise ConnectError(host.name, f"ProxyJump {spec!r} has several hops; vmstation follows one",
                           transient=False)
    user, _, rest = spec.rpartition("@")
    name, _, port = rest.partition(":")
    if not port.isdigit() and port:
        raise ConnectError(host.name, f"ProxyJump {spec!r} is not [user@]host[:port]", transient=False)
    config = _parsed_ssh_config(ssh_config).lookup(name)
    if config.get("proxyjump", "none").lower() != "none" or config.get("proxycommand", "none").lower() != "none":
        raise ConnectError(host.name, f"ProxyJump host {name} has a proxy of its own; vmstation follows one hop",
                           transient=False)
    given = {"ssh_user"} if user else set()
    given |= {"ssh_port"} if port else set()
    hop = Host(name=f"{host.name}-jump", address=config.get("hostname", name), cluster=host.cluster,
               roles=host.roles, ssh_user=user or config.get("user", "root"),
               ssh_port=int(port) if port else _config_port(host, config.get("port", "22")),
               ssh_set=frozenset(given))
    keys = tuple(os.path.expanduser(k) for k in config.get("identityfile", ()))
    return Route(hop, hop.address, keys)


def _config_port(host: Host, value: str) -> int:
    if not str(value).isdigit() or not 1 <= int(value) <= 65535:
        raise ConnectError(host.name, f"ssh_config gives Port {value!r}, which is not a port", transient=False)
    return int(value)


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
            _check_host_keys(client, route.host, options, route.address)
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
            raise CommandError(self.host.name, _failure_summary(result), result.exit_code,
                               result.stdout + result.stderr)
        return result

    @contextmanager
    def start(self, *, sudo: bool | None = None,
              on_line: Callable[[str], None] | None = None) -> Iterator["RemoteScript"]:
        """A root shell on one exec channel whose script is sent in parts (``RemoteScript``); closed after."""
        as_sudo = (not self.host.is_root) if sudo is None else sudo
        with _session_errors(self.host):
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
        with _session_errors(self.host):
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
        with _session_errors(self.host):
            sftp = self.sftp()
            path = f"{base}/{self.host.name}-{uuid.uuid4().hex[:12]}"
            sftp.mkdir(path, 0o700)
            return sftp.normalize(path)

    def upload(self, content, remote_path: str) -> None:
        """``content``: bytes, or a LocalFile streamed in 1 MiB chunks (never read whole)."""
        with _session_errors(self.host), self.sftp().open(remote_path, "wb") as handle:
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
        with _session_errors(self.host):
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
    _check_host_keys(client, hop.host, options, hop.address, via=host)
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
        raise ConnectError(host.name, f"ProxyJump {hop.host.ssh_user}@{hop.address}: {_describe(exc)}",
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
                           f"{_describe(exc)}") from exc


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
        raise ConnectError(host.name, f"cannot reach {address}:{port}: {_describe(exc)}"
                           + (" (nothing listens there: check the port)" if isinstance(exc, ConnectionRefusedError)
                              else ""), transient=False) from exc
    except OSError as exc:   # no route at all will not come; a host that does not answer ARP may be booting
        raise ConnectError(host.name, f"cannot reach {address}:{port}: {_describe(exc)}",
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

    _parsed_ssh_config(options.ssh_config)


def _addresses_of(host: Host, address: str, port: int) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)})
    except socket.gaierror as exc:
        raise ConnectError(host.name, f"cannot resolve {address}: {_describe(exc)}", transient=False) from exc


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


def _parsed_ssh_config(path: str | None):
    """The given ssh_config file, else ~/.ssh/config: a read-only paramiko SSHConfig, parsed once per version."""
    import paramiko

    chosen = os.path.expanduser(path or DEFAULT_SSH_CONFIG)
    try:
        stat = os.stat(chosen)
    except OSError:
        if path:
            from vmstation.errors import InputError

            raise InputError(f"--ssh-config {path}: file not found") from None
        return paramiko.SSHConfig()
    return _parse_ssh_config(chosen, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _parse_ssh_config(path: str, stamp: int, size: int):
    """Keyed by modification time and size too: an edited file is read again."""
    import paramiko

    try:
        return paramiko.SSHConfig.from_path(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        from vmstation.errors import InputError

        raise InputError(f"{path}: cannot read it as ssh_config: {_describe(exc)}") from None


def _check_host_keys(client, host: Host, options: SshOptions, address: str | None = None,
                     via: Host | None = None) -> None:
    """Replace Fabric's AutoAddPolicy: known keys only, new ones only when asked, and recorded.

    known_hosts is parsed once per run; each client gets only the entries for its own host. Every SSH
    client of the engine (a host's, a ProxyJump hop's) goes through here.
    """
    known_hosts = os.path.expanduser(options.known_hosts)
    address = address or host.address
    name = address if host.ssh_port == 22 else f"[{address}]:{host.ssh_port}"
    for key_type, key in (_parsed_known_hosts(known_hosts).lookup(name) or {}).items():
        client.get_host_keys().add(name, key_type, key)
    client.set_missing_host_key_policy(_TrustNewPolicy(known_hosts) if options.trust_new_host_keys
                                       else _RejectPolicy(via or host, known_hosts, address if via else None))


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
    def __init__(self, host: Host, known_hosts: str, jump: str | None = None):
        self.host, self.known_hosts, self.jump = host, known_hosts, jump

    def missing_host_key(self, client, hostname, key):
        hop = f" (its ProxyJump hop {self.jump})" if self.jump else ""
        raise HostKeyError(self.host.name, f"{UNKNOWN_KEY}{hostname}{hop} ({key.get_name()} {key.fingerprint}) not in "
                           f"{self.known_hosts}; compare it with the host's own, then record it with "
                           f"`vmstation hosts trust {self.host.name}` (or --trust-new-host-keys)")


class _TrustNewPolicy:
    """The operator said to trust keys seen for the first time: record them in known_hosts."""

    def __init__(self, known_hosts: str):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        from vmstation import known_hosts

        known_hosts.append(self.known_hosts, hostname, key)     # newline-safe, atomic, under a lock
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning("recorded new host key for %s (%s) in %s", hostname, key.fingerprint, self.known_hosts)


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
        with _session_errors(self.host):
            self.channel.sendall(text.encode())

    def wait_for(self, line: str, timeout: float) -> None:
        """Read until ``line`` is a whole line of stdout; CommandError if the script ended first."""
        deadline = time.monotonic() + timeout
        with _session_errors(self.host):
            while f"\n{line}\n" not in "\n" + self.stdout:
                if not self._read(deadline, timeout):
                    result = CommandResult(self.channel.recv_exit_status(), self.stdout, self.stderr)
                    raise CommandError(self.host.name, _failure_summary(result), result.exit_code,
                                       result.stdout + result.stderr)

    def finish(self, timeout: float) -> CommandResult:
        """Close stdin, read everything until the script exits (within ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with _session_errors(self.host):
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


def _write(handle, content) -> None:
    """``content``: bytes, or a LocalFile streamed in 1 MiB chunks (never read whole)."""
    if isinstance(content, (bytes, bytearray)):
        handle.write(content)
        return
    with content.open() as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            handle.write(chunk)


def _active(channel) -> bool:
    transport = channel.get_transport()
    return transport is not None and transport.is_active()


def _tail_of(text: str) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-2:]
    return " | ".join(kept)[-300:] or "none"


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


def _failure_summary(result: CommandResult) -> str:
    tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
    return f"exit code {result.exit_code}: " + " | ".join(tail)


def _is_transient(exc: BaseException) -> bool:
    """Worth another attempt: the host may still be booting. Wrong keys and passwords are not."""
    import paramiko

    if isinstance(exc, (HostKeyError, SudoError, paramiko.AuthenticationException, paramiko.BadHostKeyException)):
        return False
    if isinstance(exc, ConnectError):
        return exc.transient and "authentication failed" not in exc.message
    return isinstance(exc, (OSError, EOFError, paramiko.SSHException))


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
