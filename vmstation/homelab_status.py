"""`vmstation status`: the whole homelab on one screen, fast.

Every host is looked at at once (one thread each): first a TCP look for its SSH banner with a short timeout,
then, if it answered, ONE remote command that prints everything status reads (OS, kernel, kubelet, containerd,
services, pending reboot; on a control plane or first server also the nodes as the cluster sees them, the
sleep record, the idle check's timer and state, and the certificates' expiry). A host that does not answer
the banner is never connected to: the control plane's view and the sleep record say whether it is asleep
(sleep recorded it, or its Node is cordoned and not Ready as sleep leaves it) or down, so a sleeping worker
costs at most BANNER_TIMEOUT, not an SSH connect deadline.

Pure below ``gather``: the script's sections in, a ``HomelabStatus`` out; ``healthy`` decides the exit code
(0 healthy, 1 not). The last run of each target comes from the journals, the warnings from the same facts
preflight judges (support windows, containerd's floor, certificates within 30 days), and a kubelet outside
the Version Skew Policy against the API server (vmstation.skew) is a problem, as the upgrade's preflight says.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from vmstation import certs, rhel, skew, support
from vmstation.facts import new_token, parse_os_release, probe_script, split_sections
from vmstation.inventory import Cluster, Host, Inventory

BANNER_TIMEOUT = 0.8          # seconds: a host on the LAN sends its SSH banner in milliseconds
CONNECT_DEADLINE = 10.0       # seconds to log in to a host whose banner was seen
COMMAND_DEADLINE = 30.0
SLEEP_STATE = "/var/lib/vmstation/sleep-state.json"
IDLE_STATE = "/var/lib/vmstation/idle-state.json"
IDLE_TIMER = "vmstation-idle-check.timer"
KUBECTL = {"kubeadm": "kubectl --kubeconfig=/etc/kubernetes/admin.conf",
           "rke2": f"{rhel.RKE2_KUBECTL} --kubeconfig {rhel.RKE2_KUBECONFIG}"}
LEADER_ROLE = {"kubeadm": "control-plane", "rke2": "server"}

HOST_PROBES = {
    "os-release": "cat /etc/os-release",
    "kernel": "uname -r",
    "kubelet": "kubelet --version || /var/lib/rancher/rke2/bin/kubelet --version",
    "containerd": "containerd --version || /var/lib/rancher/rke2/bin/containerd --version",
    "reboot": "if [ -e /var/run/reboot-required ]; then echo yes; elif command -v needs-restarting >/dev/null; "
              "then needs-restarting -r >/dev/null && echo no || echo yes; else echo no; fi",
    "services": "for s in kubelet containerd rke2-server rke2-agent; do "
                "printf '%s %s\\n' \"$s\" \"$(systemctl is-active \"$s\" 2>/dev/null || true)\"; done",
}


def leader_probes(kind: str) -> dict[str, str]:
    """What the control plane (or the first RKE2 server) adds: the cluster's view, sleep, idle, certificates."""
    probes = {"nodes": f"{KUBECTL[kind]} get nodes -o json --request-timeout=5s",
              "api-version": f"{KUBECTL[kind]} get --raw=/version --request-timeout=5s"}
    if kind == "kubeadm":
        probes.update({
            "sleep-record": f"cat {SLEEP_STATE}",
            "idle-timer": f"systemctl show {IDLE_TIMER} -p ActiveState -p NextElapseUSecRealtime -p LastTriggerUSec",
            "idle-state": f"cat {IDLE_STATE}",
            "certs": certs.kubeadm_check_command(),
        })
    else:
        probes["certs"] = certs.rke2_enddates_command()
    return probes


# -- the model ---------------------------------------------------------------------------------------------


@dataclass
class NodeView:
    """One Node as the cluster's API sees it (``kubectl get nodes -o json``)."""

    ready: str                     # "True" | "False" | "Unknown"
    unschedulable: bool
    kubelet: str = ""
    containerd: str = ""
    kernel: str = ""
    os: str = ""


@dataclass
class HostStatus:
    name: str
    cluster: str
    role: str
    state: str                     # Ready | NotReady | asleep | down | unreachable | up (not a node)
    reason: str = ""
    kubelet: str = ""
    containerd: str = ""
    kernel: str = ""
    os: str = ""
    reboot_required: bool | None = None
    services: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ClusterStatus:
    name: str
    kind: str
    version: str
    leader: str
    hosts: list[HostStatus]
    certificates: str = "unknown"          # ok | warn | expired | unknown
    certificates_note: str = ""
    idle_check: str = ""                   # kubeadm: the timer's state and next run, idle since


