"""Config checks that passed, remembered by the digest of what they checked.

A check (kubeadm fields, containerd's sections, the Kubernetes schemas, RKE2 keys) is a pure function of
the rendered text, its arguments and the checker itself. A pass is remembered under the digest of all
of them: in memory for the rest of the process (the preflight and the run check the same files), and in
``.vmstation/checks.json`` for the next run, so an unchanged no-op spends no time on them. Only passes are
remembered: a changed file, or one that failed before, is checked as strictly as ever. The file is read
the first time a check is asked, never before.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from pathlib import Path

KEEP = 512            # digests kept in the file (the newest): a homelab has a few dozen checked files

_lock = threading.Lock()
_passed: set[str] = set()
_new: list[str] = []
_file: Path | None = None
_loaded = False


def use(path: Path | None) -> None:
    """Remember passes in ``path`` (the inventory's state directory) from now on; None: in memory only."""
    global _file, _loaded
    with _lock:
        if path != _file:
            _file, _loaded = path, False


def save() -> None:
    """Write the passes seen in this process to the file (0600, atomically), newest kept."""
    with _lock:
        if _file is None or not _new:
            return
        _load()
        kept = list(dict.fromkeys(_stored() + _new))[-KEEP:]
        from vmstation.atomic import write_atomically

        _file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(str(_file), json.dumps({"checker": _checker(), "passed": kept}).encode(), 0o600)
        _new.clear()


def remembered(check):
    """Decorate a check ``(text, ...) -> problems``: a remembered pass returns [] without checking again."""
    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        key = hashlib.sha256(json.dumps([check.__qualname__, _checker(), args, sorted(kwargs.items())],
                                        default=repr).encode(errors="surrogateescape")).hexdigest()
        with _lock:
            _load()
            if key in _passed:
                return []
        problems = check(*args, **kwargs)
        if not problems:
            with _lock:
                _passed.add(key)
                _new.append(key)
        return problems
    return wrapper


def _load() -> None:
    global _loaded
    if _loaded or _file is None:
        return
    _loaded = True
    _passed.update(_stored())


def _stored() -> list[str]:
    try:
        data = json.loads(_file.read_text()) if _file else {}
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("checker") != _checker():
        return []          # another checker (vmstation, its field lists or the schemas changed): check again
    return [k for k in data.get("passed", []) if isinstance(k, str)]


@functools.lru_cache(maxsize=1)
def _checker() -> str:
    """The checker itself: the checking modules' source, the kubeadm field list, the schemas' version."""
    from importlib import metadata

    from vmstation import config_checks, rke2_checks

    digest = hashlib.sha256()
    for path in (config_checks.__file__, rke2_checks.__file__, config_checks.KUBEADM_FIELDS_FILE,
                 config_checks.KUBEADM_V1BETA4_FIELDS_FILE):
        digest.update(Path(path).read_bytes())
    try:
        digest.update(metadata.version("kubernetes-validate").encode())
    except metadata.PackageNotFoundError:
        pass
    return digest.hexdigest()[:32]
