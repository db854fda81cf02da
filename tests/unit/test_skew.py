"""The kubelet version skew check ahead of each upgrade step (vmstation.skew, upgrade-debian.preflight's
KubeletSkew): every case decided from the answer a real API server and kubectl give, no host needed."""

from __future__ import annotations

import json

import pytest

from vmstation import skew, versions
from vmstation.errors import HostError
from vmstation.phases.upgrade import KubeletSkew


def answer(api_server: str | None, nodes: list[tuple[str, str]]) -> str:
    """What the probe prints: GET /version's JSON (version.Info), the marker, then name<TAB>kubeletVersion lines."""
    version = "" if api_server is None else json.dumps(
        {"major": "1", "minor": api_server.split(".")[1], "gitVersion": api_server, "gitCommit": "0" * 40,
         "gitTreeState": "clean", "buildDate": "2026-08-12T10:00:00Z", "goVersion": "go1.24.6", "compiler": "gc",
         "platform": "linux/amd64"}, indent=2)
    return version + "\n" + skew.NODES_MARKER + "\n" + "".join(f"{n}\t{v}\n" for n, v in nodes)


def decide(to: str, api_server: str | None, nodes: list[tuple[str, str]]):
    return KubeletSkew(to).decide(answer(api_server, nodes), frozenset())


def test_the_probe_asks_the_api_server_version_and_every_node_name_and_kubelet_once():
    probe = KubeletSkew("1.31.14").probe(detail=False)
    assert probe.count("kubectl --kubeconfig=/etc/kubernetes/admin.conf") == 2
    assert "get --raw=/version" in probe
    assert ("get nodes -o jsonpath='{range .items[*]}{.metadata.name}{\"\\t\"}{.status.nodeInfo.kubeletVersion}"
            "{\"\\n\"}{end}'") in probe


def test_kubelets_one_minor_behind_the_step_or_at_it_are_fine():
    step = decide("1.30.14", "v1.29.15", [("masternode", "v1.29.15"), ("storagenodet3500", "v1.29.15")])
    assert step.status == "ok"
    assert step.reason == ("every kubelet within the Version Skew Policy: API server v1.29.15; kubelets: "
                           "masternode v1.29.15, storagenodet3500 v1.29.15")
    resumed = decide("1.30.14", "v1.30.14", [("masternode", "v1.30.14"), ("storagenodet3500", "v1.29.15")])
    assert resumed.status == "ok"          # a run cut after the apply: the worker is still one minor behind


def test_a_kubelet_newer_than_the_api_server_is_refused_with_what_to_do():
    with pytest.raises(HostError) as refused:
        decide("1.31.14", "v1.30.14", [("masternode", "v1.30.14"), ("storagenodet3500", "v1.31.14")])
    message = refused.value.message
    assert message.startswith("node storagenodet3500 runs kubelet v1.31.14, newer than the API server (v1.30.14): "
                              "a kubelet must not be newer than kube-apiserver (Version Skew Policy)")
    assert "put that node's kubelet back to 1.30" in message and message.endswith("nothing was changed "
                                                                                 "(step to 1.31.14)")


def test_a_kubelet_newer_by_a_patch_only_is_not_newer():
    assert decide("1.30.14", "v1.30.2", [("masternode", "v1.30.14")]).status == "ok"


def test_a_node_that_would_fall_outside_the_window_once_the_api_server_is_at_the_step_is_refused():
    # the API server at 1.33 already (a worker left powered off while the control plane moved on): the chain
    # starts at that worker's 1.29, and after any step the API server still runs 1.33: four minors, three allowed
    with pytest.raises(HostError) as refused:
        decide("1.30.14", "v1.33.13", [("masternode", "v1.33.13"), ("storagenodet3500", "v1.29.15")])
    message = refused.value.message
    assert message.startswith("node storagenodet3500 runs kubelet v1.29.15; once the API server runs 1.33.13 (it "
                              "runs v1.33.13 now) that is 4 minors older, and the Version Skew Policy allows 3")
    assert "bring that node to 1.30 or newer first" in message
    assert "vmstation node remove storagenodet3500" in message


def test_the_window_is_judged_against_the_step_target_when_the_api_server_moves_there():
    nodes = [("masternode", "v1.32.13"), ("w", "v1.29.15")]
    assert decide("1.32.13", "v1.32.13", nodes).status == "warn"            # three behind: inside, but far
    with pytest.raises(HostError, match="once the API server runs 1.33.13 .* 4 minors older"):
        decide("1.33.13", "v1.32.13", nodes)


def test_a_node_more_than_one_minor_behind_the_step_but_inside_the_window_is_a_warning():
    step = decide("1.31.14", "v1.31.14", [("masternode", "v1.31.14"), ("w", "v1.29.15")])
    assert step.status == "warn"
    assert step.reason == ("node w runs kubelet v1.29.15, 2 minors behind this step to 1.31.14 (the API server runs "
                           "v1.31.14): inside the Version Skew Policy's window of 3, so the step goes on; its part "
                           "drains it and installs kubelet 1.31.14 over v1.29.15")


def test_every_offending_node_is_named_in_one_refusal():
    with pytest.raises(HostError) as refused:
        decide("1.34.10", "v1.33.13", [("a", "v1.34.10"), ("b", "v1.29.15"), ("c", "v1.33.13")])
    assert "node a runs kubelet v1.34.10, newer" in refused.value.message
    assert "node b runs kubelet v1.29.15; once the API server runs 1.34.10" in refused.value.message
    assert "node c" not in refused.value.message


def test_a_kubelet_older_than_1_25_has_the_narrower_window_of_two():
    assert skew.window_of("v1.24.17") == versions.KUBELET_SKEW_MINORS_BEFORE_1_25 == 2
    assert skew.window_of("v1.25.0") == versions.KUBELET_SKEW_MINORS == 3
    verdict = skew.judge("v1.26.15", [("old", "v1.24.17")], "1.27.16")
    assert verdict.refusals and "the Version Skew Policy allows 2" in verdict.refusals[0]


@pytest.mark.parametrize("fact, words", [
    ("", "no answer from the API server"),                                      # kubectl failed: nothing printed
    ("\n--- nodes\n", "the API server did not answer GET /version"),           # no cluster, or no kubectl
    ("Error from server (Forbidden)\n--- nodes\nmasternode\tv1.29.15\n", "/version is not the JSON it documents"),
    ('{"major": "1"}\n--- nodes\nmasternode\tv1.29.15\n', "/version is not the JSON it documents"),
    ('{"gitVersion": "latest"}\n--- nodes\nmasternode\tv1.29.15\n', "gitVersion 'latest' is not a version"),
    (answer("v1.29.15", [("masternode", "")]), "node masternode: its kubeletVersion '' is not a version"),
    (answer("v1.29.15", [("masternode", "unknown")]), "its kubeletVersion 'unknown' is not a version"),
    (answer("v1.29.15", []), "the API server lists no nodes"),
])
def test_an_answer_that_cannot_be_read_refuses_the_step_rather_than_guessing(fact, words):
    with pytest.raises(HostError) as refused:
        KubeletSkew("1.30.14").decide(fact, frozenset())
    assert refused.value.message.startswith("cannot judge the kubelet version skew before the step to 1.30.14: ")
    assert words in refused.value.message and refused.value.message.endswith("nothing was changed")
