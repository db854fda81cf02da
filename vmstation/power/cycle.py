"""The sleep/wake cycle: what `vmstation sleep` and `vmstation wake` (and their fab tasks) do.

Sleep: ask the idle policy (on masternode, where the scheduled check runs it; ``--force``
skips it), run the ``sleep`` target (record, cordon, drain, scale down, arm WoL, power off),
then wait until each worker stops answering SSH, so "asleep" is seen, not assumed.

Wake: send the magic packets from masternode over its SSH session (``wake.send``), or from
this machine with ``--from-here``; a packet has no acknowledgement, so each host is awake
only when its SSH answers (bounded wait, progress shown, time-to-wake reported); then
``wake.rejoin`` waits for the nodes Ready, uncordons them and restores what sleep scaled down.

Exit codes: 0 done, 1 a host failed or did not answer, 2 bad input, 3 cannot run here,
4 (sleep) the idle policy says stay awake.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

from vmstation.errors import InputError, InventoryError
from vmstation.transport import ssh_answers
from vmstation.values import interface_name

# Where the cycle tells what happens: ``tell(text, err=False, nl=True)``; the CLI passes its terminal edge.
Tell = Callable[..., None]

STAY_AWAKE = 4
DOWN_TIMEOUT = 180.0
PROGRESS_EVERY = 10.0
POLL = 0.25


def wake(session, hosts=(), from_here: bool = False, interface: str | None = None, timeout: float = 600,
         plan: bool = False, *, tell: Tell) -> int:
    """Wake ``hosts`` (default: every host with a MAC that is not always on); return the exit code.

    ``tell``: where what happens is told (the CLI's terminal edge, ``vmstation.report.tell``)."""
    from vmstation.app import load_inventory

    inventory = load_inventory(session)
    targets = choose_wake_targets(inventory, hosts, from_here)
    if interface is not None:
        try:
            interface_name(interface)          # the inventory's rule (Linux's, narrowed to what renders safely)
        except ValueError:
            raise InputError(f"--interface {interface!r}: not a network interface name") from None
    settings = {"wake_hosts": tuple(h.name for h in targets), "wake_interface": interface}
    if plan:
        return _plan_wake(session, inventory, targets, from_here, interface, timeout, settings, tell)
    sent_at = time.monotonic()
    if from_here:
        code = _send_from_here(inventory, targets, interface, tell)
    else:
        code = _send_from_sender(session, inventory, settings, tell)
    if code:
        return code
    awake = {h.name: wait_for_ssh(h, timeout, sent_at, tell) for h in targets}
    tell(format_wake_times(targets, awake))
    missing = [name for name, seconds in awake.items() if seconds is None]
    if missing:
        tell(f"not restored: {', '.join(missing)} did not answer within {timeout:g} s; "
              "nothing was uncordoned or scaled back (run `vmstation wake` again)", err=True)
        return 1
    settings["wake_seconds"] = {name: seconds for name, seconds in awake.items() if seconds is not None}
    result, _ = run_power_target(session, "wake", tell, only=("power.tools", "wake.rejoin"), settings=settings)
    tell(_rejoin_note(result, time.monotonic() - sent_at))
    return result.exit_code


def sleep(session, check_only: bool = False, plan: bool = False, force: bool = False, *, tell: Tell) -> int:
    """Decide, then put the workers to sleep; return the exit code (4: the policy says stay awake)."""
    from vmstation.app import load_inventory

    inventory = load_inventory(session)
    workers = check_sleepers(inventory)
    if plan:
        if not force:
            tell("(without --force, the idle check of `vmstation sleep --check` decides first)")
        return run_power_target(session, "sleep", tell, plan=True)[0].exit_code
    if check_only or not force:
        decision = idle_decision(session, inventory, tell)
        if decision is None:
            return 1
        for reason in decision["reasons"]:
            tell(f"  {reason}")
        tell("idle: the workers may sleep" if decision["sleep"] else "busy: staying awake")
        if check_only or not decision["sleep"]:
            return 0 if decision["sleep"] else STAY_AWAKE
    result, _ = run_power_target(session, "sleep", tell)
    off = [o.host for o in result.outcomes if o.phase == "sleep.power-off" and o.succeeded]
    if result.exit_code:
        return result.exit_code
    down = {h.name: wait_until_down(h, DOWN_TIMEOUT) for h in workers if h.name in off}
    for host in workers:
        seconds = down.get(host.name)
        tell(f"{host.name}: " + (f"asleep ({host.sleep_method}) after {seconds:.1f} s" if seconds is not None
                                  else f"still answering SSH after {DOWN_TIMEOUT:g} s"))
    return 1 if any(s is None for s in down.values()) else 0


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


def run_power_target(session, target: str, tell: Tell, plan: bool = False, only=(), settings=None):
    """Run (or plan) a power target like every other target, with the run-context ``settings`` its phases read.

    Prints the plan and the summary; returns the RunResult and what its Checks captured (by capture name).
    """
    from vmstation.app import run_target
    from vmstation.report import format_run, with_progress

    run_values: dict = {}
    result = with_progress(lambda listener: run_target(session, target, plan=plan, only=only, listener=listener,
                                                       values=run_values, settings=settings))
    tell(format_run(result, plan, show_diff=True, journal=False), nl=False)
    return result, run_values


def idle_decision(session, inventory, tell: Tell) -> dict | None:
    """The idle policy's decision, asked on masternode (where the scheduled check asks it): a dict, or None."""
    from vmstation.phases import power

    result, values = run_power_target(session, "sleep-check", tell)
    line = values.get(power.DECISION.name, "")
    if result.exit_code or not line:
        tell("the idle check did not run on the control plane: no decision", err=True)
        return None
    return json.loads(line.strip().splitlines()[-1])


def _send_from_sender(session, inventory, settings, tell: Tell) -> int:
    from vmstation.phases import power

    result, captured = run_power_target(session, "wake", tell, only=("wake.send",), settings=settings)
    for line in captured.get(power.SENT.name, "").splitlines():
        tell(f"  {line}")
    return result.exit_code


def _send_from_here(inventory, targets, interface: str | None, tell: Tell) -> int:
    from vmstation.errors import HostError
    from vmstation.power import wol

    power = inventory.power
    for host in targets:
        try:
            sent = wol.wake(host.mac, broadcast=power.wol_broadcast, port=power.wol_port,
                            interface=interface or power.wol_interface)
        except HostError as exc:
            tell(f"vmstation: {host.name}: magic packet not sent: {exc.message}", err=True)
            return 1
        tell(f"  {host.name}: {sent.reason}")
    return 0


def _plan_wake(session, inventory, targets, from_here, interface, timeout, settings, tell: Tell) -> int:
    from vmstation.phases import power

    if from_here:
        for host in targets:
            tell(f"  would send a magic packet for {host.name} ({host.mac}) from this machine to "
                  f"{inventory.power.wol_broadcast or power.LIMITED_BROADCAST}:{inventory.power.wol_port}"
                  + (f" via {interface or inventory.power.wol_interface}"
                     if interface or inventory.power.wol_interface else ""))
    for host in targets:
        tell(f"  would wait up to {timeout:g} s for {host.name} to answer SSH on {host.address}:{host.ssh_port}")
    only = ("power.tools", "wake.rejoin") if from_here else ()
    return run_power_target(session, "wake", tell, plan=True, only=only, settings=settings)[0].exit_code


def _rejoin_note(result, seconds: float) -> str:
    failed = [o for o in result.outcomes if not o.succeeded]
    if failed:
        return "not back in the cluster: " + "; ".join(f"{o.phase} @ {o.host}: {o.message}" for o in failed)
    skipped = sum(len(o.skipped) for o in result.outcomes)
    if skipped:
        return f"cluster rejoin not checked: {skipped} kubectl steps skipped (reasons above)"
    return f"back in the cluster (nodes Ready, restored) {seconds:.1f} s after the magic packet"


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


def wait_for_ssh(host, timeout: float, since: float, tell: Tell) -> float | None:
    """Seconds from ``since`` until ``host``'s SSH server sent its banner, or None after ``timeout``."""
    clock, shown = _Clock(time.monotonic(), timeout), 0.0
    while not clock.expired:
        if ssh_answers(host.address, host.ssh_port):
            return time.monotonic() - since
        if clock.elapsed - shown >= PROGRESS_EVERY:
            shown = clock.elapsed
            tell(f"  waiting for {host.name} ({host.address}:{host.ssh_port}): {shown:.0f} s of {timeout:g} s",
                  err=True)
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


def format_wake_times(targets, awake: dict) -> str:
    width = max(len(h.name) for h in targets)
    lines = [f"{h.name:<{width}}  " + (f"awake: SSH answered {awake[h.name]:.1f} s after the magic packet"
                                       if awake[h.name] is not None else "did not answer")
             for h in targets]
    return "\n".join(lines)
