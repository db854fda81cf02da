"""The suite's privilege-drop cases, run from a clone in a directory only root can read (as `mktemp -d` makes).

A sender that drops privileges must have imported everything it needs before it drops them: after the drop,
a lazy import from a checkout that user nobody cannot read fails. In the developer's checkout (readable by
everyone) such an import goes unnoticed; from a clone under `mktemp -d` it does not. This test makes that
clone and runs every test marked ``drops_privileges`` there, so the trap cannot come back unseen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("git") is None,
                                reason="needs root (the cases drop from root to nobody) and git")


# The developer's venv has vmstation installed in editable mode from their own (readable) checkout; a lazy
# import that the clone cannot answer would quietly fall back to it. A fresh clone's venv has no such
# fallback: neither has the clone once this runs at start-up (the cases' PYTHONPATH is the clone).
# setup.cfg's package_dir (vmstation.template_files = templates) is mapped for the clone as an install maps it.
ONLY_THE_CLONE = """import importlib.util, os, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]


class _PackageDir:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "vmstation.template_files":
            return None
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
        return importlib.util.spec_from_file_location(name, os.path.join(root, "__init__.py"),
                                                      submodule_search_locations=[root])


sys.meta_path.append(_PackageDir)
"""


def test_the_privilege_drop_cases_pass_from_a_clone_in_a_0700_directory():
    clone = Path(tempfile.mkdtemp(prefix="vmstation-clone-"))
    try:
        assert clone.stat().st_mode & 0o777 == 0o700
        _copy_checkout(REPO, clone)
        (clone / "sitecustomize.py").write_text(ONLY_THE_CLONE)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "drops_privileges", "tests"],
            cwd=clone, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(clone), "PYTHONDONTWRITEBYTECODE": "1"})
        summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert " passed" in summary and "skipped" not in summary, summary
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def _copy_checkout(source: Path, destination: Path) -> None:
    """Every file git knows of or would add (the working tree as it is, uncommitted changes included)."""
    listed = subprocess.run(["git", "-C", str(source), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True, timeout=60).stdout
    for name in filter(None, listed.decode().split("\0")):
        path = source / name
        if path.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination / name)
