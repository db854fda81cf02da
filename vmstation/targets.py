"""The phase registry: every module of ``vmstation.phases`` with its ``PHASES`` and ``TARGETS``, in one graph.

A phase module declares its phases and targets once; the module is found here by being in the package, so
adding a module adds its targets, and from them derive ``vmstation phases``, ``render``, ``plan``, each
target's own CLI command and fab task (``Target.command``) and the preflight. Modules are read in name order,
so the graph (and the ties it breaks by declaration order) is the same on every machine.
"""

from __future__ import annotations

import functools


def phase_modules() -> tuple[str, ...]:
    """The modules of ``vmstation.phases`` that declare phases, by name."""
    import pkgutil

    from vmstation import phases

    return tuple(f"vmstation.phases.{m.name}" for m in sorted(pkgutil.iter_modules(phases.__path__),
                                                              key=lambda m: m.name) if not m.name.startswith("_"))


@functools.lru_cache(maxsize=1)
def build_graph():
    import importlib

    from vmstation.graph import Graph

    phases, targets = [], []
    for name in phase_modules():
        module = importlib.import_module(name)
        phases.extend(getattr(module, "PHASES", ()))
        targets.extend(getattr(module, "TARGETS", ()))
    return Graph(phases, targets)
