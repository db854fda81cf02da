"""What `vmstation wake` and `vmstation sleep` tell, from their results (vmstation.power.cycle's Wake and Sleep):
a result in, lines out, no host. The box test (tests/integration/test_power_cycle.py) runs the same words end to end.
"""

from __future__ import annotations

from tests.unit.conftest import homelab_inventory
from vmstation.execute import PhaseOutcome
from vmstation.operations import CHANGE, SKIP
from vmstation.operations.base import Step
from vmstation.power.cycle import STAY_AWAKE, IdleCheck, Packet, Sent, Sleep, Wake
from vmstation.report import (Line, format_answered, format_idle_check, format_run, format_sent, format_sleep,
                              format_wake, tell_waiting)
from vmstation.runner import RunResult

INVENTORY = homelab_inventory()
_, WORKER, HOMELAB = INVENTORY.hosts          # storagenodet3500 (a worker), homelab (the RKE2 server)
NO_CLUSTER = "no Kubernetes cluster here (/etc/kubernetes/admin.conf or kubectl missing)"
SENT_LINE = "sent magic packet for 00:e0:4c:68:cb:bf to 192.168.4.255:9 via eno1"


def run(target: str, *outcomes: PhaseOutcome) -> RunResult:
    return RunResult(target, list(outcomes))


def done(phase: str, host: str = "masternode", *steps: Step) -> PhaseOutcome:
    return PhaseOutcome(phase, host, "changed" if steps else "ok", list(steps), seconds=1.0)


def summary(result: RunResult, plan: bool = False) -> Line:
    return Line(format_run(result, plan, show_diff=True, journal=False).removesuffix("\n"))


def kubectl_skipped(label: str) -> Step:
    return Step(f"kubectl: {label}", SKIP, NO_CLUSTER)


SEND = run("wake", done("wake.send", "masternode", Step("check magic packets", CHANGE)))
REJOIN_ON_BOXES = run("wake", done("power.tools"), done(
    "wake.rejoin", "masternode", Step("run record awake", CHANGE),
    kubectl_skipped("wait for node storagenodet3500 Ready (up to 600s)"),
    kubectl_skipped("clear the sleep request of storagenodet3500"), kubectl_skipped("uncordon and scale back")))


def woken(**changes) -> Wake:
    values = dict(targets=(WORKER,), timeout=600, sent=Sent(False, (Packet(SENT_LINE),), run=SEND),
                  awake={WORKER.name: 41.27}, run=REJOIN_ON_BOXES, seconds=45.0)
    return Wake(**{**values, **changes})


# ---------------------------------------------------------------------------------------------
# wake
# ---------------------------------------------------------------------------------------------


def test_wake_tells_the_send_run_each_packet_the_time_to_answer_and_the_rejoin_in_order():
    result = woken()
    assert format_wake(result) == [
        summary(SEND), Line(f"  {SENT_LINE}"),
        Line("storagenodet3500  awake: SSH answered 41.3 s after the magic packet"),
        summary(REJOIN_ON_BOXES), Line("cluster rejoin not checked: 3 kubectl steps skipped (reasons above)")]
    assert result.exit_code == 0


def test_wake_streamed_leaves_out_what_was_told_as_it_came():
    result = woken()
    assert format_wake(result, streamed=True) == format_wake(result)[3:]
    assert format_sent(result.sent) + format_answered(result) + format_wake(result, streamed=True) \
        == format_wake(result)


def test_wake_back_in_the_cluster_counts_from_the_magic_packet():
    rejoined = run("wake", done("power.tools"), done("wake.rejoin", "masternode", Step("run uncordon", CHANGE)))
    assert format_wake(woken(run=rejoined))[-1] == Line(
        "back in the cluster (nodes Ready, restored) 45.0 s after the magic packet")


def test_wake_a_failed_rejoin_names_phase_host_and_message_and_is_exit_1():
    failed = run("wake", done("power.tools"), PhaseOutcome("wake.rejoin", "masternode", "failed",
                                                           message="exit code 1: node not Ready\x1b[2J"))
    result = woken(run=failed)
    assert format_wake(result)[-1] == Line(
        "not back in the cluster: wake.rejoin @ masternode: exit code 1: node not Ready\\x1b[2J")
    assert result.exit_code == 1


def test_wake_a_host_that_does_not_answer_is_told_on_stderr_and_nothing_is_restored():
    result = woken(targets=(WORKER, HOMELAB), awake={WORKER.name: 12.0, HOMELAB.name: None}, run=None)
    assert format_answered(result) == [
        Line("storagenodet3500  awake: SSH answered 12.0 s after the magic packet"),
        Line("homelab           did not answer"),
        Line("not restored: homelab did not answer within 600 s; nothing was uncordoned or scaled back "
             "(run `vmstation wake` again)", err=True)]
    assert format_wake(result, streamed=True) == []
    assert result.missing == ["homelab"] and result.exit_code == 1


def test_wake_from_masternode_that_failed_tells_its_run_and_stops_there():
    failed = run("wake", PhaseOutcome("wake.send", "masternode", "failed", message="cannot reach 10.0.0.1:2"))
    result = woken(sent=Sent(False, (), run=failed), awake={}, run=None)
    assert format_wake(result) == [summary(failed)]
    assert result.exit_code == 1


