"""Inventory values that become code, paths or configuration elsewhere, parsed into their parts.

A value of hosts.toml ends up in an apt.conf.d file, a systemd unit, a path on the
operator's machine or a Kubernetes label. Checking it against a loose pattern lets a
string through that is harmless here and a directive there (an apt_proxy with a quote
and ``APT::Update::Pre-Invoke``, a cluster named ``../../tmp/x``). So each value is
parsed by the grammar of the place it goes to, and templates render from the parts.

Every parser raises ValueError with a message that fits after "hosts.toml: key 'X': ";
``vmstation.inventory`` turns it into one line naming the file, host and key.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vmstation.errors import InputError

_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_HOST_NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


# --- apt_proxy: http(s)://host[:port][/] --------------------------------------------------------


@dataclass(frozen=True)
class ProxyUrl:
    """An HTTP proxy as apt needs it: scheme, host (an address or a DNS name), optional port."""

    scheme: str
    host: str
    port: int | None

    @property
    def url(self) -> str:
        """Rebuilt from the parts only: nothing of the original string but what the grammar allowed."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{host}{port}"


def parse_proxy(value: str) -> ProxyUrl:
    """``http(s)://host[:port][/]`` and nothing else: no user, path, query or fragment, no quotes."""
    shape = "is not a proxy URL of the form http(s)://host[:port]/"
    match = re.fullmatch(r"(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?/?", value)
    if not match:
        if "@" in value.partition("://")[2].partition("/")[0]:
            raise ValueError("must not carry credentials (user:password@); value not shown")
        raise ValueError(f"{value!r} {shape}")
    scheme, host, port = match[1], match[2], match[3]
    return ProxyUrl(scheme, _proxy_host(value, host), _port_number(value, port) if port else None)


def proxy_url(value: str) -> str:
    """The inventory's rule for apt_proxy: parsed, then stored as the URL rebuilt from its parts."""
    return parse_proxy(value).url


def _proxy_host(value: str, host: str) -> str:
    if host.startswith("["):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(f"{value!r}: {host} is not an IPv6 address") from None
    if re.fullmatch(r"[\d.]+", host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise ValueError(f"{value!r}: {host} is not an IPv4 address") from None
    if not _HOST_NAME.fullmatch(host.lower()):
        raise ValueError(f"{value!r}: {host!r} is not a DNS name")
    return host.lower()


def _port_number(value: str, port: str) -> int:
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"{value!r}: port {number} is out of range 1-65535")
    return number


# --- names that become paths and label values ---------------------------------------------------


def cluster_name(value: str) -> str:
    """A DNS label (RFC 1123): it becomes a directory name on the operator's machine and a label value."""
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(f"cluster name {value!r} must be a lower-case DNS label (a-z, 0-9, '-', at most 63, "
                         "no dots or slashes): it becomes a directory name and a Kubernetes label")
    return value


def interface_name(value: str) -> str:
    """A Linux network interface name: the kernel's rules (dev_valid_name) narrowed to what is safe to render.

    The kernel takes 1 to 15 bytes, not "." or "..", without '/', ':' or white space. Names are also
    written into systemd, NetworkManager and YAML files here, so only letters, digits, '_', '.', '-'.
    """
    if not 1 <= len(value.encode()) <= 15:
        raise ValueError(f"{value!r} is not a network interface name (1 to 15 characters, Linux's IFNAMSIZ)")
    if value in (".", ".."):
        raise ValueError(f"{value!r} is not a network interface name (Linux refuses '.' and '..')")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise ValueError(f"{value!r} is not a network interface name (letters, digits, '_', '.', '-')")
    return value


# --- paths on a host ---------------------------------------------------------------------------

_PATH_CHARACTERS = re.compile(r"[A-Za-z0-9_.+@,:= /-]+")


def host_path(value: str) -> str:
    """An absolute, normalised path on a host (media_path): it becomes a Kubernetes hostPath and a shell word.

    Kubernetes refuses '..' in a hostPath; quotes, '$', '`', '\\' and line breaks of any kind (U+0085 and
    U+2028 included) have no place in a directory name that is rendered into YAML and scripts.
    """
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path")
    if not _PATH_CHARACTERS.fullmatch(value) or len(value) > 1024:
        raise ValueError(f"{value!r} is not a path of letters, digits, spaces and _ . + @ , : = / - "
                         "(no quotes, shell characters or line breaks)")
    if value != value.strip() or any(part in (".", "..") for part in value.split("/")) or "//" in value:
        raise ValueError(f"{value!r} is not a normalised absolute path (no '.', '..' or '//')")
    return value