@dataclass
class LastRun:
    target: str
    started: str
    status: str                            # done | failed | interrupted | crashed | running-or-died
    exit_code: int | None
    journal: str


@dataclass
class HomelabStatus:
    clusters: list[ClusterStatus]
    runs: list[LastRun]
    problems: list[str]
    warnings: list[str]
    seconds: float = 0.0

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_json(self) -> str:
        data = asdict(self)
        data["healthy"] = self.healthy
        return json.dumps(data, indent=2, sort_keys=True)


@dataclass
class Look:
    """What one host answered (or why it did not)."""

    host: Host
    answered: bool
    sections: dict[str, str] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


# -- gathering: every host at once ----------------------------------------------------------------------------


def gather(inventory: Inventory, options, password_for, journal_dir: Path | None = None,
           now: datetime | None = None) -> HomelabStatus:
    """Look at every host in parallel and judge. ``password_for(host)``: its sudo password (or None)."""
    started = time.monotonic()
    leaders = {leader_of(inventory, c).name: c.kind for c in inventory.clusters if leader_of(inventory, c)}
    with ThreadPoolExecutor(max_workers=max(1, len(inventory.hosts))) as pool:
        futures = [pool.submit(look_at, h, options, password_for, leaders.get(h.name)) for h in inventory.hosts]
        looks = {f.result().host.name: f.result() for f in futures}
    status = judge(inventory, looks, now or datetime.now(timezone.utc))
    status.runs = last_runs(journal_dir) if journal_dir else []
    status.seconds = time.monotonic() - started
    return status


def look_at(host: Host, options, password_for, leader_kind: str | None) -> Look:
    """The banner first (short), then one command with every probe; never an SSH connect to a silent host."""
    from dataclasses import replace

    from vmstation.errors import VmstationError
    from vmstation.transport import connect, ssh_answers

    started = time.monotonic()
    try:
        if not ssh_answers(host.address, host.ssh_port, connect_timeout=BANNER_TIMEOUT, read_timeout=BANNER_TIMEOUT):
            return Look(host, False, error="no SSH banner", seconds=time.monotonic() - started)
        probes = dict(HOST_PROBES, **(leader_probes(leader_kind) if leader_kind else {}))
        token = new_token()
        connection = connect(host, replace(options, deadline=CONNECT_DEADLINE), password_for(host))
        try:
            result = connection.run(probe_script(list(probes.values()), token), check=False, timeout=COMMAND_DEADLINE)
        finally:
            connection.close()
        answers = split_sections(result.stdout, token, len(probes))
        return Look(host, True, dict(zip(probes, answers, strict=True)), seconds=time.monotonic() - started)
    except VmstationError as exc:
        return Look(host, False, error=getattr(exc, "message", str(exc)), seconds=time.monotonic() - started)


def leader_of(inventory: Inventory, cluster: Cluster) -> Host | None:
    hosts = [h for h in inventory.hosts_of(cluster.name) if h.has_role(LEADER_ROLE[cluster.kind])]
    return hosts[0] if hosts else None


# -- judging: pure ---------------------------------------------------------------------------------------------


def judge(inventory: Inventory, looks: dict[str, Look], now: datetime) -> HomelabStatus:
    problems: list[str] = []
    warnings: list[str] = []
    clusters = [_cluster_status(inventory, c, looks, now, problems, warnings) for c in inventory.clusters]
    return HomelabStatus(clusters, [], problems, warnings)


def _cluster_status(inventory, cluster: Cluster, looks, now, problems, warnings) -> ClusterStatus:
    leader = leader_of(inventory, cluster)
    view = looks.get(leader.name) if leader else None
    nodes = parse_nodes(view.sections.get("nodes", "")) if view and view.answered else {}
    asleep = sleep_recorded(view.sections.get("sleep-record", "")) if view and view.answered else set()
    notice = (support.kubernetes_notice if cluster.kind == "kubeadm" else support.rke2_notice)(cluster.version,
                                                                                                now.date())
    if notice:
        warnings.append(f"{cluster.name}: {notice}")
    hosts = [_host_status(h, cluster, looks[h.name], nodes, asleep, view, problems, warnings)
             for h in inventory.hosts_of(cluster.name)]
    status = ClusterStatus(cluster.name, cluster.kind, cluster.version, leader.name if leader else "", hosts)
    running = sorted({h.kubelet.lstrip("v") for h in hosts if h.kubelet and cluster.kind == "kubeadm"})
    if running and running != [cluster.version.lstrip("v")]:
        warnings.append(f"{cluster.name}: kubelets run {', '.join(running)} but hosts.toml says version = "
                        f"\"{cluster.version}\" (after an upgrade, set it to what runs: a deploy installs that "
                        "version)")
    if view and view.answered:
        problems += [f"{cluster.name}: {sentence}" for sentence in skew.outside_policy(
            api_server_version(view.sections.get("api-version", "")),
            [(name, node.kubelet) for name, node in nodes.items()])]
        found = (certs.parse_check_expiration if cluster.kind == "kubeadm" else certs.parse_enddates)(
            view.sections.get("certs", ""))
        status.certificates, status.certificates_note = certs.verdict(found, now, kind=cluster.kind)
        if status.certificates == "expired":
            problems.append(f"{cluster.name}: certificates: {status.certificates_note}")
        elif status.certificates == "warn":
            warnings.append(f"{cluster.name}: certificates: {status.certificates_note}")
        if cluster.kind == "kubeadm":
            status.idle_check = idle_check(view.sections.get("idle-timer", ""), view.sections.get("idle-state", ""))
    return status