def test_wake_from_here_tells_each_host_and_the_packet_that_could_not_be_sent_on_stderr():
    sent = Sent(True, (Packet("sent magic packet to 192.168.4.255:9", WORKER.name),),
                not_sent=Packet("[Errno 19] No such device", HOMELAB.name))
    result = woken(targets=(WORKER, HOMELAB), sent=sent, awake={}, run=None)
    assert format_wake(result) == [
        Line("  storagenodet3500: sent magic packet to 192.168.4.255:9"),
        Line("vmstation: homelab: magic packet not sent: [Errno 19] No such device", err=True)]
    assert result.exit_code == 1
    assert Sent(True, sent.packets).exit_code == 0


def test_a_line_the_sender_printed_cannot_act_on_the_terminal():
    sent = Sent(False, (Packet("sent\x1b]0;owned\x07"),), run=SEND)
    assert format_sent(sent)[-1] == Line("  sent\\x1b]0;owned\\x07")


def test_wake_plan_tells_what_would_be_sent_and_waited_for_then_the_plan():
    plan = run("wake", PhaseOutcome("wake.rejoin", "masternode", "planned", [Step("run record awake", CHANGE)]))
    result = Wake((WORKER,), 120, plan=True, from_here=True, packet_to="192.168.4.255:9", via="eno1", run=plan)
    assert format_wake(result) == [
        Line("  would send a magic packet for storagenodet3500 (00:e0:4c:68:cb:bf) from this machine to "
             "192.168.4.255:9 via eno1"),
        Line("  would wait up to 120 s for storagenodet3500 to answer SSH on 192.168.4.61:22"),
        summary(plan, plan=True)]
    from_masternode = Wake((WORKER,), 600, plan=True, run=plan)
    assert [line.text for line in format_wake(from_masternode)][0].startswith("  would wait up to 600 s")
    assert result.exit_code == 0


def test_waiting_is_told_on_stderr_as_it_happens(capsys):
    tell_waiting(WORKER, 10.2, 600)
    assert capsys.readouterr() == ("", "  waiting for storagenodet3500 (192.168.4.61:22): 10 s of 600 s\n")


# ---------------------------------------------------------------------------------------------
# sleep
# ---------------------------------------------------------------------------------------------

CHECK = run("sleep-check", done("power.tools"), done("sleep.check"))
SLEEP = run("sleep", done("sleep.drain", "masternode", kubectl_skipped("cordon storagenodet3500")),
            done("sleep.power-off", "storagenodet3500", Step("run poweroff", CHANGE)))


def test_sleep_busy_tells_the_check_its_reasons_and_stays_awake():
    check = IdleCheck(CHECK, False, ("Jellyfin: alice playing", "not observed: Jobs (staying awake when unsure)"))
    result = Sleep((WORKER,), check=check)
    assert format_sleep(result) == [summary(CHECK), Line("  Jellyfin: alice playing"),
                                    Line("  not observed: Jobs (staying awake when unsure)"),
                                    Line("busy: staying awake")]
    assert format_sleep(result, streamed=True) == []
    assert result.exit_code == STAY_AWAKE


def test_sleep_check_only_idle_is_exit_0():
    result = Sleep((WORKER,), check=IdleCheck(CHECK, True, ()))
    assert format_idle_check(result.check) == [summary(CHECK), Line("idle: the workers may sleep")]
    assert result.exit_code == 0


def test_sleep_without_a_decision_is_told_on_stderr_and_is_exit_1():
    result = Sleep((WORKER,), check=IdleCheck(CHECK))
    assert format_sleep(result)[-1] == Line("the idle check did not run on the control plane: no decision",
                                            err=True)
    assert result.exit_code == 1


def test_sleep_tells_each_worker_asleep_or_still_answering():
    result = Sleep((WORKER, HOMELAB), force=True, run=SLEEP, down={WORKER.name: 3.14, HOMELAB.name: None})
    assert format_sleep(result) == [summary(SLEEP), Line("storagenodet3500: asleep (shutdown) after 3.1 s"),
                                    Line("homelab: still answering SSH after 180 s")]
    assert result.exit_code == 1
    assert Sleep((WORKER,), force=True, run=SLEEP, down={WORKER.name: 3.14}).exit_code == 0


def test_sleep_after_the_decision_streamed_tells_the_run_and_the_workers():
    result = Sleep((WORKER,), check=IdleCheck(CHECK, True, ()), run=SLEEP, down={WORKER.name: 2.0})
    assert format_sleep(result, streamed=True) == [summary(SLEEP),
                                                   Line("storagenodet3500: asleep (shutdown) after 2.0 s")]
    assert format_sleep(result) == format_idle_check(result.check) + format_sleep(result, streamed=True)


def test_sleep_whose_run_failed_tells_no_worker_and_keeps_the_run_s_code():
    failed = run("sleep", PhaseOutcome("sleep.drain", "masternode", "failed", message="exit code 1"))
    result = Sleep((WORKER,), force=True, run=failed)
    assert format_sleep(result) == [summary(failed)]
    assert result.exit_code == 1


def test_sleep_plan_without_force_says_the_idle_check_decides_first():
    plan = run("sleep", PhaseOutcome("sleep.power-off", "storagenodet3500", "planned"))
    assert format_sleep(Sleep((WORKER,), plan=True, run=plan)) == [
        Line("(without --force, the idle check of `vmstation sleep --check` decides first)"),
        summary(plan, plan=True)]
    assert format_sleep(Sleep((WORKER,), plan=True, force=True, run=plan)) == [summary(plan, plan=True)]
