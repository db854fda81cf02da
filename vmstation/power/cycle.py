"""The sleep/wake cycle: what `vmstation sleep` and `vmstation wake` (and their fab tasks) do.

Sleep: ask the idle policy (on masternode, where the scheduled check runs it; ``--force``
skips it), run the ``sleep`` target (record, cordon, drain, scale down, arm WoL, power off),
then wait until each worker stops answering SSH, so "asleep" is seen, not assumed.

Wake: send the magic packets from masternode over its SSH session (``wake.send``), or from
this machine with ``--from-here``; a packet has no acknowledgement, so each host is awake
only when its SSH answers (bounded wait, progress shown, time-to-wake reported); then
``wake.rejoin`` waits for the nodes Ready, uncordons them and restores what sleep scaled down.

Each returns a result (``Wake``, ``Sleep``): what was sent and how, each host's time to answer or its absence,
the idle decision with its reasons, the runs' results, and the exit code as a property; vmstation.report renders
them (``format_wake``, ``format_sleep``). What must be seen while waiting is shown as it happens: each run's
progress (``report.with_progress``), and, through the callables the caller passes (``waiting``, ``sent``,
``answered``, ``decided``), how long a host has been waited for, the packets sent before that wait, when each
host answered before the rejoin run, the idle decision before sleep's run.

Exit codes: 0 done, 1 a host failed or did not answer, 2 bad input, 3 cannot run here,
4 (sleep) the idle policy says stay awake.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Callable

from vmstation.errors import InputError, InventoryError
from vmstation.transport import ssh_answers
from vmstation.values import interface_name

# What must be seen as it happens, shown by the caller (the CLI renders each with vmstation.report):
# ``waiting(host, seconds_waited, timeout)`` while a host is waited for, ``sent(Sent)`` before the wait for the
# hosts to answer, ``answered(Wake)`` when each answered or not (before the rejoin run waits for the nodes),
# ``decided(IdleCheck)`` before sleep's run.
Waiting = Callable[..., None]
Shown = Callable[[object], None]

STAY_AWAKE = 4
DOWN_TIMEOUT = 180.0
PROGRESS_EVERY = 10.0
POLL = 0.25


@dataclass(frozen=True)
class Packet:
    """One magic packet as its sender reported it: masternode's own line, or (from here) the host and wol's reason."""
    report: str
    host: str | None = None


@dataclass(frozen=True)
class Sent:
    """How the magic packets went out: masternode's ``wake.send`` run, or this machine (``--from-here``)."""
    from_here: bool
    packets: tuple[Packet, ...] = ()
    run: object = None                    # runner.RunResult of wake.send, from masternode
    not_sent: Packet | None = None        # from here: the host whose packet could not be sent, and why

    @property
    def exit_code(self) -> int:
        if self.run is not None:
            return self.run.exit_code
        return 1 if self.not_sent else 0


@dataclass
class Wake:
    """What `vmstation wake` did: the packets, each host's seconds to answer SSH (None: it did not), the rejoin."""
    targets: tuple                        # inventory Hosts, in the order asked
    timeout: float
    plan: bool = False
    from_here: bool = False
    packet_to: str = ""                   # a plan from here: where the packets would go (broadcast:port) ...
    via: str | None = None                # ... and out of which interface, when one is named
    sent: Sent | None = None
    awake: dict[str, float | None] = field(default_factory=dict)   # seconds from the packet to SSH's answer
    run: object = None                    # the rejoin run (or, for a plan, the wake target's plan)
    seconds: float = 0.0                  # from the magic packet to the end of the rejoin run

    @property
    def missing(self) -> list[str]:
        return [name for name, seconds in self.awake.items() if seconds is None]

    @property
    def exit_code(self) -> int:
        if self.sent is not None and self.sent.exit_code:
            return self.sent.exit_code
        if self.missing:
            return 1
        return self.run.exit_code if self.run is not None else 0


@dataclass(frozen=True)
class IdleCheck:
    """The idle policy's answer, asked on masternode: ``sleep`` None when the check gave no decision."""
    run: object                           # runner.RunResult of sleep-check
    sleep: bool | None = None
    reasons: tuple[str, ...] = ()


