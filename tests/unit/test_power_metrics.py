"""Sleep and wake as metrics: the textfile the idle check and the power events write, checked by promtool's
own exposition-format linter, and the event record's arithmetic (time-to-wake on whose clock)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from vmstation.errors import InputError
from vmstation.power import idle, metrics

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)


def promtool_lint(text: str) -> str:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian package prometheus; make deps)")
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def idle_text(observations, state: idle.IdleState | None = None) -> tuple[str, idle.Decision]:
    config = idle.CheckConfig(idle_hours=2, cpu_threshold_percent=20)
    decision = idle.decide(observations, state or idle.IdleState(), NOW, config)
    return metrics.exposition(metrics.idle_families(observations, decision, NOW.timestamp(), config)), decision


def samples(text: str) -> dict[str, str]:
    return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in text.splitlines() if not line.startswith("#")}


def test_a_busy_check_writes_each_input_and_its_reasons():
    busy = idle.Observations(playing=('alice is playing "Film" on TV',), cpu_percent={"storagenodet3500": 35.5},
                             user_sessions=("bob on pts/0",), running_jobs=("default/backup",))
    text, decision = idle_text(busy)
    promtool_lint(text)
    got = samples(text)
    assert got["vmstation_idle_check_sleep"] == "0"
    assert got["vmstation_idle_jellyfin_playing_sessions"] == "1"
    assert got['vmstation_idle_cpu_percent{host="storagenodet3500"}'] == "35.5"
    assert got["vmstation_idle_logged_in_users"] == "1"
    assert got["vmstation_idle_running_jobs"] == "1"
    assert got["vmstation_idle_seconds"] == "0"
    assert "vmstation_idle_since_timestamp_seconds" not in got
    (info,) = [key for key in got if key.startswith("vmstation_idle_check_info")]
    # The quotes of the Jellyfin title are escaped, the reasons joined in the policy's order.
    assert 'decision="stay-awake"' in info
    assert 'reason="Jellyfin: alice is playing \\"Film\\" on TV; storagenodet3500: CPU 35.5%' in info


def test_a_quiet_check_writes_since_when_and_how_long():
    since = NOW - timedelta(hours=3)
    text, decision = idle_text(idle.Observations(cpu_percent={"storagenodet3500": 1.0}), idle.IdleState(since))
    promtool_lint(text)
    got = samples(text)
    assert decision.sleep and got["vmstation_idle_check_sleep"] == "1"
    assert float(got["vmstation_idle_since_timestamp_seconds"]) == since.timestamp()
    assert float(got["vmstation_idle_seconds"]) == 3 * 3600
    assert float(got["vmstation_idle_needed_seconds"]) == 2 * 3600


def test_long_reasons_are_bounded_in_the_label():
    many = idle.Observations(running_jobs=tuple(f"ns/job-{i}" for i in range(50)))
    text, _ = idle_text(many)
    (info,) = [line for line in text.splitlines() if line.startswith("vmstation_idle_check_info")]
    reason = info.split('reason="', 1)[1].rsplit('"', 1)[0]
    assert len(reason) == metrics.LABEL_LIMIT and reason.endswith("...")


def test_the_scheduled_check_writes_its_textfile_atomically(tmp_path):
    config = tmp_path / "idle.json"
    config.write_text(json.dumps({"idle_hours": 0, "cpu": {}, "kubectl": []}))
    textfile = tmp_path / "textfile" / "vmstation_idle.prom"
    assert idle.main(["--config", str(config), "--state", str(tmp_path / "state.json"),
                      "--textfile", str(textfile)]) == 0
    text = textfile.read_text()
    promtool_lint(text)
    assert oct(textfile.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in textfile.parent.iterdir()] == ["vmstation_idle.prom"]      # no temporary left
    assert "vmstation_idle_check_timestamp_seconds" in text


def test_sleep_then_wake_from_masternode_measures_on_its_own_clock():
    record = metrics.PowerRecord()
    record = metrics.apply_event(record, "sleep-start", ["w"], 100.0)
    record = metrics.apply_event(record, "asleep", ["w"], 160.0)
    assert record.workers["w"].asleep and record.workers["w"].sleeps == 1
    record = metrics.apply_event(record, "wake-start", ["w"], 1000.0)
    record = metrics.apply_event(record, "awake", ["w"], 1090.0, seconds=42.5)
    worker = record.workers["w"]
    assert (worker.asleep, worker.wake_start, worker.wake_end, worker.wake_seconds) == (False, 1000.0, 1042.5, 42.5)


def test_wake_from_the_operators_machine_brings_only_the_seconds():
    record = metrics.apply_event(metrics.PowerRecord(), "asleep", ["w"], 100.0)
    worker = metrics.apply_event(record, "awake", ["w"], 500.0, seconds=30.0).workers["w"]
    assert (worker.wake_start, worker.wake_end, worker.wake_seconds) == (470.0, 500.0, 30.0)


def test_an_old_packet_does_not_count_for_a_later_wake():
    record = metrics.apply_event(metrics.PowerRecord(), "wake-start", ["w"], 10.0)
    record = metrics.apply_event(record, "asleep", ["w"], 100.0)
    worker = metrics.apply_event(record, "awake", ["w"], 500.0).workers["w"]
    assert worker.wake_end == 500.0 and worker.wake_seconds is None


def test_power_events_cli_writes_record_and_textfile(tmp_path):
    state, textfile = tmp_path / "events.json", tmp_path / "vmstation_power.prom"
    common = ["--state", str(state), "--textfile", str(textfile)]
    for event in ("sleep-start", "asleep", "wake-start"):
        assert metrics.main([event, "--nodes", "a,b", *common]) == 0
    assert metrics.main(["awake", "--nodes", "a", "--seconds", "12.5", *common]) == 0
    text = textfile.read_text()
    promtool_lint(text)
    got = samples(text)
    assert got['vmstation_power_asleep{worker="a"}'] == "0" and got['vmstation_power_asleep{worker="b"}'] == "1"
    assert got['vmstation_power_wake_duration_seconds{worker="a"}'] == "12.5"
    assert 'vmstation_power_wake_duration_seconds{worker="b"}' not in got
    assert got['vmstation_power_sleeps_total{worker="b"}'] == "1"
    assert json.loads(state.read_text())["workers"]["a"]["wakes"] == 1


def test_asleep_is_recorded_only_once_the_worker_stops_answering(tmp_path):
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = metrics.main(["asleep", "--nodes", "w", "--down", f"127.0.0.1:{port}", "--timeout", "1.5",
                             "--state", str(tmp_path / "s.json"), "--textfile", str(tmp_path / "p.prom")])
    assert code == 1 and not (tmp_path / "p.prom").exists()
    code = metrics.main(["asleep", "--nodes", "w", "--down", f"127.0.0.1:{port}", "--timeout", "5",
                         "--state", str(tmp_path / "s.json"), "--textfile", str(tmp_path / "p.prom")])
    assert code == 0 and 'vmstation_power_asleep{worker="w"} 1' in (tmp_path / "p.prom").read_text()


def test_an_unreadable_record_is_bad_input_naming_the_file(tmp_path, capsys):
    state = tmp_path / "events.json"
    state.write_text("{not json")
    assert metrics.main(["asleep", "--nodes", "w", "--state", str(state), "--textfile", str(tmp_path / "p")]) == 2
    assert f"{state}: power event record unreadable" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown power event"):
        metrics.apply_event(metrics.PowerRecord(), "nap", ["w"], 1.0)


def test_the_state_the_dashboards_draw_follows_the_events():
    record, states = metrics.PowerRecord(), []
    for moment, event in enumerate(("sleep-start", "asleep", "wake-start", "awake")):
        record = metrics.apply_event(record, event, ["w"], float(moment + 1), seconds=0.5 if event == "awake" else None)
        states.append(record.workers["w"].state)
    assert states == [metrics.FALLING_ASLEEP, metrics.ASLEEP, metrics.WAKING, metrics.AWAKE]
    assert metrics.WorkerPower().state == metrics.AWAKE
