"""What sleep recorded, so that wake can undo exactly that.

The older system scaled Deployments down and recorded nothing, so wake could not
bring them back. Here sleep first writes a record on masternode (atomically:
temporary file, fsync, rename) of

- every Deployment and StatefulSet it will scale to zero, with its replica count;
- the workers it cordons (only those that were schedulable: a node the operator
  cordoned by hand stays cordoned after wake);

and wake reads it back, uncordons those nodes, scales those workloads back, and
keeps the record as ``<state>.restored`` (nothing is deleted for good).

A second sleep before a wake must not overwrite a count with the zero it set
itself: ``merge`` keeps the earlier count for anything already at zero.

Standard library only: this module runs on masternode as

    python3 -m vmstation.power.sleep_state record --state PATH --nodes a,b [--keep-namespace NS ...]
    python3 -m vmstation.power.sleep_state scale-down --state PATH
    python3 -m vmstation.power.sleep_state restore --state PATH

each with ``--kubeconfig`` (default /etc/kubernetes/admin.conf).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vmstation.atomic import write_atomically
from vmstation.errors import InputError

ADMIN_CONF = "/etc/kubernetes/admin.conf"
STATE_PATH = "/var/lib/vmstation/sleep-state.json"
KEEP_NAMESPACES = ("kube-system", "kube-flannel", "monitoring")
KEEP_LABEL = "vmstation.io/sleep"        # a workload labelled vmstation.io/sleep=keep is never scaled down
SCALED_KINDS = ("Deployment", "StatefulSet")


@dataclass(frozen=True)
class Workload:
    kind: str          # "Deployment" | "StatefulSet"
    namespace: str
    name: str
    replicas: int      # the count before sleep: what wake restores

    @property
    def ref(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


@dataclass(frozen=True)
class SleepState:
    slept_at: str                       # ISO 8601, UTC
    workloads: tuple[Workload, ...]
    cordoned: tuple[str, ...]           # nodes sleep cordoned (they were schedulable before)


def record(previous: SleepState | None, listing: dict, nodes: dict, sleepers: list[str],
           keep_namespaces=KEEP_NAMESPACES, now: datetime | None = None) -> SleepState:
    """The record to write: what to scale down now, merged with an earlier record not yet restored.

    ``listing``: ``kubectl get deployments,statefulsets -A -o json``; ``nodes``: ``kubectl get nodes -o json``.
    """
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    fresh = SleepState(slept_at=moment.isoformat().replace("+00:00", "Z"),
                       workloads=workloads_to_scale(listing, keep_namespaces),
                       cordoned=schedulable(nodes, sleepers))
    return merge(previous, fresh)


def workloads_to_scale(listing: dict, keep_namespaces=KEEP_NAMESPACES) -> tuple[Workload, ...]:
    """Deployments and StatefulSets outside the kept namespaces, not labelled keep, with their replicas."""
    found = []
    for item in _items(listing, "workloads"):
        meta, spec = item.get("metadata") or {}, item.get("spec") or {}
        if item.get("kind") not in SCALED_KINDS or meta.get("namespace") in keep_namespaces:
            continue
        if (meta.get("labels") or {}).get(KEEP_LABEL) == "keep":
            continue
        replicas = spec.get("replicas", 1)
        found.append(Workload(item["kind"], meta.get("namespace", "default"), meta["name"], int(replicas)))
    return tuple(sorted(found, key=lambda w: (w.namespace, w.kind, w.name)))


def schedulable(nodes: dict, names: list[str]) -> tuple[str, ...]:
    """Those of ``names`` that are not cordoned now (so sleep's cordon is the only one wake should undo)."""
    state = {(n.get("metadata") or {}).get("name"): bool((n.get("spec") or {}).get("unschedulable"))
             for n in _items(nodes, "nodes")}
    return tuple(name for name in names if name in state and not state[name])


def merge(previous: SleepState | None, fresh: SleepState) -> SleepState:
    """Keep earlier counts for workloads already scaled to zero, and earlier cordons, until a wake restores them."""
    if previous is None:
        return fresh
    earlier = {(w.kind, w.namespace, w.name): w for w in previous.workloads}
    workloads = {(w.kind, w.namespace, w.name): w for w in fresh.workloads}
    for key, old in earlier.items():
        now = workloads.get(key)
        if now is None or now.replicas == 0:
            workloads[key] = old
    kept = tuple(w for w in sorted(workloads.values(), key=lambda w: (w.namespace, w.kind, w.name))
                 if w.replicas > 0)
    cordoned = tuple(dict.fromkeys(previous.cordoned + fresh.cordoned))
    return SleepState(previous.slept_at, kept, cordoned)


# ---------------------------------------------------------------------------
# The file: JSON, checked on read, written atomically
# ---------------------------------------------------------------------------


def dumps(state: SleepState) -> str:
    return json.dumps({"slept_at": state.slept_at, "cordoned": list(state.cordoned),
                       "workloads": [{"kind": w.kind, "namespace": w.namespace, "name": w.name,
                                      "replicas": w.replicas} for w in state.workloads]},
                      indent=2, sort_keys=True) + "\n"


def loads(text: str, where: str) -> SleepState:
    """Parse a record; an InputError names the file and the key that is wrong."""
    try:
        data = json.loads(text)
    except ValueError:
        raise InputError(f"{where}: not JSON") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object")
    slept_at, cordoned, workloads = data.get("slept_at"), data.get("cordoned"), data.get("workloads")
    if not isinstance(slept_at, str):
        raise InputError(f"{where}: key 'slept_at': expected an ISO 8601 time")
    if not isinstance(cordoned, list) or not all(isinstance(n, str) for n in cordoned):
        raise InputError(f"{where}: key 'cordoned': expected a list of node names")
    if not isinstance(workloads, list):
        raise InputError(f"{where}: key 'workloads': expected a list")
    return SleepState(slept_at, tuple(_workload(w, where, i) for i, w in enumerate(workloads)), tuple(cordoned))


def load(path: str | os.PathLike) -> SleepState | None:
    """The record at ``path``, or None when sleep recorded nothing (or wake already restored it)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the sleep record ({exc.strerror})") from None
    return loads(text, str(path))


def save(path: str | os.PathLike, state: SleepState) -> None:
    """Written atomically: a crash leaves the old record or the new one."""
    write_atomically(path, dumps(state).encode())


def _workload(value, where: str, index: int) -> Workload:
    key = f"workloads[{index}]"
    if not isinstance(value, dict):
        raise InputError(f"{where}: key {key!r}: expected an object")
    if value.get("kind") not in SCALED_KINDS:
        raise InputError(f"{where}: key '{key}.kind': expected one of {', '.join(SCALED_KINDS)}")
    for field in ("namespace", "name"):
        if not isinstance(value.get(field), str) or not value[field]:
            raise InputError(f"{where}: key '{key}.{field}': expected a non-empty string")
    replicas = value.get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise InputError(f"{where}: key '{key}.replicas': expected a whole number >= 0")
    return Workload(value["kind"], value["namespace"], value["name"], replicas)


def _items(listing: dict, what: str) -> list:
    items = listing.get("items") if isinstance(listing, dict) else None
    if not isinstance(items, list):
        raise InputError(f"kubectl {what} listing: not a Kubernetes list")
    return items


# ---------------------------------------------------------------------------
# On masternode: record, scale down, restore (kubectl with the admin kubeconfig)
# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m vmstation.power.sleep_state",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("record", "scale-down", "restore"))
    parser.add_argument("--state", default=STATE_PATH, help="the record file")
    parser.add_argument("--kubeconfig", default=ADMIN_CONF)
    parser.add_argument("--nodes", default="", help="record: the workers sleep cordons (comma-separated)")
    parser.add_argument("--keep-namespace", action="append", help="record: never scale down in this namespace")
    args = parser.parse_args(argv)
    kubectl = Kubectl(args.kubeconfig)
    try:
        if args.action == "record":
            _record(args, kubectl)
        elif args.action == "scale-down":
            _scale_down(args.state, kubectl)
        else:
            _restore(args.state, kubectl)
    except InputError as exc:
        print(f"vmstation sleep record: {exc}", file=sys.stderr)
        return 2
    except subprocess.SubprocessError as exc:
        print(f"vmstation sleep record: {exc}", file=sys.stderr)
        return 1
    return 0


class Kubectl:
    """kubectl with one kubeconfig; a failure raises SubprocessError with kubectl's last line."""

    def __init__(self, kubeconfig: str):
        self.argv = ["kubectl", "--kubeconfig", kubeconfig]

    def json(self, *args: str) -> dict:
        return json.loads(self.run(*args, "-o", "json"))

    def run(self, *args: str) -> str:
        done = subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise subprocess.SubprocessError(f"kubectl {' '.join(args[:3])} exited {done.returncode}: {detail}")
        return done.stdout


def _record(args, kubectl: Kubectl) -> None:
    sleepers = [n for n in args.nodes.split(",") if n]
    state = record(load(args.state), kubectl.json("get", "deployments,statefulsets", "--all-namespaces"),
                   kubectl.json("get", "nodes"), sleepers, tuple(args.keep_namespace or KEEP_NAMESPACES))
    save(args.state, state)
    print(f"recorded {len(state.workloads)} workloads and {len(state.cordoned)} cordons in {args.state}")


def _scale_down(path: str, kubectl: Kubectl) -> None:
    state = load(path)
    if state is None:
        raise InputError(f"{path}: no sleep record: refusing to scale anything down without one")
    for w in state.workloads:
        kubectl.run("scale", "--namespace", w.namespace, w.ref, "--replicas=0")
        print(f"scaled {w.namespace}/{w.ref} to 0 (was {w.replicas})")


def _restore(path: str, kubectl: Kubectl) -> None:
    state = load(path)
    if state is None:
        print(f"{path}: no sleep record: nothing to restore")
        return
    for node in state.cordoned:
        kubectl.run("uncordon", node)
        print(f"uncordoned {node}")
    for w in state.workloads:
        try:
            kubectl.run("scale", "--namespace", w.namespace, w.ref, f"--replicas={w.replicas}")
        except subprocess.SubprocessError as exc:
            if "NotFound" not in str(exc):
                raise
            print(f"{w.namespace}/{w.ref} no longer exists: not restored")
            continue
        print(f"scaled {w.namespace}/{w.ref} back to {w.replicas}")
    os.replace(path, f"{path}.restored")


if __name__ == "__main__":
    sys.exit(main())