@dataclass
class Sleep:
    """What `vmstation sleep` did: the idle decision, the sleep run, each worker's seconds to stop answering SSH."""
    workers: tuple                        # the inventory Hosts sleep powers off
    plan: bool = False
    force: bool = False
    check: IdleCheck | None = None        # None: not asked (--force, or a plan)
    run: object = None                    # the sleep run (or its plan); None when the policy said no
    down: dict[str, float | None] = field(default_factory=dict)  # seconds until each stopped answering SSH
    down_timeout: float = DOWN_TIMEOUT

    @property
    def exit_code(self) -> int:
        if self.check is not None and self.check.sleep is None:
            return 1
        if self.check is not None and not self.check.sleep:
            return STAY_AWAKE
        if self.run is None:
            return 0
        if self.run.exit_code:
            return self.run.exit_code
        return 1 if any(seconds is None for seconds in self.down.values()) else 0


def wake(session, hosts=(), from_here: bool = False, interface: str | None = None, timeout: float = 600,
         plan: bool = False, *, waiting: Waiting | None = None, sent: Shown | None = None,
         answered: Shown | None = None) -> Wake:
    """Wake ``hosts`` (default: every host with a MAC that is not always on), wait for each, rejoin them."""
    from vmstation.app import load_inventory

    inventory = load_inventory(session)
    targets = choose_wake_targets(inventory, hosts, from_here)
    if interface is not None:
        try:
            interface_name(interface)          # the inventory's rule (Linux's, narrowed to what renders safely)
        except ValueError:
            raise InputError(f"--interface {interface!r}: not a network interface name") from None
    settings = {"wake_hosts": tuple(h.name for h in targets), "wake_interface": interface}
    result = Wake(targets, timeout, plan=plan, from_here=from_here)
    if plan:
        return _plan_wake(session, inventory, result, interface, settings)
    sent_at = time.monotonic()
    result.sent = (_send_from_here(inventory, targets, interface) if from_here
                   else _send_from_sender(session, settings))
    if sent is not None:
        sent(result.sent)
    if result.sent.exit_code:
        return result
    result.awake = {h.name: wait_for_ssh(h, timeout, sent_at, waiting) for h in targets}
    if answered is not None:
        answered(result)
    if result.missing:
        return result
    settings["wake_seconds"] = dict(result.awake)
    result.run, _ = run_power_target(session, "wake", only=("power.tools", "wake.rejoin"), settings=settings)
    result.seconds = time.monotonic() - sent_at
    return result


def sleep(session, check_only: bool = False, plan: bool = False, force: bool = False, *,
          decided: Shown | None = None) -> Sleep:
    """Decide (unless ``force``), then put the workers to sleep and see them stop answering."""
    from vmstation.app import load_inventory

    inventory = load_inventory(session)
    result = Sleep(check_sleepers(inventory), plan=plan, force=force)
    if plan:
        result.run = run_power_target(session, "sleep", plan=True)[0]
        return result
    if check_only or not force:
        result.check = idle_decision(session)
        if decided is not None:
            decided(result.check)
        if check_only or not result.check.sleep:
            return result
    result.run, _ = run_power_target(session, "sleep")
    if result.run.exit_code:
        return result
    off = {o.host for o in result.run.outcomes if o.phase == "sleep.power-off" and o.succeeded}
    result.down = {h.name: wait_until_down(h, DOWN_TIMEOUT) for h in result.workers if h.name in off}
    return result


# ---------------------------------------------------------------------------------------------
# Choosing hosts: every bad name is one line naming the inventory, the host and the key
# ---------------------------------------------------------------------------------------------


def choose_wake_targets(inventory, names, from_here: bool) -> tuple:
    from vmstation.phases import power

    senders = {h.name for h in power.control_planes(inventory)}
    if not from_here and not senders:
        raise InventoryError(inventory.path, "no kubeadm control plane to send the magic packets from; "
                             "use --from-here")
    if not names:
        targets = tuple(h for h in power.wake_candidates(inventory) if from_here or h.name not in senders)
        if not targets:
            raise InventoryError(inventory.path, "no host to wake: none has a mac and is not always_on")
        return targets
    known = {h.name: h for h in inventory.hosts}
    targets = []
    for name in dict.fromkeys(names):
        if name not in known:
            raise InventoryError(inventory.path, f"unknown host; known: {', '.join(sorted(known))}", host=name)
        host = known[name]
        if host.mac is None:
            raise InventoryError(inventory.path, "has no MAC address, so it cannot be woken", host=name, key="mac")
        if name in senders and not from_here:
            raise InventoryError(inventory.path, "sends the magic packets itself, so it must be awake already "
                                 "(use --from-here to wake it)", host=name)
        targets.append(host)
    return tuple(targets)