def _host_status(host: Host, cluster: Cluster, look: Look, nodes: dict[str, NodeView], asleep: set[str],
                 view: Look | None, problems: list[str], warnings: list[str]) -> HostStatus:
    role = next((r for r in host.roles if r in ("control-plane", "worker", "server", "agent")), "")
    node = nodes.get(host.name)
    status = HostStatus(host.name, cluster.name, role, "", seconds=round(look.seconds, 3))
    if node:
        status.kubelet, status.containerd = node.kubelet, node.containerd
        status.kernel, status.os = node.kernel, node.os
    if not look.answered:
        status.state, status.reason = _silent(host, node, asleep, look, view)
        if status.state != "asleep":
            problems.append(f"{host.name}: {status.state}: {status.reason}")
        return status
    _read_host(status, look.sections)
    if node is None:
        status.state = "up (not a node)"
        status.reason = "the cluster does not list it" if view and view.answered else "no view of the cluster"
        if view and view.answered and nodes:
            problems.append(f"{host.name}: answers SSH but is not a node of {cluster.name}")
    else:
        status.state = "Ready" if node.ready == "True" else "NotReady"
        if status.state == "NotReady":
            problems.append(f"{host.name}: NotReady (kubelet {status.services.get('kubelet', '?')})")
    if status.reboot_required:
        warnings.append(f"{host.name}: a reboot is pending")
    if cluster.kind == "kubeadm" and status.containerd:
        from vmstation.phases.debian import containerd_version_warning

        floor = containerd_version_warning(status.containerd, cluster.version)
        if floor:
            warnings.append(f"{host.name}: {floor}")
    return status


def _silent(host: Host, node: NodeView | None, asleep: set[str], look: Look, view: Look | None) -> tuple[str, str]:
    if host.name in asleep:
        return "asleep", "the sleep record lists it"
    if node and node.unschedulable and node.ready != "True" and not host.always_on:
        return "asleep", "cordoned and not Ready, as sleep leaves it"
    if look.error == "no SSH banner":
        seen = "" if view is None or not view.answered else \
            (f"; its Node is {'Ready' if node.ready == 'True' else 'not Ready'}" if node else "")
        return "down", f"no SSH banner within {BANNER_TIMEOUT:g} s and no sleep record{seen}"
    return "unreachable", look.error


def _read_host(status: HostStatus, sections: dict[str, str]) -> None:
    release = parse_os_release(sections.get("os-release", ""))
    status.os = release.get("PRETTY_NAME", status.os)
    status.kernel = sections.get("kernel", "").strip() or status.kernel
    status.kubelet = _word_after(sections.get("kubelet", ""), "Kubernetes") or status.kubelet
    status.containerd = _containerd_version(sections.get("containerd", "")) or status.containerd
    status.reboot_required = sections.get("reboot", "").strip() == "yes"
    status.services = dict(line.split(None, 1) for line in sections.get("services", "").splitlines()
                           if len(line.split(None, 1)) == 2)


def parse_nodes(text: str) -> dict[str, NodeView]:
    """``kubectl get nodes -o json`` -> name -> NodeView; {} for anything that is not such a list."""
    try:
        items = json.loads(text).get("items", [])
    except (ValueError, AttributeError):
        return {}
    nodes = {}
    for item in items if isinstance(items, list) else []:
        meta, spec, state = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
        ready = next((c.get("status", "Unknown") for c in state.get("conditions") or [] if c.get("type") == "Ready"),
                     "Unknown")
        info = state.get("nodeInfo") or {}
        runtime = str(info.get("containerRuntimeVersion", ""))
        nodes[meta.get("name", "")] = NodeView(
            ready, bool(spec.get("unschedulable")), str(info.get("kubeletVersion", "")),
            runtime.removeprefix("containerd://"), str(info.get("kernelVersion", "")), str(info.get("osImage", "")))
    return nodes


