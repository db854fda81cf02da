"""Operations: small declarative units that look at a fact and decide what to do.

Each operation knows (a) the shell snippet that asks the host for its fact
(``probe``), (b) how to tell from that fact whether the host already matches, and
(c) what to upload and run when it does not (``decide``, a pure function). The
runner asks the probes of a whole phase in ONE remote command, decides locally,
uploads what differs through one SFTP session and places it with ONE command.

A decision is a ``Step``: "change" (something will be done), "ok" (already so,
with the reason), "skip" (cannot be done here, with the reason: never reported as
done), "check" (runs every time but changes nothing: waits, captures) or "warn"
(a preflight warning the operator must see; nothing runs).
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import Callable

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


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class File(Operation):
    """A whole file with this content, mode and owner. Written atomically."""

    path: str
    content: str | bytes
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"
    secret: bool = False
    source: str = ""                  # the template it came from, for plans

    @property
    def label(self) -> str:
        return f"file {self.path}"

    @property
    def data(self) -> bytes:
        return self.content.encode() if isinstance(self.content, str) else self.content

    def probe(self, detail: bool) -> str:
        return _stat_probe(self.path, with_content=detail and not self.secret)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        current = parse_stat(fact)
        upload = Upload(self.path, self.data, self.mode, self.owner, self.group)
        if current is None:
            return Step(self.label, CHANGE, "absent", uploads=(upload,), secret=self.secret,
                        diff=_diff(self.path, None, self.data, self.secret))
        if current.sha256 != hashlib.sha256(self.data).hexdigest():
            return Step(self.label, CHANGE, "content differs", uploads=(upload,), secret=self.secret,
                        diff=_diff(self.path, current.content, self.data, self.secret))
        fixes = _attribute_fixes(self.path, current, self.mode, self.owner, self.group)
        if fixes:
            return Step(self.label, CHANGE, "mode or owner differs", commands=fixes)
        return Step(self.label, OK, "content, mode and owner match")


@dataclass(frozen=True)
class Edit(Operation):
    """Change part of a file that others also write (fstab): ``transform(old text) -> new text``."""

    path: str
    transform: Callable[[str], str]
    description: str

    @property
    def label(self) -> str:
        return f"edit {self.path} ({self.description})"

    def probe(self, detail: bool) -> str:
        return _stat_probe(self.path, with_content=True)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        current = parse_stat(fact)
        if current is None:
            return Step(self.label, OK, "file absent: nothing to edit")
        old = current.content or b""
        new = self.transform(old.decode()).encode()
        if new == old:
            return Step(self.label, OK, "already so")
        upload = Upload(self.path, new, current.mode, current.owner, current.group)
        return Step(self.label, CHANGE, self.description, uploads=(upload,), diff=_diff(self.path, old, new, False))


def line(path: str, text: str, pattern: str | None = None) -> Edit:
    """Make ``text`` a line of ``path``: replace the lines matching ``pattern``, else append it."""
    regex = re.compile(pattern or "^" + re.escape(text) + "$")

    def transform(old: str) -> str:
        lines = old.splitlines()
        if any(regex.search(existing) for existing in lines):
            lines = [text if regex.search(existing) else existing for existing in lines]
            return "\n".join(_dedupe_adjacent(lines, text)) + "\n"
        return old + ("" if old.endswith("\n") or not old else "\n") + text + "\n"

    return Edit(path, transform, f"line {text!r}")


@dataclass(frozen=True)
class Directory(Operation):
    path: str
    mode: str = "0755"
    owner: str = "root"
    group: str = "root"

    @property
    def label(self) -> str:
        return f"directory {self.path}"

    def probe(self, detail: bool) -> str:
        return sh("if [ -d {0} ]; then stat -c 'dir %a %U %G' -- {0}; else echo absent; fi", self.path)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        want = f"dir {int(self.mode, 8):o} {self.owner} {self.group}"
        if fact.strip() == want:
            return Step(self.label, OK, "exists with mode and owner")
        return Step(self.label, CHANGE, "absent" if fact.strip() == "absent" else "mode or owner differs",
                    commands=(sh("install -d -m {} -o {} -g {} -- {}", self.mode, self.owner, self.group,
                                 self.path),))


# ---------------------------------------------------------------------------------------------
# Packages and services
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package(Operation):
    """Packages installed (at a version when given), optionally held at it (apt-mark hold)."""

    names: tuple[str, ...]
    manager: str = "apt"              # "apt" | "dnf"
    version: str | None = None
    hold: bool = False

    @property
    def label(self) -> str:
        pinned = f"={self.version}" if self.version else ""
        return f"{self.manager} {' '.join(self.names)}{pinned}"

    def probe(self, detail: bool) -> str:
        names = " ".join(shlex.quote(n) for n in self.names)
        if self.manager == "dnf":
            query = "rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE} installed\\n'"
            return f"{query} {names} 2>/dev/null | grep ' installed$'"
        return (f"dpkg-query -W -f='${{Package}} ${{Version}} ${{db:Status-Status}}\\n' {names} 2>/dev/null;"
                f" apt-mark showhold {names} 2>/dev/null | sed 's/^/held /'")

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        installed, held = _parse_packages(fact)
        missing = [n for n in self.names if n not in installed or (self.version and installed[n] != self.version)]
        commands: list[str] = []
        if missing:
            commands.append(self._install(missing))
        if self.hold and self.manager == "apt" and any(n not in held for n in self.names):
            commands.append(sh("apt-mark hold" + " {}" * len(self.names), *self.names) + " >/dev/null")
        if not commands:
            return Step(self.label, OK, "installed" + (" and held" if self.hold else ""))
        reason = f"missing: {', '.join(missing)}" if missing else "not held"
        return Step(self.label, CHANGE, reason, commands=tuple(commands))

    def _install(self, names: list[str]) -> str:
        spec = [f"{n}={self.version}" if self.version and self.manager == "apt" else
                f"{n}-{self.version}" if self.version else n for n in names]
        quoted = " ".join(shlex.quote(s) for s in spec)
        if self.manager == "dnf":
            return f"dnf install -y -q {quoted}"
        unhold = " ".join(shlex.quote(n) for n in names)
        return (f"vms_apt_update; apt-mark unhold {unhold} >/dev/null 2>&1 || true; "
                f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
                f"--allow-change-held-packages {quoted}")


@dataclass(frozen=True)
class Service(Operation):
    """A systemd unit enabled/started, restarted once when something it watches changed."""

    name: str
    enabled: bool = True
    running: bool = True
    restart_on: tuple[str, ...] = ()  # labels of operations in the same phase
    daemon_reload: bool = False

    @property
    def label(self) -> str:
        return f"service {self.name}"

    def probe(self, detail: bool) -> str:
        return sh("systemctl is-enabled {0} 2>/dev/null || true; systemctl is-active {0} 2>/dev/null || true",
                  self.name)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        enabled_state, active_state = (fact.split() + ["", ""])[:2]
        commands, reasons = [], []
        if self.daemon_reload and changed:
            commands.append("systemctl daemon-reload")
        if self.enabled and enabled_state not in ("enabled", "static", "alias"):
            commands.append(sh("systemctl enable --quiet {}", self.name))
            reasons.append(f"was {enabled_state or 'unknown'}")
        triggers = sorted(set(self.restart_on) & changed)
        if self.running and active_state != "active":
            commands.append(sh("systemctl start {}", self.name))
            reasons.append(f"was {active_state or 'unknown'}")
        elif self.running and triggers:
            commands.append(sh("systemctl restart {}", self.name))
            reasons.append("restart: " + ", ".join(triggers) + " changed")
        if not self.running and active_state == "active":
            commands.append(sh("systemctl stop {}", self.name))
            reasons.append("was active")
        if not commands or commands == ["systemctl daemon-reload"]:
            return Step(self.label, OK, f"{enabled_state}, {active_state}")
        return Step(self.label, CHANGE, "; ".join(reasons), commands=tuple(commands))


# ---------------------------------------------------------------------------------------------
# Kernel
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sysctl(Operation):
    """A kernel parameter set now (persist it with a File in /etc/sysctl.d).

    ``needs_module``: the key exists only once that module is loaded (net.bridge.* needs
    br_netfilter). When a KernelModule earlier in the phase loads it, the key is set in
    the same run instead of being skipped as absent.
    """

    key: str
    value: str
    needs_module: str | None = None

    @property
    def label(self) -> str:
        return f"sysctl {self.key}={self.value}"

    def probe(self, detail: bool) -> str:
        path = "/proc/sys/" + self.key.replace(".", "/")
        return sh("if [ -e {0} ]; then cat -- {0}; if [ -w {0} ]; then echo writable; else echo read-only; fi; "
                  "else echo absent; fi", path)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        lines = fact.strip().splitlines() or ["absent"]
        set_now = (sh("sysctl -q -w {}", f"{self.key}={self.value}"),)
        if lines[0] == "absent" and self.needs_module and f"module {self.needs_module}" in changed:
            return Step(self.label, CHANGE, f"appears once {self.needs_module} is loaded", commands=set_now)
        if lines[0] == "absent":
            return Step(self.label, SKIP, "this kernel has no such parameter here")
        if " ".join(lines[0].split()) == self.value:
            return Step(self.label, OK, "already set")
        if lines[-1] == "read-only":
            return Step(self.label, SKIP, "/proc/sys is read-only for this key here (a container's kernel limits)")
        return Step(self.label, CHANGE, f"was {lines[0]}", commands=set_now)


# How to tell a kernel feature is there even when it is built in (no /sys/module entry, no lsmod line).
FEATURE_PROBES = {
    "br_netfilter": "[ -d /proc/sys/net/bridge ]",
    "overlay": "grep -qw overlay /proc/filesystems",
}


@dataclass(frozen=True)
class KernelModule(Operation):
    """A kernel module loaded now (persist it with a File in /etc/modules-load.d)."""

    name: str

    @property
    def label(self) -> str:
        return f"module {self.name}"

    def probe(self, detail: bool) -> str:
        present = FEATURE_PROBES.get(self.name, sh("[ -d /sys/module/{} ]", self.name))
        return (f"if {present}; then echo present; elif [ -d /lib/modules/$(uname -r) ]; then echo loadable; "
                f"else echo no-modules; fi")

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        state = fact.strip()
        if state == "present":
            return Step(self.label, OK, "loaded or built in")
        if state == "no-modules":
            return Step(self.label, SKIP, "not loaded and this kernel has no /lib/modules to load it from")
        return Step(self.label, CHANGE, "not loaded", commands=(sh("modprobe {}", self.name),))


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command(Operation):
    """A command run only when its guard says so (``creates``/``removes`` a path, ``unless``/``onlyif`` a test)."""

    script: str
    description: str
    creates: str | None = None
    removes: str | None = None
    unless: str | None = None
    onlyif: str | None = None
    when_changed: tuple[str, ...] = ()  # run only if one of these labels changed in this phase

    @property
    def label(self) -> str:
        return f"run {self.description}"

    def probe(self, detail: bool) -> str:
        checks = []
        if self.creates:
            checks.append(sh("[ -e {} ] && echo creates-exists", self.creates))
        if self.removes:
            checks.append(sh("[ -e {} ] || echo removes-absent", self.removes))
        if self.unless:
            checks.append(f"( {self.unless} ) >/dev/null 2>&1 && echo unless-true")
        if self.onlyif:
            checks.append(f"( {self.onlyif} ) >/dev/null 2>&1 || echo onlyif-false")
        return "; ".join(checks) + "; true" if checks else "true"

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        words = set(fact.split())
        reasons = {"creates-exists": f"{self.creates} exists", "removes-absent": f"{self.removes} absent",
                   "unless-true": "already so (unless-check passed)",
                   "onlyif-false": "not needed (onlyif-check failed)"}
        for word, reason in reasons.items():
            if word in words:
                return Step(self.label, OK, reason)
        triggers = sorted(set(self.when_changed) & changed)
        if self.when_changed and not triggers:
            return Step(self.label, OK, "nothing it depends on changed")
        reason = (", ".join(triggers) + " changed") if triggers else \
            "guard says run" if self.probe(False) != "true" else "always"
        return Step(self.label, CHANGE, reason, commands=(self.script,))


@dataclass(frozen=True)
class Check(Operation):
    """Runs every time and changes nothing: a bounded wait, a verification, a value captured for later phases."""

    script: str
    description: str
    capture: str | None = None
    secret: bool = False

    @property
    def label(self) -> str:
        return f"check {self.description}"

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        return Step(self.label, CHECK, self.description, commands=(self.script,), capture=self.capture,
                    secret=self.secret)


def wait_until(test: str, description: str, timeout: int = 300, interval: int = 5, show: str = "") -> Check:
    """A bounded wait on the host: retry ``test`` until it passes; print ``show`` each time while waiting."""
    timed_out = shlex.quote(f"timed out after {timeout}s: {description}")
    script = (f"vms_end=$(( $(date +%s) + {int(timeout)} )); "
              f"until ( {test} ) >/dev/null 2>&1; do "
              f"if [ $(date +%s) -ge $vms_end ]; then echo {timed_out} >&2; "
              f"{show + ' >&2;' if show else ''} exit 1; fi; "
              f"{show + ';' if show else ''} sleep {int(interval)}; done")
    return Check(script, f"wait for {description} (up to {timeout}s)")


@dataclass(frozen=True)
class Notice(Operation):
    """A preflight warning shown in the plan and the summary (a version below what upstream supports)."""

    message: str

    @property
    def label(self) -> str:
        return "warning"

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        return Step(self.label, WARN, self.message)


@dataclass(frozen=True)
class Fetch(Operation):
    """A file brought back to the operator's machine (kubeconfig), transformed, written 0600 atomically."""

    remote_path: str
    local_path: str
    transform: Callable[[bytes], bytes] | None = None
    mode: int = 0o600

    @property
    def label(self) -> str:
        return f"fetch {self.remote_path} -> {self.local_path}"

    def probe(self, detail: bool) -> str:
        return sh("if [ -r {0} ]; then base64 -w0 -- {0}; echo; else echo absent; fi", self.remote_path)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        text = fact.strip()
        if text == "absent":
            return Step(self.label, SKIP, f"{self.remote_path} is not there (yet)")
        content = base64.b64decode(text)
        if self.transform:
            content = self.transform(content)
        if _local_matches(self.local_path, content, self.mode):
            return Step(self.label, OK, "local copy is current")
        return Step(self.label, CHANGE, "local copy differs or is absent", secret=True,
                    local_writes=(LocalWrite(self.local_path, content, self.mode),))


