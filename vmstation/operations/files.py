"""Files: whole files, edits of shared files, directories, fetches back to the operator's machine."""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import Callable

from vmstation.operations.base import CHANGE, OK, SKIP, LocalFile, LocalWrite, Operation, Step, Upload, sh

@dataclass(frozen=True)
class File(Operation):
    """A whole file with this content, mode and owner. Written atomically."""

    path: str
    content: str | bytes | LocalFile     # a LocalFile is streamed, its digest computed once per run
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
        """The whole content (a LocalFile is read: only `vmstation render` asks for it)."""
        if isinstance(self.content, LocalFile):
            return self.content.read()
        return self.content.encode() if isinstance(self.content, str) else self.content

    @property
    def _payload(self) -> "bytes | LocalFile":
        return self.content if isinstance(self.content, LocalFile) else self.data

    @property
    def sha256(self) -> str:
        if isinstance(self.content, LocalFile):
            return self.content.sha256
        return hashlib.sha256(self.data).hexdigest()

    def probe(self, detail: bool) -> str:
        return _stat_probe(self.path, with_content=detail and not self.secret)

    def stat_path(self, detail: bool) -> str | None:
        """The path to ask in the phase's one stat and one sha256sum (``stat_batch_probe``), unless the probe
        must read the content too (a plan's diff)."""
        return None if detail and not self.secret else self.path

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        current = parse_stat(fact)
        upload = Upload(self.path, self._payload, self.mode, self.owner, self.group)
        if current is None:
            return Step(self.label, CHANGE, "absent", uploads=(upload,), secret=self.secret,
                        diff=_diff(self.path, None, self._payload, self.secret))
        if current.sha256 != self.sha256:
            return Step(self.label, CHANGE, "content differs", uploads=(upload,), secret=self.secret,
                        diff=_diff(self.path, current.content, self._payload, self.secret))
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
        # bytes that are not UTF-8 (a Latin-1 comment) pass through the transform unchanged, never raise
        new = self.transform(old.decode(errors="surrogateescape")).encode(errors="surrogateescape")
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


# -- helpers -------------------------------------------------------------------------------------


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


def stat_batch_probe(paths: list[str]) -> str:
    """One probe for many files: which are regular files (shell builtins), then one ``stat`` and one
    ``sha256sum`` over those. ``split_stat_batch`` turns the answer into each file's ``_stat_probe`` answer."""
    quoted = " ".join(shlex.quote(p) for p in paths)
    return (f'set --; for vms_p in {quoted}; do if [ -f "$vms_p" ]; then echo y; set -- "$@" "$vms_p"; '
            'else echo n; fi; done\n'
            "if [ $# -gt 0 ]; then stat -c '%a %U %G' -- \"$@\"; sha256sum -- \"$@\"; fi")


def split_stat_batch(answer: str, count: int) -> list[str]:
    """Each file's answer, in ``_stat_probe``'s shape; a file whose lines did not come back counts as absent
    (it is uploaded again, which is safe)."""
    lines = answer.splitlines()
    flags, rest = lines[:count], lines[count:]
    present = sum(1 for flag in flags if flag == "y")
    if len(flags) < count or len(rest) != 2 * present:
        return ["absent"] * count
    stats, sums = rest[:present], rest[present:]
    facts, taken = [], 0
    for flag in flags:
        if flag != "y":
            facts.append("absent")
            continue
        # sha256sum writes a leading backslash when the name needed escaping
        facts.append(f"{stats[taken]}\n{sums[taken].lstrip(chr(92))[:64]}\n")
        taken += 1
    return facts


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


def _diff(path: str, old: bytes | None, new: "bytes | LocalFile", secret: bool) -> str:
    if secret:
        return f"(secret content of {path} not shown)\n"
    if isinstance(new, LocalFile):
        return f"(binary or large content of {path}: {new.size} bytes, sha256 {new.sha256})\n"
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