def api_server_version(text: str) -> str:
    """``gitVersion`` of the API server's ``GET /version`` answer ("v1.30.14"); "" for anything else."""
    try:
        version = json.loads(text).get("gitVersion", "")
    except (ValueError, AttributeError):
        return ""
    return version if isinstance(version, str) else ""


def sleep_recorded(text: str) -> set[str]:
    """The nodes the sleep record says sleep cordoned (and wake has not restored yet)."""
    from vmstation.errors import InputError
    from vmstation.power.sleep_state import loads

    if not text.strip():
        return set()
    try:
        return set(loads(text, SLEEP_STATE).cordoned)
    except InputError:
        return set()


def idle_check(timer: str, state: str) -> str:
    """``active, next 2026-11-28 12:00:00 UTC; idle since ...`` from systemctl show and the idle state file."""
    values = dict(line.split("=", 1) for line in timer.splitlines() if "=" in line)
    active = values.get("ActiveState", "") or "not installed"
    words = [f"timer {active}"]
    if values.get("NextElapseUSecRealtime"):
        words.append(f"next run {values['NextElapseUSecRealtime']}")
    try:
        since = json.loads(state).get("idle_since") if state.strip() else None
    except (ValueError, AttributeError):
        since = None
    words.append(f"idle since {since}" if since else "not idle")
    return ", ".join(words)


def _word_after(text: str, word: str) -> str:
    parts = text.split()
    return parts[parts.index(word) + 1].lstrip("v") if word in parts and parts.index(word) + 1 < len(parts) else ""


def _containerd_version(text: str) -> str:
    """``containerd containerd.io 1.7.22 7f7fdf5...`` or ``containerd github.com/... v2.0.0 ...`` -> the version."""
    for word in text.split():
        if word[:1].isdigit() or (word[:1] == "v" and word[1:2].isdigit()):
            return word.lstrip("v").split("~")[0]
    return ""


# -- the journal: the last run of each target ----------------------------------------------------------------


def last_runs(directory: Path) -> list[LastRun]:
    """The newest applying run of each target and how it ended."""
    from vmstation.journal import read_entries

    if not directory.is_dir():
        return []
    newest: dict[str, Path] = {}
    for path in sorted(directory.glob("*.jsonl")):
        if path.name.endswith(".plan.jsonl"):
            continue
        target = path.stem.split("-", 3)[-1] if path.stem.count("-") >= 3 else path.stem
        newest[target] = path
    runs = []
    for target, path in sorted(newest.items()):
        entries = read_entries(path)
        end = entries[-1] if entries and entries[-1].get("run") == "end" else {}
        stamp = path.name[:15]
        started = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
        runs.append(LastRun(target, started, end.get("status", "running or died"), end.get("exit_code"),
                            str(path)))
    return runs


# -- the screen -----------------------------------------------------------------------------------------------


def format_status(status: HomelabStatus) -> str:
    """The screen; everything a host said passes report.terminal_safe (escape sequences shown as text)."""
    from vmstation.report import terminal_safe

    return terminal_safe(_screen(status))


def _screen(status: HomelabStatus) -> str:
    lines: list[str] = []
    for cluster in status.clusters:
        lines.append(f"{cluster.name} ({cluster.kind} {cluster.version}, control plane {cluster.leader or '-'})")
        lines.append(f"  certificates: {cluster.certificates}" + (f": {cluster.certificates_note}"
                                                                  if cluster.certificates_note else ""))
        if cluster.idle_check:
            lines.append(f"  idle check: {cluster.idle_check}")
        rows = [("host", "role", "state", "kubelet", "containerd", "kernel", "os", "reboot")]
        for h in cluster.hosts:
            rows.append((h.name, h.role, h.state, h.kubelet or "-", h.containerd or "-", h.kernel or "-",
                         h.os or "-", {True: "pending", False: "no", None: "-"}[h.reboot_required]))
        lines += ["  " + line for line in _table(rows)]
        lines += [f"  {h.name}: {h.reason}" for h in cluster.hosts if h.reason]
    if status.runs:
        lines.append("last runs:")
        lines += ["  " + line for line in _table([("target", "started", "ended", "exit")] + [
            (r.target, r.started, r.status, "-" if r.exit_code is None else str(r.exit_code)) for r in status.runs])]
    lines += [f"warning: {w}" for w in status.warnings]
    lines += [f"PROBLEM: {p}" for p in status.problems]
    lines.append(("healthy" if status.healthy else f"not healthy: {len(status.problems)} problems")
                 + f" ({status.seconds:.1f} s)")
    return "\n".join(lines) + "\n"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