# ---------------------------------------------------------------------------------------------
# Helpers: stat facts, diffs, package facts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    mode: str
    owner: str
    group: str
    sha256: str
    content: bytes | None


def _stat_probe(path: str, with_content: bool) -> str:
    content = sh("; base64 -w0 -- {}; echo", path) if with_content else ""
    return sh("if [ -f {0} ]; then stat -c '%a %U %G' -- {0}; sha256sum -- {0} | cut -c1-64", path) + content + \
        "; else echo absent; fi"


def parse_stat(fact: str) -> FileState | None:
    lines = fact.strip().splitlines()
    if not lines or lines[0] == "absent":
        return None
    mode, owner, group = lines[0].split()
    content = base64.b64decode(lines[2]) if len(lines) > 2 else None
    return FileState(mode.zfill(4), owner, group, lines[1].strip(), content)


def _attribute_fixes(path: str, current: FileState, mode: str, owner: str, group: str) -> tuple[str, ...]:
    fixes = []
    if int(current.mode, 8) != int(mode, 8):
        fixes.append(sh("chmod {} -- {}", mode, path))
    if (current.owner, current.group) != (owner, group):
        fixes.append(sh("chown {} -- {}", f"{owner}:{group}", path))
    return tuple(fixes)


DIFF_LIMIT = 256 * 1024   # larger files (binaries from an artifacts dir) are described, not diffed


