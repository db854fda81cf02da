"""Checks of what a tool left on the hosts: the files of W, byte for byte, and nothing else.

The expected files are rendered here, independently of every tool (Jinja2 with
StrictUndefined and keep_trailing_newline). After a first run every host's root
must hold exactly those files (bytes, mode 0644, root:root) and no stray file
(temporary uploads, backups). A no-op run must not rewrite any of them: inode,
mtime and ctime stay as they were.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from bench import spec

Snapshot = dict[str, tuple[int, int, int]]


def expected_files(described: dict) -> dict[str, dict[str, bytes]]:
    """host root -> {path under root: bytes} as W says."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(described["templates"]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return {h["root"]: {path: env.get_template(template).render(**h["vars"]).encode()
                        for template, path in described["files"]}
            for h in described["hosts"]}


def check_first_run(expected: dict[str, dict[str, bytes]]) -> list[str]:
    """Every difference between the hosts' roots and ``expected`` (empty: byte-identical)."""
    problems = []
    for root, files in expected.items():
        found = {str(p.relative_to(root)) for p in Path(root).rglob("*") if not p.is_dir()}
        problems += [f"{root}: stray file {name}" for name in sorted(found - set(files))]
        for name, content in files.items():
            problems += _check_file(Path(root, name), content)
    return problems


def snapshot(expected: dict[str, dict[str, bytes]]) -> Snapshot:
    """(inode, mtime, ctime) of every file of W: what a rewrite or chmod would change."""
    shot = {}
    for root, files in expected.items():
        for name in files:
            info = os.stat(Path(root, name))
            shot[f"{root}/{name}"] = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
    return shot


def unchanged(before: Snapshot, after: Snapshot) -> list[str]:
    return [f"{path}: rewritten or changed on a no-op run" for path in before if before[path] != after.get(path)]


def clear_roots(expected: dict[str, dict[str, bytes]]) -> None:
    """Empty every host's root so that the next run is a first run."""
    for root in expected:
        for child in Path(root).iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _check_file(path: Path, content: bytes) -> list[str]:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return [f"{path}: missing"]
    problems = []
    if not stat.S_ISREG(info.st_mode):
        problems.append(f"{path}: not a regular file")
    elif path.read_bytes() != content:
        problems.append(f"{path}: content differs from the rendered template")
    if stat.S_IMODE(info.st_mode) != spec.FILE_MODE:
        problems.append(f"{path}: mode {stat.S_IMODE(info.st_mode):o}, expected {spec.FILE_MODE:o}")
    if (info.st_uid, info.st_gid) != (0, 0):
        problems.append(f"{path}: owner {info.st_uid}:{info.st_gid}, expected root:root")
    return problems
