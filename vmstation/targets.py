"""The built-in targets and the one graph that holds all their phases.

Each module of ``vmstation.phases`` exports ``PHASES`` and ``TARGETS``; this is
the only place that knows the list, so adding a module adds its targets.
"""

from __future__ import annotations

import functools

PHASE_MODULES = ("vmstation.phases.debian", "vmstation.phases.rke2", "vmstation.phases.power",
                 "vmstation.phases.reset", "vmstation.phases.backup", "vmstation.phases.certs",
                 "vmstation.phases.upgrade", "vmstation.phases.upgrade_rke2")


@functools.lru_cache(maxsize=1)
def build_graph():
    import importlib

    from vmstation.graph import Graph

    phases, targets = [], []
    for name in PHASE_MODULES:
        module = importlib.import_module(name)
        phases.extend(module.PHASES)
        targets.extend(module.TARGETS)
    return Graph(phases, targets)
