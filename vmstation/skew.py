"""Kubelet version skew before an upgrade step: which nodes the Version Skew Policy refuses, which it only warns of.

Pure: the API server's ``/version`` answer and every node's kubelet version in, a verdict out. The rule is
kubernetes.io "Version Skew Policy" (versions.KUBELET_SKEW_MINORS, with its source): a kubelet must not be newer
than kube-apiserver, and may be up to three minor versions older (two for a kubelet older than 1.25).

Before a step to minor M, the API server will run max(its minor now, M) once the step's control-plane part is done.
A node is refused (nothing changes, the step does not start) when its kubelet is newer than the API server now, or
would be outside the window once the API server runs that version.

A node more than one minor behind the step, but inside the window, is a warning, not a refusal:
- the policy supports it ("Optionally upgrade kubelet instances to 1.N (or they can be left at 1.N-1, 1.N-2, or
  1.N-3)", "Supported component upgrade order", kubelet);
- kubeadm 1.29 and newer tolerate it in `upgrade apply` and `upgrade node` (kubernetes/kubernetes PR #120825:
  "Tolerate this new kubelet skew for the commands init, join and upgrade"); kubeadm's "you cannot skip MINOR
  versions when you upgrade" ("Upgrading kubeadm clusters") is about the control plane, which the chain steps;
- the step's worker part drains that node before its kubelet changes minor, as the policy's note asks ("In-place
  minor version kubelet upgrades are not supported"), and leaves it at the step's version.
The chain starts at the lowest version in the cluster (maintenance.CURRENT_VERSION_SCRIPT), so this only happens
when the API server is already ahead of a node; the warning says so, since it is not the usual one-minor step.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from vmstation import versions

NODES_MARKER = "--- nodes"
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Verdict:
    api_server: str                  # "v1.30.14"
    refusals: tuple[str, ...]        # one sentence per node the step must not start with
    warnings: tuple[str, ...]        # one sentence per node that is far behind but inside the window
    summary: str                     # what was judged, for the step's reason


class Unreadable(ValueError):
    """The cluster's answer could not be read: the step must not start on a guess."""


def parse(answer: str) -> tuple[str, list[tuple[str, str]]]:
    """(API server version, [(node, kubelet version)]) from the probe's answer: /version's JSON, NODES_MARKER,
    then one ``name<TAB>kubeletVersion`` line per node."""
    head, marker, tail = answer.partition(NODES_MARKER)
    if not marker:
        raise Unreadable("no answer from the API server (kubectl get --raw=/version and get nodes printed nothing)")
    if not head.strip():
        raise Unreadable("the API server did not answer GET /version (is the cluster up, and kubectl and "
                         "/etc/kubernetes/admin.conf there?)")
    try:
        git_version = json.loads(head)["gitVersion"]
    except (ValueError, KeyError, TypeError):
        raise Unreadable(f"the API server's /version is not the JSON it documents: {_short(head)!r}") from None
    if not isinstance(git_version, str) or not _VERSION.match(git_version):
        raise Unreadable(f"the API server's gitVersion {git_version!r} is not a version")
    nodes = []
    for line in tail.splitlines():
        if not line.strip():
            continue
        name, _, kubelet = line.strip().partition("\t")
        if not _VERSION.match(kubelet.strip()):
            raise Unreadable(f"node {name or '?'}: its kubeletVersion {kubelet.strip()!r} is not a version")
        nodes.append((name, kubelet.strip()))
    if not nodes:
        raise Unreadable("the API server lists no nodes")
    return git_version, nodes


def judge(api_server: str, nodes: list[tuple[str, str]], to: str) -> Verdict:
    """Every node's kubelet against the API server now and once the step to ``to`` ("1.31.14") is done."""
    now, target = _minor(api_server), _minor(to)
    after = max(now, target)
    after_name = to if target >= now else api_server.lstrip("v")
    refusals, warnings = [], []
    for name, kubelet in nodes:
        minor, window = _minor(kubelet), window_of(kubelet)
        behind = _minors_behind(kubelet, after)
        if minor > now:
            refusals.append(_newer(name, kubelet, api_server))
        elif behind > window:
            refusals.append(_outside(name, kubelet, api_server, after, after_name, behind, window))
        elif target[0] == minor[0] and target[1] - minor[1] > 1:
            warnings.append(_far_behind(name, kubelet, api_server, to, target[1] - minor[1], window))
    listed = ", ".join(f"{name} {kubelet}" for name, kubelet in nodes)
    return Verdict(api_server, tuple(refusals), tuple(warnings), f"API server {api_server}; kubelets: {listed}")


def outside_policy(api_server: str, nodes: list[tuple[str, str]]) -> list[str]:
    """The nodes whose kubelet the Version Skew Policy refuses against the API server as it runs now (what
    `vmstation status` reports); a version that cannot be read is left to the upgrade's preflight."""
    if not _VERSION.match(api_server.strip()):
        return []
    now, found = _minor(api_server), []
    for name, kubelet in nodes:
        if not _VERSION.match(kubelet.strip()):
            continue
        behind, window = _minors_behind(kubelet, now), window_of(kubelet)
        if _minor(kubelet) > now:
            found.append(f"node {name}: kubelet {kubelet} is newer than the API server ({api_server}), which the "
                         "Version Skew Policy forbids")
        elif behind > window:
            found.append(f"node {name}: kubelet {kubelet} is {behind} minors behind the API server ({api_server}); "
                         f"the Version Skew Policy allows {window}")
    return found


def _minors_behind(kubelet: str, api_server_minor: tuple[int, int]) -> int:
    minor = _minor(kubelet)
    return api_server_minor[1] - minor[1] if api_server_minor[0] == minor[0] else 99


def _newer(name: str, kubelet: str, api_server: str) -> str:
    return (f"node {name} runs kubelet {kubelet}, newer than the API server ({api_server}): a kubelet must not be "
            "newer than kube-apiserver (Version Skew Policy); put that node's kubelet back to "
            f"{_name(_minor(api_server))} (the API server's minor) and restart it, then run the upgrade again")


def _outside(name, kubelet, api_server, after, after_name, behind, window) -> str:
    return (f"node {name} runs kubelet {kubelet}; once the API server runs {after_name} (it runs {api_server} now) "
            f"that is {behind} minors older, and the Version Skew Policy allows {window}: bring that node to "
            f"{_name((after[0], after[1] - window))} or newer first (drain it, then kubeadm, `kubeadm upgrade node` "
            f"and kubelet of the API server's minor there), or remove it (vmstation node remove {name}) and join it "
            "again at the cluster's version (deploy-debian)")


def _far_behind(name, kubelet, api_server, to, minors, window) -> str:
    return (f"node {name} runs kubelet {kubelet}, {minors} minors behind this step to {to} (the API server runs "
            f"{api_server}): inside the Version Skew Policy's window of {window}, so the step goes on; its part "
            f"drains it and installs kubelet {to} over {kubelet}")


def window_of(kubelet: str) -> int:
    """How many minors older than kube-apiserver this kubelet may be."""
    return versions.KUBELET_SKEW_MINORS if _minor(kubelet) >= (1, 25) else versions.KUBELET_SKEW_MINORS_BEFORE_1_25


def _minor(version: str) -> tuple[int, int]:
    match = _VERSION.match(version.strip())
    if not match:
        raise Unreadable(f"{version!r} is not a version")
    return int(match[1]), int(match[2])


def _name(minor: tuple[int, int]) -> str:
    return f"{minor[0]}.{minor[1]}"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."