def _diff(path: str, old: bytes | None, new: bytes, secret: bool) -> str:
    if secret:
        return f"(secret content of {path} not shown)\n"
    if len(new) > DIFF_LIMIT or (old and len(old) > DIFF_LIMIT) or b"\0" in new[:8192]:
        return f"(binary or large content of {path}: {len(new)} bytes, sha256 {hashlib.sha256(new).hexdigest()})\n"
    if old is None and path:
        old_lines: list[str] = []
    elif old is None:
        return ""
    else:
        old_lines = old.decode(errors="replace").splitlines(keepends=True)
    new_lines = new.decode(errors="replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(old_lines, new_lines, f"a{path}", f"b{path}"))


def _parse_packages(fact: str) -> tuple[dict[str, str], set[str]]:
    installed, held = {}, set()
    for row in fact.splitlines():
        parts = row.split()
        if len(parts) == 2 and parts[0] == "held":
            held.add(parts[1])
        elif len(parts) >= 3 and parts[2] == "installed":
            installed[parts[0].split(":")[0]] = parts[1]
    return installed, held


def _dedupe_adjacent(lines: list[str], text: str) -> list[str]:
    out: list[str] = []
    for item in lines:
        if item == text and text in out:
            continue
        out.append(item)
    return out


def _local_matches(path: str, content: bytes, mode: int) -> bool:
    import os

    try:
        with open(path, "rb") as handle:
            same = handle.read() == content
        return same and (os.stat(path).st_mode & 0o777) == mode
    except OSError:
        return False


__all__ = ["sh", "Step", "Upload", "LocalWrite", "Operation", "File", "Edit", "line", "Directory", "Package",
           "Service", "Sysctl", "KernelModule", "Command", "Check", "wait_until", "Notice", "Fetch",
           "FEATURE_PROBES", "CHANGE", "OK", "SKIP", "CHECK", "WARN"]