def check_sleepers(inventory) -> tuple:
    """The workers sleep would power off; each must be wakeable again (a MAC), or sleep refuses."""
    from vmstation.phases import power

    workers = power.sleepers(inventory)
    if not workers:
        raise InventoryError(inventory.path, "no worker to put to sleep (kubeadm workers that are not always_on)")
    for host in workers:
        if host.mac is None:
            raise InventoryError(inventory.path, "has no MAC address, so it could not be woken again; "
                                 "set mac, or always_on = true", host=host.name, key="mac")
    return workers


# ---------------------------------------------------------------------------------------------
# Running the power targets through the engine
# ---------------------------------------------------------------------------------------------


def run_power_target(session, target: str, plan: bool = False, only=(), settings=None):
    """Run (or plan) a power target like every other target, with the run-context ``settings`` its phases read,
    its progress shown as it goes; return the RunResult and what its Checks captured (by capture name)."""
    from vmstation.app import run_target
    from vmstation.report import with_progress

    run_values: dict = {}
    result = with_progress(lambda listener: run_target(session, target, plan=plan, only=only, listener=listener,
                                                       values=run_values, settings=settings))
    return result, run_values


def idle_decision(session) -> IdleCheck:
    """The idle policy's decision, asked on masternode (where the scheduled check asks it)."""
    from vmstation.phases import power

    result, values = run_power_target(session, "sleep-check")
    line = values.get(power.DECISION.name, "")
    if result.exit_code or not line:
        return IdleCheck(result)
    decision = json.loads(line.strip().splitlines()[-1])
    return IdleCheck(result, bool(decision["sleep"]), tuple(decision["reasons"]))


def _send_from_sender(session, settings) -> Sent:
    from vmstation.phases import power

    result, captured = run_power_target(session, "wake", only=("wake.send",), settings=settings)
    lines = captured.get(power.SENT.name, "").splitlines()
    return Sent(False, tuple(Packet(line) for line in lines), run=result)


def _send_from_here(inventory, targets, interface: str | None) -> Sent:
    from vmstation.errors import HostError
    from vmstation.power import wol

    power, packets = inventory.power, []
    for host in targets:
        try:
            sent = wol.wake(host.mac, broadcast=power.wol_broadcast, port=power.wol_port,
                            interface=interface or power.wol_interface)
        except HostError as exc:
            return Sent(True, tuple(packets), not_sent=Packet(exc.message, host.name))
        packets.append(Packet(sent.reason, host.name))
    return Sent(True, tuple(packets))


def _plan_wake(session, inventory, result: Wake, interface: str | None, settings) -> Wake:
    from vmstation.phases import power

    if result.from_here:
        result.packet_to = f"{inventory.power.wol_broadcast or power.LIMITED_BROADCAST}:{inventory.power.wol_port}"
        result.via = interface or inventory.power.wol_interface
    only = ("power.tools", "wake.rejoin") if result.from_here else ()
    result.run = run_power_target(session, "wake", plan=True, only=only, settings=settings)[0]
    return result


# ---------------------------------------------------------------------------------------------
# Waiting: a host is awake when its SSH server answers, asleep when it stops answering
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clock:
    started: float
    timeout: float

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def expired(self) -> bool:
        return self.elapsed > self.timeout


def wait_for_ssh(host, timeout: float, since: float, waiting: Waiting | None = None) -> float | None:
    """Seconds from ``since`` until ``host``'s SSH server sent its banner, or None after ``timeout``;
    ``waiting(host, seconds, timeout)`` every PROGRESS_EVERY seconds meanwhile."""
    clock, shown = _Clock(time.monotonic(), timeout), 0.0
    while not clock.expired:
        if ssh_answers(host.address, host.ssh_port):
            return time.monotonic() - since
        if clock.elapsed - shown >= PROGRESS_EVERY:
            shown = clock.elapsed
            if waiting is not None:
                waiting(host, shown, timeout)
        time.sleep(POLL)
    return None


def wait_until_down(host, timeout: float) -> float | None:
    """Seconds until ``host`` stops answering SSH, or None if it still answers after ``timeout``."""
    clock = _Clock(time.monotonic(), timeout)
    while not clock.expired:
        if not ssh_answers(host.address, host.ssh_port):
            return clock.elapsed
        time.sleep(POLL)
    return None
