"""A cgroup of its own for each box, in every cgroup v1 hierarchy of this machine.

This machine runs no systemd and mounts a hybrid v1 layout. Two systemd-nspawn
processes started from the same cgroup collide (each box's systemd takes the
cgroup as its own), so every box starts from a child cgroup named after it,
under this process's own cgroup, in each mounted v1 hierarchy.
"""

from __future__ import annotations

import os
from pathlib import Path

from vmstation.testing import HarnessError

FLAGS = frozenset({"rw", "ro", "clone_children", "noprefix", "xattr", "cpuset_v2_mode", "favordynmods"})


def create_box_cgroups(name: str) -> list[Path]:
    """Create the box's child cgroup in every v1 hierarchy; return their directories."""
    made = []
    for hierarchy, own_path in _own_v1_cgroups():
        parent = hierarchy / own_path.lstrip("/")
        child = parent / name
        child.mkdir(exist_ok=True)
        if (parent / "cpuset.cpus").exists():  # a cpuset child takes no task until it has cpus and mems
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (child / knob).write_text((parent / knob).read_text())
        made.append(child)
    if not made:
        raise HarnessError("no cgroup v1 hierarchy is mounted: boxes need the hybrid layout of test-boxes.md")
    return made


def remove_box_cgroups(directories: list[Path]) -> list[str]:
    """Remove the box's cgroups, deepest first; return those that could not go (a process still in them)."""
    left = []
    for directory in directories:
        if not directory.exists():
            continue
        for current, _subdirs, _files in os.walk(directory, topdown=False):
            try:
                os.rmdir(current)
            except OSError:
                left.append(current)
    return left


def _own_v1_cgroups() -> list[tuple[Path, str]]:
    """(mount point, this process's path in it) for each v1 hierarchy named in /proc/self/cgroup."""
    mounts = _v1_mounts()
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy_id, controllers, path = line.split(":", 2)
        if hierarchy_id != "0" and frozenset(controllers.split(",")) in mounts:
            found.append((mounts[frozenset(controllers.split(","))], path))
    return found


def _v1_mounts() -> dict[frozenset[str], Path]:
    """Mount point of each v1 hierarchy, keyed by its controllers (or ``name=...``)."""
    mounts = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _source, options = tail.split(" ", 2)
        if fstype == "cgroup":
            names = {o for o in options.split(",") if o.startswith("name=") or ("=" not in o and o not in FLAGS)}
            mounts[frozenset(names)] = Path(fields.split(" ")[4])
    return mounts