def socket_url(value: str) -> str:
    """``unix:///absolute/path`` (cri_socket): the socket path by the same rule as host_path."""
    if not value.startswith("unix:///"):
        raise ValueError(f"{value!r} is not a socket URL like 'unix:///var/run/containerd/containerd.sock'")
    try:
        host_path(value.removeprefix("unix://"))
    except ValueError as exc:
        raise ValueError(f"{value!r}: the socket path {exc}") from None
    return value


# --- check_interval: a systemd calendar expression ----------------------------------------------

_CALENDAR_CHARACTERS = re.compile(r"[A-Za-z0-9*,./:~_+ -]{1,100}")
_SHORTHANDS = ("minutely", "hourly", "daily", "monthly", "weekly", "yearly", "annually", "quarterly",
               "semiannually")
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*"
_DAYS = rf"{_DAY}(?:\.\.{_DAY})?(?:,{_DAY}(?:\.\.{_DAY})?)*"
_PART = r"(?:\*|\d{1,4}(?:\.\.\d{1,4})?)(?:/\d{1,4})?"
_PARTS = rf"{_PART}(?:,{_PART})*"
_CALENDAR_SUBSET = re.compile(
    rf"(?:{_DAYS} )?(?:{_PARTS}-{_PARTS}(?:-{_PARTS})? )?{_PARTS}:{_PARTS}(?::{_PARTS})?", re.IGNORECASE)


def calendar(value: str) -> str:
    """A systemd ``OnCalendar=`` expression, checked by ``systemd-analyze calendar`` where it is installed.

    Without systemd-analyze, a strict subset is accepted: the shorthands (hourly, daily, ...) and
    ``[WEEKDAYS] [Y-M-D] H:M[:S]`` with numbers, '*', ',', '..' and '/'. Either way the value first
    has to be made of the characters of that grammar, so a '%' specifier or a quote never reaches a unit.
    """
    if not _CALENDAR_CHARACTERS.fullmatch(value) or value != value.strip():
        raise ValueError(f"{value!r} is not a systemd calendar expression (like 'hourly' or '*-*-* 02:00')")
    verdict = _systemd_calendar_verdict(value)
    if verdict is None:
        if value.lower() in _SHORTHANDS or _CALENDAR_SUBSET.fullmatch(value):
            return value
        raise ValueError(f"{value!r} is not a calendar expression vmstation can check without systemd-analyze "
                         "(use 'hourly', 'daily' or '[Mon..Fri] *-*-* HH:MM')")
    if not verdict:
        raise ValueError(f"{value!r} is not a systemd calendar expression (systemd-analyze calendar refused it)")
    return value


@functools.lru_cache(maxsize=32)
def _systemd_calendar_verdict(value: str) -> bool | None:
    """True/False from ``systemd-analyze calendar``; None when it is not installed or does not answer."""
    program = shutil.which("systemd-analyze")
    if program is None:
        return None
    try:
        result = subprocess.run([program, "calendar", "--", value], capture_output=True, timeout=5,
                                env={"PATH": os.defpath, "LC_ALL": "C", "TZ": "UTC"}, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.returncode == 0


# --- paths on the operator's machine ------------------------------------------------------------


def inside(base: str | os.PathLike, *parts: str) -> Path:
    """``base/parts...``, refused (InputError) unless it stays inside ``base`` once resolved.

    Names from the inventory and paths of operations become local paths (fetched kubeconfigs,
    rendered files); none of them may climb out of the directory meant for them.
    """
    root = Path(base).resolve()
    candidate = Path(base).joinpath(*parts)
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise InputError(f"{candidate}: would be written outside {root}; refusing")
    return candidate


def output_directory(path: str | os.PathLike) -> Path:
    """A directory to write into: it may not exist yet, but it must not be a file or anything else."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory}: exists and is not a directory")
    for parent in directory.parents:
        if parent.exists() and not parent.is_dir():
            raise InputError(f"{directory}: {parent} is not a directory")
    return directory


# --- files read at entry points -----------------------------------------------------------------

INPUT_LIMIT = 16 * 1024 * 1024      # no inventory, vault or password file is anywhere near this


def read_input_file(path: str | os.PathLike, what: str = "file", limit: int = INPUT_LIMIT) -> bytes:
    """The bytes of a regular file; InputError (one line) for a FIFO, device, directory or a huge file.

    Opened non-blocking, so a FIFO named as an inventory cannot hang the run before it is refused.
    """
    import stat

    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise InputError(f"{path}: not a regular file (a FIFO, device or directory cannot be the {what})")
    if status.st_size > limit:
        os.close(descriptor)
        raise InputError(f"{path}: {what} is larger than {limit // (1024 * 1024)} MiB")
    with os.fdopen(descriptor, "rb") as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > limit:
        raise InputError(f"{path}: {what} is larger than {limit // (1024 * 1024)} MiB")
    return data
