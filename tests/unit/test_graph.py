"""The phase graph: topological order, deterministic ties, clear errors, --only/--from, host selectors."""

from __future__ import annotations

import pytest

from vmstation.errors import GraphError
from vmstation.graph import Graph, Phase, Target, all_hosts, hosts_of_kind, hosts_with_role


def phase(name: str, *needs: str, volatile: bool = False) -> Phase:
    return Phase(name, f"the {name} phase", all_hosts, lambda ctx: (), needs=needs, volatile=volatile)


def names(phases: list[Phase]) -> list[str]:
    return [p.name for p in phases]


def diamond() -> Graph:
    """prep -> (binaries, kernel) -> init -> join; 'unrelated' belongs to no target's closure but its own."""
    phases = [phase("prep"), phase("kernel", "prep"), phase("binaries", "prep"), phase("init", "binaries", "kernel"),
              phase("join", "init"), phase("unrelated")]
    return Graph(phases, [Target("deploy", "all of it", ("join",)), Target("other", "alone", ("unrelated",)),
                          Target("half", "up to init", ("init",))])


def test_needs_come_before_the_phases_that_need_them():
    ordered = names(diamond().order("deploy"))
    for earlier, later in [("prep", "kernel"), ("prep", "binaries"), ("binaries", "init"), ("kernel", "init"),
                           ("init", "join")]:
        assert ordered.index(earlier) < ordered.index(later)


def test_ties_are_broken_by_declaration_order():
    # kernel and binaries are both ready after prep: kernel was declared first, so it runs first
    assert names(diamond().order("deploy")) == ["prep", "kernel", "binaries", "init", "join"]
    swapped = Graph([phase("prep"), phase("binaries", "prep"), phase("kernel", "prep"),
                     phase("init", "kernel", "binaries")], [Target("t", "", ("init",))])
    assert names(swapped.order("t")) == ["prep", "binaries", "kernel", "init"]


ORDER_OF_EVERY_TARGET = """
import json
from vmstation.targets import build_graph
graph = build_graph()
print(json.dumps({t: [p.name for p in graph.order(t)] for t in sorted(graph.targets)}))
"""


def test_the_order_of_every_target_is_the_same_whatever_the_hash_seed():
    """Sets of names are iterated in hash order, which changes between processes: each process here gets its
    own PYTHONHASHSEED, so an order that leaned on a set's iteration would differ between them."""
    import os
    import subprocess
    import sys

    orders = set()
    for seed in ("0", "1", "2", "12345", "4294967295"):
        result = subprocess.run([sys.executable, "-c", ORDER_OF_EVERY_TARGET], capture_output=True, text=True,
                                timeout=60, check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        orders.add(result.stdout)
    assert len(orders) == 1 and "deploy-debian" in orders.pop()


def test_independent_phases_keep_declaration_order():
    graph = Graph([phase("c"), phase("a"), phase("b")], [Target("t", "", ("a", "b", "c"))])
    assert names(graph.order("t")) == ["c", "a", "b"]


def test_a_target_holds_only_what_its_ends_need():
    graph = diamond()
    assert names(graph.order("half")) == ["prep", "kernel", "binaries", "init"]
    assert names(graph.order("other")) == ["unrelated"]
    assert graph.closure(["init"]) == {"prep", "kernel", "binaries", "init"}


def test_a_cycle_is_a_graph_error_naming_the_cycle():
    graph = Graph([phase("a", "c"), phase("b", "a"), phase("c", "b"), phase("d")], [Target("t", "", ("c", "d"))])
    with pytest.raises(GraphError) as caught:
        graph.order("t")
    message = str(caught.value)
    assert message.startswith("phases need each other in a cycle: ")
    cycle = message.split(": ", 1)[1].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_a_phase_needing_itself_is_a_cycle():
    graph = Graph([phase("a", "a")], [Target("t", "", ("a",))])
    with pytest.raises(GraphError, match="cycle: a -> a"):
        graph.order("t")


def test_an_unknown_need_is_refused_when_the_graph_is_built():
    with pytest.raises(GraphError, match="phase 'join' needs unknown phase 'int'"):
        Graph([phase("init"), phase("join", "int")])


def test_a_target_naming_an_unknown_phase_is_refused():
    with pytest.raises(GraphError, match="target 't' names unknown phase 'nope'"):
        Graph([phase("a")], [Target("t", "", ("nope",))])


def test_a_phase_defined_twice_is_refused():
    with pytest.raises(GraphError, match="phase 'a' is defined twice"):
        Graph([phase("a"), phase("a")])


def test_an_unknown_target_lists_the_known_ones():
    with pytest.raises(GraphError, match=r"unknown target 'deplyo'; known: deploy, half, other"):
        diamond().order("deplyo")


def test_only_keeps_the_named_phases_in_graph_order():
    assert names(diamond().order("deploy", only=["join", "kernel"])) == ["kernel", "join"]


def test_from_starts_at_the_named_phase():
    assert names(diamond().order("deploy", start_from="binaries")) == ["binaries", "init", "join"]
    assert names(diamond().order("deploy", start_from="prep")) == ["prep", "kernel", "binaries", "init", "join"]


def test_only_and_from_refuse_phases_outside_the_target():
    with pytest.raises(GraphError, match="phase 'unrelated' is not part of target 'deploy'; its phases are: "
                                         "prep, kernel, binaries, init, join"):
        diamond().order("deploy", only=["unrelated"])
    with pytest.raises(GraphError, match="phase 'nope' is not part of target 'half'"):
        diamond().order("half", start_from="nope")


def test_selectors_pick_hosts_by_cluster_kind_and_role(homelab):
    assert [h.name for h in hosts_of_kind("kubeadm")(homelab)] == ["masternode", "storagenodet3500"]
    assert [h.name for h in hosts_of_kind("rke2")(homelab)] == ["homelab"]
    assert [h.name for h in hosts_with_role("kubeadm", "worker")(homelab)] == ["storagenodet3500"]
    assert [h.name for h in hosts_with_role("kubeadm", "control-plane")(homelab)] == ["masternode"]
    assert hosts_with_role("rke2", "control-plane")(homelab) == ()
    assert [h.name for h in all_hosts(homelab)] == ["masternode", "storagenodet3500", "homelab"]


def test_only_with_from_is_a_graph_error_not_a_value_error():
    with pytest.raises(GraphError, match="--only and --from cannot be used together"):
        diamond().order("deploy", only=["init"], start_from="binaries")
