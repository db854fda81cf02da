"""Power: Wake-on-LAN armed for good, the scheduled idle check, and the sleep and wake targets.

    power.tools      the stdlib-only power modules on the control plane (/usr/local/lib/vmstation)
    debian.power     (in deploy-debian) workers: WakeOnLan=magic in a .link file, ethtool, and a watch that
                     powers the worker off when the scheduled check asked for it; control plane: the idle
                     check's config, the Jellyfin key (0600), a systemd service and timer
    sleep.check      the idle policy, run on the control plane without moving its idle clock
    sleep.drain      record replica counts and cordons, cordon, drain, scale down (kubectl, admin.conf)
    sleep.power-off  arm WoL now (ethtool, a belt to the .link file), then shut down or suspend
    sleep.record     the control plane waits until each worker stops answering, then records it asleep
    wake.send        magic packets sent from the control plane (same segment as the workers)
    wake.rejoin      nodes Ready, sleep requests cleared, cordons and replica counts restored

Every sleep and wake event (start, seen down, packet sent, answered with its time-to-wake) and each
scheduled idle check's decision land in node-exporter's textfile directory on the control plane
(``vmstation.power.metrics``), where the Grafana dashboards read them.

Targets: ``sleep`` (drain and power off), ``sleep-check``, ``wake``. ``vmstation.power.cycle``
runs them; the waits for a woken host's SSH happen on the operator's machine.

Why the scheduled sleep does not SSH from masternode into the workers: that would need a
key and known host keys for workers on masternode. Instead masternode annotates the drained
node (``vmstation.io/sleep-requested=<epoch>``) and the worker's own timer, reading its Node
with the kubelet's credentials, arms WoL and powers itself off once per request.

On hosts without a cluster (the test boxes) every kubectl step is a skip with its reason.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from vmstation.context import HostContext
from vmstation.graph import Phase, Target, hosts_of_kind, hosts_with_role
from vmstation.handles import Capture
from vmstation.inventory import Host, Inventory
from vmstation.operations import (CHANGE, OK, SKIP, Check, Command, Directory, File, Operation, Package, Service,
                                  Step, sh)
from vmstation.power import metrics, sleep_state
from vmstation.values import url_host

LIB_DIR = "/usr/local/lib/vmstation"
IDLE_CONFIG = "/etc/vmstation/idle.json"
JELLYFIN_KEY_FILE = "/etc/vmstation/jellyfin-api-key"
IDLE_STATE = "/var/lib/vmstation/idle-state.json"
SLEEP_STATE = sleep_state.STATE_PATH
ADMIN_CONF = sleep_state.ADMIN_CONF
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
SCHEDULED_SLEEP = "/usr/local/sbin/vmstation-scheduled-sleep"
SLEEP_WATCH = "/usr/local/sbin/vmstation-sleep-if-requested"
SLEEP_HANDLED = "/var/lib/vmstation/sleep-request-handled"
LINK_FILE = "/etc/systemd/network/50-vmstation-wol.link"
UNIT_DIR = "/etc/systemd/system"
IDLE_UNIT = "vmstation-idle-check"
WATCH_UNIT = "vmstation-sleep-watch"
SLEEP_REQUEST = "vmstation.io/sleep-requested"
MODULES = ("__init__.py", "atomic.py", "errors.py", "netguard.py", "power/__init__.py", "power/idle.py",
           "power/jellyfin.py", "power/metrics.py", "power/sleep_state.py")
PACKAGE_DIR = Path(__file__).resolve().parent.parent
DRAIN_TIMEOUT = 300
READY_TIMEOUT = 600
POWER_OFF_DELAY = 2          # seconds: the SSH session that asked must close first
NODE_EXPORTER_PORT = 9100
LIMITED_BROADCAST = "255.255.255.255"

# What the power phases capture for vmstation.power.cycle (it reads them with RunContext.captured).
SENT = Capture("power.sent")             # what the sender printed, one line per packet
DECISION = Capture("power.decision")     # the idle check's JSON line

control_planes = hosts_with_role("kubeadm", "control-plane")
kubeadm_hosts = hosts_of_kind("kubeadm")


def sleepers(inventory: Inventory) -> tuple[Host, ...]:
    """The workers that sleep: every worker of a kubeadm cluster that is not always on."""
    return tuple(h for h in hosts_with_role("kubeadm", "worker")(inventory) if not h.always_on)


def wake_candidates(inventory: Inventory) -> tuple[Host, ...]:
    """Who ``wake`` wakes by default: every host with a MAC that is not always on, the sender excepted."""
    senders = {h.name for h in control_planes(inventory)}
    return tuple(h for h in inventory.hosts if h.mac and not h.always_on and h.name not in senders)


# ---------------------------------------------------------------------------------------------
# An operation for kubectl steps: a skip with its reason where there is no cluster
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterStep(Operation):
    """A kubectl step on the control plane; skipped (never reported done) where no cluster runs."""

    script: str
    description: str
    kubeconfig: str = ADMIN_CONF

    @property
    def label(self) -> str:
        return f"kubectl: {self.description}"

    def probe(self, detail: bool) -> str:
        return sh("if [ -r {} ] && command -v kubectl >/dev/null; then echo cluster; else echo no-cluster; fi",
                  self.kubeconfig)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        if fact.strip() != "cluster":
            return Step(self.label, SKIP, f"no Kubernetes cluster here ({self.kubeconfig} or kubectl missing)")
        return Step(self.label, CHANGE, "cluster step", commands=(self.script,))


@dataclass(frozen=True)
class WakeOnLanArmed(Operation):
    """``ethtool -s IFACE wol g`` now: the .link file arms the NIC at boot; this covers the boot in between."""

    interface: str | None

    @property
    def label(self) -> str:
        return f"wake-on-lan armed on {self.interface or '(no interface named)'}"

    def probe(self, detail: bool) -> str:
        if not self.interface:
            return ""
        return sh("if ! command -v ethtool >/dev/null; then echo no-ethtool; "
                  "else ethtool {} 2>/dev/null | grep 'Wake-on:' || echo no-wol; fi", self.interface)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        lines = [line.strip() for line in fact.splitlines() if line.strip()]
        if not self.interface:
            return Step(self.label, SKIP, "the inventory names no interface for this host (key 'interface')")
        if not lines or lines[0] in ("no-ethtool", "no-wol"):
            why = "ethtool is not installed" if lines and lines[0] == "no-ethtool" else "the NIC reports no Wake-on"
            return Step(self.label, SKIP, f"{why}; relying on the .link file")
        supported = next((line for line in lines if line.startswith("Supports Wake-on:")), "")
        if "g" not in supported.partition(":")[2]:
            return Step(self.label, SKIP, f"{self.interface} does not support magic packets ({supported})")
        if any(line.startswith("Wake-on:") and "g" in line.partition(":")[2] for line in lines):
            return Step(self.label, OK, "already armed (Wake-on: g)")
        return Step(self.label, CHANGE, "not armed", commands=(sh("ethtool -s {} wol g", self.interface),))


# ---------------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------------


def power_tools(ctx: HostContext):
    """The stdlib-only modules the scheduled check and the sleep record run from."""
    for module in MODULES:
        yield File(f"{LIB_DIR}/vmstation/{module}", (PACKAGE_DIR / module).read_text(encoding="utf-8"),
                   source=f"vmstation/{module}")


def debian_power(ctx: HostContext):
    # node-exporter reads this directory on every node (--collector.textfile.directory); vmstation writes
    # into it on the control plane only, but a missing directory would be a scrape error everywhere else.
    yield Directory(metrics.TEXTFILE_DIR)
    if ctx.host.has_role("control-plane"):
        yield from _scheduled_check(ctx)
    elif ctx.host in sleepers(ctx.inventory):
        yield from _worker_wake_on_lan(ctx)


def _jellyfin_key_reference(inventory, host) -> tuple[str, ...]:
    """What debian.power reads from the vault: the Jellyfin key it places on the control plane."""
    key = inventory.power.jellyfin_api_key
    return (key,) if key and host.has_role("control-plane") else ()


def _worker_wake_on_lan(ctx: HostContext):
    yield Package(("ethtool",), manager="dnf" if ctx.host.os_family == "rhel" else "apt")
    if ctx.host.mac:
        yield File(LINK_FILE, ctx.render("system/50-vmstation-wol.link.j2"), source="system/50-vmstation-wol.link.j2")
    yield File(SLEEP_WATCH, ctx.render("power/sleep-if-requested.sh.j2", node=shlex.quote(ctx.host.name),
                                       kubelet_conf=shlex.quote(KUBELET_CONF), handled=shlex.quote(SLEEP_HANDLED),
                                       annotation=SLEEP_REQUEST.replace(".", "\\."),
                                       arm=_arm_command(ctx.host), power_off=_power_off_verb(ctx.host)),
               mode="0755", source="power/sleep-if-requested.sh.j2")
    service = File(f"{UNIT_DIR}/{WATCH_UNIT}.service", ctx.render("power/sleep-watch.service.j2", script=SLEEP_WATCH),
                   source="power/sleep-watch.service.j2")
    timer = File(f"{UNIT_DIR}/{WATCH_UNIT}.timer", ctx.render("power/sleep-watch.timer.j2"),
                 source="power/sleep-watch.timer.j2")
    yield service
    yield timer
    yield Service(f"{WATCH_UNIT}.timer", daemon_reload=True, restart_on=(timer, service))


def _scheduled_check(ctx: HostContext):
    power = ctx.inventory.power
    yield File(IDLE_CONFIG, idle_config_json(ctx.inventory))
    if power.jellyfin_api_key:
        key = "" if ctx.run.secrets is None else ctx.run.secret(power.jellyfin_api_key).reveal()
        yield File(JELLYFIN_KEY_FILE, key + "\n", mode="0600", secret=True)
    workers = sleepers(ctx.inventory)
    commands = [power_event("sleep-start", workers)]
    commands += [script for _, script in sleep_sequence([h.name for h in workers], request=True)]
    if workers:
        commands.append(power_event("asleep", workers, down=True))
    yield File(SCHEDULED_SLEEP, ctx.render("power/scheduled-sleep.sh.j2", lib_dir=shlex.quote(LIB_DIR),
                                           config=shlex.quote(IDLE_CONFIG), state=shlex.quote(IDLE_STATE),
                                           textfile=shlex.quote(metrics.IDLE_TEXTFILE),
                                           sleep_commands=commands),
               mode="0755", source="power/scheduled-sleep.sh.j2")
    service = File(f"{UNIT_DIR}/{IDLE_UNIT}.service", ctx.render("power/idle-check.service.j2",
                                                                 script=SCHEDULED_SLEEP),
                   source="power/idle-check.service.j2")
    timer = File(f"{UNIT_DIR}/{IDLE_UNIT}.timer", ctx.render("power/idle-check.timer.j2",
                                                             on_calendar=power.check_interval),
                 source="power/idle-check.timer.j2")
    yield service
    yield timer
    yield Service(f"{IDLE_UNIT}.timer", daemon_reload=True, restart_on=(timer, service))


def sleep_check(ctx: HostContext):
    """The idle policy where the scheduled check runs it, with --dry-run: the idle clock stays where it is."""
    script = (f"(\nvms_config=$(mktemp)\ntrap 'rm -f \"$vms_config\"' EXIT\n"
              f"cat > \"$vms_config\" <<'VMSTATION_CONFIG'\n{idle_config_json(ctx.inventory)}VMSTATION_CONFIG\n"
              + sh("PYTHONPATH={} python3 -m vmstation.power.idle --config \"$vms_config\" --state {} --dry-run",
                   LIB_DIR, IDLE_STATE) + "\n)")
    yield Check(script, "idle policy on the control plane (dry run: the idle clock does not move)", capture=DECISION)


def sleep_drain(ctx: HostContext):
    workers = sleepers(ctx.inventory)
    if workers:
        yield Command(power_event("sleep-start", workers), "record the sleep's start for the dashboards")
    for description, script in sleep_sequence([h.name for h in workers], request=False):
        yield ClusterStep(script, description)


def sleep_record(ctx: HostContext):
    """Asleep is what the control plane sees (the worker stopped answering), not what was asked."""
    workers = sleepers(ctx.inventory)
    if workers:
        yield Command(power_event("asleep", workers, down=True),
                      f"wait until {', '.join(h.name for h in workers)} stop answering (up to "
                      f"{metrics.DOWN_TIMEOUT:g}s), record them asleep")


def sleep_power_off(ctx: HostContext):
    yield WakeOnLanArmed(ctx.host.interface)
    yield Command(_delayed(_power_off_verb(ctx.host)),
                  f"{ctx.host.sleep_method} in {POWER_OFF_DELAY} s (after this session closes)")


def wake_send(ctx: HostContext):
    from vmstation.power import wol

    hosts = wake_targets(ctx)
    power = ctx.inventory.power
    interface = ctx.run.wake_interface or power.wol_interface
    script = wol.remote_send_script([h.mac for h in hosts], power.wol_broadcast or LIMITED_BROADCAST,
                                    power.wol_port, interface)
    yield Check(f"(\n{script})", "magic packets for " + ", ".join(h.name for h in hosts), capture=SENT)
    # wake.send runs alone (its packets must not wait for power.tools): the record needs the module that
    # deploy-debian installed, and is skipped with that reason where it is missing.
    yield Command(power_event("wake-start", hosts), "record the wake's start for the dashboards",
                  onlyif=sh("test -f {}", f"{LIB_DIR}/vmstation/power/metrics.py"))


def wake_rejoin(ctx: HostContext):
    targets = wake_targets(ctx)
    seconds = ctx.run.wake_seconds or {}
    for host in targets:
        yield Command(power_event("awake", (host,), seconds=seconds.get(host.name)),
                      f"record {host.name} awake for the dashboards")
    nodes = [h.name for h in targets if h in sleepers(ctx.inventory)]
    for node in nodes:
        yield ClusterStep(sh("kubectl --kubeconfig {} wait --for=condition=Ready {} --timeout={}s",
                             ADMIN_CONF, f"node/{node}", READY_TIMEOUT),
                          f"wait for node {node} Ready (up to {READY_TIMEOUT}s)")
        yield ClusterStep(sh("kubectl --kubeconfig {} annotate node {} {}", ADMIN_CONF, node, SLEEP_REQUEST + "-")
                          + " >/dev/null 2>&1 || true", f"clear the sleep request of {node}")
    yield ClusterStep(_record_tool("restore"), f"uncordon and scale back what {SLEEP_STATE} recorded")


def wake_targets(ctx: HostContext) -> tuple[Host, ...]:
    names = ctx.run.wake_hosts
    if names is None:
        return wake_candidates(ctx.inventory)
    return tuple(ctx.inventory.host(name) for name in names)


# ---------------------------------------------------------------------------------------------
# Shared by the engine's sleep and the scheduled one: one definition of the sequence
# ---------------------------------------------------------------------------------------------


def sleep_sequence(nodes: list[str], request: bool) -> list[tuple[str, str]]:
    """(description, script) of each kubectl step; ``request``: ask the workers to power themselves off."""
    if not nodes:
        return []
    kubectl = sh("kubectl --kubeconfig {}", ADMIN_CONF)
    steps = [(f"record replica counts and cordons in {SLEEP_STATE}",
              _record_tool("record") + sh(" --nodes {}", ",".join(nodes)))]
    steps += [(f"cordon {node}", f"{kubectl} " + sh("cordon {}", node)) for node in nodes]
    # No --force: a bare Pod would be deleted for good; drain refuses and the worker stays up.
    # emptyDir volumes are scratch space that lives only as long as its pod.
    steps += [(f"drain {node} (DaemonSets stay, up to {DRAIN_TIMEOUT}s)",
               f"{kubectl} " + sh("drain {} --ignore-daemonsets --delete-emptydir-data --timeout={}",
                                  node, f"{DRAIN_TIMEOUT}s")) for node in nodes]
    steps.append(("scale down the recorded Deployments and StatefulSets", _record_tool("scale-down")))
    if request:
        steps += [(f"ask {node} to power itself off",
                   f"{kubectl} " + sh("annotate --overwrite node {} ", node) + SLEEP_REQUEST + '="$(date +%s)"')
                  for node in nodes]
    return steps


def idle_config_json(inventory: Inventory) -> str:
    """The idle check's config (vmstation.power.idle.CheckConfig) from the inventory's [power]."""
    power = inventory.power
    cpu = {h.name: "local" for h in control_planes(inventory)}
    cpu.update({h.name: f"http://{url_host(h.address)}:{NODE_EXPORTER_PORT}/metrics" for h in sleepers(inventory)})
    config = {"idle_hours": power.idle_hours, "cpu_threshold_percent": power.cpu_threshold_percent,
              "jellyfin_url": power.jellyfin_url,
              "jellyfin_api_key_file": JELLYFIN_KEY_FILE if power.jellyfin_api_key else None,
              "cpu": cpu, "kubectl": ["kubectl", "--kubeconfig", ADMIN_CONF]}
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def power_event(event: str, hosts, down: bool = False, seconds: float | None = None) -> str:
    """The command that records a sleep or wake event on the control plane (``vmstation.power.metrics``)."""
    command = sh("PYTHONPATH={} python3 -m vmstation.power.metrics {} --nodes {}", LIB_DIR, event,
                 ",".join(h.name for h in hosts))
    if down:
        command += "".join(sh(" --down {}", f"{url_host(h.address)}:{h.ssh_port}") for h in hosts)
    if seconds is not None:
        command += sh(" --seconds {}", f"{seconds:.1f}")
    return command


def _record_tool(action: str) -> str:
    return sh("PYTHONPATH={} python3 -m vmstation.power.sleep_state {} --state {} --kubeconfig {}",
              LIB_DIR, action, SLEEP_STATE, ADMIN_CONF)


def _power_off_verb(host: Host) -> str:
    return "systemctl poweroff" if host.sleep_method == "shutdown" else "systemctl suspend"


def _delayed(command: str) -> str:
    """Run ``command`` from a transient timer a moment later, so this SSH session ends cleanly first."""
    return (f"systemd-run --quiet --on-active={POWER_OFF_DELAY} --timer-property=AccuracySec=100ms "
            f"{command}")


def _arm_command(host: Host) -> str:
    if not host.interface:
        return ": no interface named in the inventory; the .link file armed the NIC at boot"
    return sh("ethtool -s {} wol g 2>/dev/null || true", host.interface)


PHASES = [
    Phase("power.tools", "vmstation's power modules on the control plane", control_planes, power_tools),
    Phase("debian.power", "Wake-on-LAN armed for good, the scheduled idle check", kubeadm_hosts, debian_power,
          needs=("power.tools",), secrets=lambda inventory, host: _jellyfin_key_reference(inventory, host)),
    Phase("sleep.check", "idle policy: may the workers sleep?", control_planes, sleep_check,
          needs=("power.tools",), volatile=True),
    Phase("sleep.drain", "cordon, drain, scale down (recorded for wake)", control_planes, sleep_drain,
          needs=("power.tools",)),
    Phase("sleep.power-off", "arm Wake-on-LAN, shut down or suspend", sleepers, sleep_power_off,
          needs=("sleep.drain",), volatile=True),
    Phase("sleep.record", "the workers seen down, recorded asleep", control_planes, sleep_record,
          needs=("sleep.power-off",), volatile=True),
    Phase("wake.send", "Wake-on-LAN magic packets from the control plane", control_planes, wake_send,
          volatile=True),
    Phase("wake.rejoin", "nodes Ready, uncordoned, workloads scaled back", control_planes, wake_rejoin,
          needs=("power.tools",), volatile=True),
]

TARGETS = [
    Target("sleep", "put the workers to sleep: cordon, drain, scale down (recorded), arm WoL, power off",
           ("sleep.record",)),
    Target("sleep-check", "ask the idle policy whether the workers may sleep", ("sleep.check",)),
    Target("wake", "wake the workers and restore what sleep did", ("wake.send", "wake.rejoin")),
]
