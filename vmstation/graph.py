"""Phases, targets and the order they run in.

A phase is a name, a selector of hosts, the phases it needs, and a function that
yields the operations for one host. A target (``deploy-debian``) names the phases
it ends with; its sub-graph is those phases and everything they need. Order is
``graphlib.TopologicalSorter`` with ties broken by declaration order, so two runs
of the same target always run phases in the same order.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from vmstation.errors import GraphError
from vmstation.inventory import Host, Inventory

if TYPE_CHECKING:
    from vmstation.context import HostContext
    from vmstation.operations import Operation


@dataclass(frozen=True)
class Phase:
    name: str
    title: str
    select: Callable[[Inventory], Iterable[Host]]
    operations: Callable[["HostContext"], Iterable["Operation"]]
    needs: tuple[str, ...] = ()
    volatile: bool = False      # produces values later phases use: run again on --resume
    # The vault references the phase reads for a host: resolved before any host is touched, plan included.
    secrets: Callable[[Inventory, Host], Iterable[str]] | None = None


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    ends_with: tuple[str, ...]


class Graph:
    """Every phase and target known to a run."""

    def __init__(self, phases: Iterable[Phase], targets: Iterable[Target] = ()):
        self.phases: dict[str, Phase] = {}
        for phase in phases:
            if phase.name in self.phases:
                raise GraphError(f"phase {phase.name!r} is defined twice")
            self.phases[phase.name] = phase
        self.targets = {t.name: t for t in targets}
        self._check_needs()

    def order(self, target: str, only: Iterable[str] = (), start_from: str | None = None) -> list[Phase]:
        """The phases of ``target`` in run order, narrowed by ``--only`` or ``--from``."""
        only = list(only)
        if only and start_from:
            raise GraphError(f"--only and --from cannot be used together (--only {' '.join(only)} "
                             f"--from {start_from}): --only names every phase to run")
        names = self.closure(self._target(target).ends_with)
        ordered = self._topological(names)
        for name in only + ([start_from] if start_from else []):
            if name not in names:
                raise GraphError(f"phase {name!r} is not part of target {target!r}; "
                                 f"its phases are: {', '.join(p.name for p in ordered)}")
        if only:
            ordered = [p for p in ordered if p.name in only]
        if start_from:
            ordered = ordered[[p.name for p in ordered].index(start_from):]
        return ordered

    def closure(self, names: Iterable[str]) -> set[str]:
        """``names`` and every phase they need, transitively."""
        seen: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name not in seen:
                seen.add(name)
                stack.extend(self._phase(name).needs)
        return seen

    def _topological(self, names: set[str]) -> list[Phase]:
        declared = list(self.phases)
        sorter = graphlib.TopologicalSorter({n: self.phases[n].needs for n in names})
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            raise GraphError("phases need each other in a cycle: " + " -> ".join(exc.args[1])) from exc
        ordered: list[Phase] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=declared.index)
            for name in ready:
                ordered.append(self.phases[name])
                sorter.done(name)
        return ordered

    def _target(self, name: str) -> Target:
        if name not in self.targets:
            raise GraphError(f"unknown target {name!r}; known: {', '.join(sorted(self.targets))}")
        return self.targets[name]

    def _phase(self, name: str) -> Phase:
        if name not in self.phases:
            raise GraphError(f"unknown phase {name!r}")
        return self.phases[name]

    def _check_needs(self) -> None:
        for phase in self.phases.values():
            for need in phase.needs:
                if need not in self.phases:
                    raise GraphError(f"phase {phase.name!r} needs unknown phase {need!r}")
        for target in self.targets.values():
            for name in target.ends_with:
                if name not in self.phases:
                    raise GraphError(f"target {target.name!r} names unknown phase {name!r}")


# -- host selectors -----------------------------------------------------------------------------


def hosts_of_kind(kind: str) -> Callable[[Inventory], tuple[Host, ...]]:
    """Every host of every cluster of this kind (kubeadm, rke2)."""
    def select(inventory: Inventory) -> tuple[Host, ...]:
        clusters = {c.name for c in inventory.clusters_of_kind(kind)}
        return tuple(h for h in inventory.hosts if h.cluster in clusters)
    return select


def hosts_with_role(kind: str, role: str) -> Callable[[Inventory], tuple[Host, ...]]:
    """Hosts of clusters of this kind that have ``role``."""
    def select(inventory: Inventory) -> tuple[Host, ...]:
        return tuple(h for h in hosts_of_kind(kind)(inventory) if h.has_role(role))
    return select


def all_hosts(inventory: Inventory) -> tuple[Host, ...]:
    return inventory.hosts
