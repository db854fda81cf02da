"""The one exception tree of vmstation.

    VmstationError                 anything vmstation raises on purpose
    ├── InputError                 bad input from the operator: exit code 2, nothing changed on any host
    │   ├── InventoryError         hosts.toml (or an imported hosts.yml) breaks a rule
    │   ├── SecretError            a vault that cannot be opened, a reference that does not resolve
    │   └── TemplateError          a template that does not render (undefined variable, syntax)
    ├── GraphError                 phases that cannot be ordered (cycle, unknown need, unknown target)
    └── HostError                  something went wrong on one host; other hosts carry on
        ├── ConnectError           cannot reach or log in to the host (after retries)
        ├── HostKeyError           the host's key is unknown or does not match known_hosts
        ├── SudoError              sudo refused the password or is not allowed
        ├── CommandError           a remote command exited non-zero
        │   └── CommandTimeout     a remote command ran past its deadline
        └── Unsupported            the host cannot do this step here (no binaries, a box's kernel limits)

Lower-level errors (paramiko, socket, OSError) are translated at the module that
meets them, with ``raise ... from``. No message ever contains a secret: secrets
are wrapped in ``vmstation.secrets.Secret`` whose str/repr is masked.
"""

from __future__ import annotations


class VmstationError(Exception):
    """Base of every error vmstation raises on purpose."""


class InputError(VmstationError):
    """Bad input: the CLI prints the one-line message and exits with code 2."""

    exit_code = 2


class InventoryError(InputError):
    """One broken rule of the inventory, naming the file, the host and the key.

    str() is one line: ``hosts.toml: host 'storagenodet3500': key 'mac': ...``.
    """

    def __init__(self, path: str, message: str, host: str | None = None, key: str | None = None):
        self.path, self.host, self.key, self.message = str(path), host, key, message
        self.problems: list[InventoryError] = [self]     # every broken rule found with this one (first is self)
        super().__init__(self._one_line())

    def _one_line(self) -> str:
        where = [self.path]
        if self.host is not None:
            where.append(f"host {self.host!r}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        return ": ".join(where) + ": " + self.message


class SecretError(InputError):
    """A vault or secret reference that cannot be used (never carries the secret)."""


class TemplateError(InputError):
    """A template that does not render with the values given."""


class GraphError(VmstationError):
    """Phases that cannot be put in order, or a target/phase name that does not exist."""

    exit_code = 2


class HostError(VmstationError):
    """A failure on one host. Carries the host name so results can be reported per host."""

    def __init__(self, host: str, message: str):
        self.host, self.message = host, message
        super().__init__(f"{host}: {message}")


class ConnectError(HostError):
    """The host cannot be reached or logged in to. ``transient``: worth another attempt (a timeout, a reset)."""

    def __init__(self, host: str, message: str, transient: bool = True):
        self.transient = transient
        super().__init__(host, message)


class HostKeyError(ConnectError):
    """The host's SSH key is unknown or differs from known_hosts."""


class SudoError(HostError):
    """sudo refused: wrong password, or the user may not sudo."""


class CommandError(HostError):
    """A remote command failed."""

    def __init__(self, host: str, message: str, exit_code: int | None = None, output: str = ""):
        self.exit_code, self.output = exit_code, output
        super().__init__(host, message)


class CommandTimeout(CommandError):
    """A remote command did not end within its deadline (the channel is closed; the host may be gone)."""

    def __init__(self, host: str, message: str, seconds: float):
        self.seconds = seconds
        super().__init__(host, message)


class Interrupted(HostError):
    """The operator interrupted the run (SIGINT, SIGTERM): nothing new starts on this host."""


class Unsupported(HostError):
    """The host cannot do this step on this machine; the run says so and stops that host's later phases."""
