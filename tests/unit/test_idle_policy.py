"""The idle policy: decide() over observations and state, the parsers over real outputs, the state file."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import pytest

from vmstation.errors import InputError
from vmstation.power import idle
from vmstation.power.idle import Decision, IdleState, Observations
from vmstation.power.jellyfin import active_playback, parse_sessions

NOW = datetime(2024, 5, 1, 23, 0, tzinfo=timezone.utc)
QUIET = Observations(cpu_percent={"storagenodet3500": 3.2, "homelab": 19.9})


# ---------------------------------------------------------------------------
# decide()
# ---------------------------------------------------------------------------


def test_first_quiet_check_starts_the_idle_clock(homelab):
    decision = idle.decide(QUIET, IdleState(), NOW, homelab.power)
    assert decision == Decision(False, ("idle for 0m of 2h",), IdleState(idle_since=NOW))


def test_idle_since_persists_and_is_reported_against_the_threshold(homelab):
    state = IdleState(idle_since=NOW - timedelta(hours=1, minutes=10))
    decision = idle.decide(QUIET, state, NOW, homelab.power)
    assert decision.sleep is False
    assert decision.reasons == ("idle for 1h10m of 2h",)
    assert decision.new_state == state


def test_sleep_once_quiet_for_idle_hours(homelab):
    state = IdleState(idle_since=NOW - timedelta(hours=2))
    decision = idle.decide(QUIET, state, NOW, homelab.power)
    assert decision.sleep is True
    assert decision.reasons == ("idle for 2h of 2h: everything quiet, workers may sleep",)
    assert decision.new_state == state


def test_every_reason_to_stay_awake_is_listed_and_the_clock_resets(homelab):
    busy = Observations(
        playing=("alice on Jellyfin Web (Firefox): Big Buck Bunny (playing)",),
        cpu_percent={"storagenodet3500": 20.0, "homelab": 87.25, "masternode": 4.0},
        user_sessions=("root on pts/0 from 192.168.4.20",),
        running_jobs=("backup/restic-28512345",),
        unknown=("Jellyfin: connection refused",),
    )
    decision = idle.decide(busy, IdleState(idle_since=NOW - timedelta(hours=5)), NOW, homelab.power)
    assert decision.sleep is False
    assert decision.new_state == IdleState(idle_since=None)
    assert decision.reasons == (
        "Jellyfin: alice on Jellyfin Web (Firefox): Big Buck Bunny (playing)",
        "homelab: CPU 87.2% (threshold 20%)",
        "storagenodet3500: CPU 20.0% (threshold 20%)",
        "logged in: root on pts/0 from 192.168.4.20",
        "Kubernetes Job running: backup/restic-28512345",
        "not observed: Jellyfin: connection refused (staying awake when unsure)",
    )


def test_a_saved_time_in_the_future_restarts_the_clock(homelab):
    decision = idle.decide(QUIET, IdleState(idle_since=NOW + timedelta(hours=3)), NOW, homelab.power)
    assert decision.new_state == IdleState(idle_since=NOW)
    assert decision.sleep is False


def test_thresholds_come_from_the_inventory_power_table(homelab):
    from dataclasses import replace

    power = replace(homelab.power, idle_hours=0.5, cpu_threshold_percent=2.0)
    decision = idle.decide(QUIET, IdleState(idle_since=NOW - timedelta(minutes=45)), NOW, power)
    assert decision.sleep is False
    assert decision.reasons == ("homelab: CPU 19.9% (threshold 2%)", "storagenodet3500: CPU 3.2% (threshold 2%)")


@pytest.mark.parametrize("span, text", [
    (timedelta(0), "0m"), (timedelta(seconds=59), "0m"), (timedelta(minutes=45), "45m"),
    (timedelta(hours=2), "2h"), (timedelta(hours=1, minutes=10, seconds=30), "1h10m"),
    (timedelta(hours=1, minutes=5), "1h05m"), (timedelta(days=1, minutes=1), "24h01m"), (timedelta(-1), "0m"),
])
def test_format_duration(span, text):
    assert idle.format_duration(span) == text


def test_decision_as_json_is_one_line():
    decision = Decision(False, ("idle for 1h10m of 2h",), IdleState(idle_since=NOW - timedelta(minutes=70)))
    line = decision.as_json(NOW)
    assert "\n" not in line
    assert json.loads(line) == {"sleep": False, "reasons": ["idle for 1h10m of 2h"],
                                "checked_at": "2024-05-01T23:00:00Z", "idle_since": "2024-05-01T21:50:00Z"}


# ---------------------------------------------------------------------------
# Jellyfin: what counts as watching
# ---------------------------------------------------------------------------

def _jellyfin_session(paused: bool, paused_minutes_ago: float | None, playing: bool = True) -> dict:
    entry = {"Id": "c0ff" * 8, "UserName": "alice", "Client": "Jellyfin Web", "DeviceName": "Firefox",
             "LastActivityDate": "2024-05-01T22:59:51.3846921Z",
             "PlayState": {"IsPaused": paused, "CanSeek": True, "PlayMethod": "DirectPlay"}}
    if playing:
        entry["NowPlayingItem"] = {"Name": "The Pilot", "SeriesName": "Open Movie Hour", "Type": "Episode"}
    if paused_minutes_ago is not None:
        entry["LastPausedDate"] = (NOW - timedelta(minutes=paused_minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    return entry


@pytest.mark.parametrize("entry, counts", [
    (_jellyfin_session(paused=False, paused_minutes_ago=None), True),
    (_jellyfin_session(paused=True, paused_minutes_ago=5), True),           # fetching a drink
    (_jellyfin_session(paused=True, paused_minutes_ago=15), False),         # left paused: idle
    (_jellyfin_session(paused=False, paused_minutes_ago=None, playing=False), False),
    ({"Id": "x", "NowPlayingItem": {"Name": "Song"}, "PlayState": {"IsPaused": True}}, True),  # no date: unsure
])
def test_playing_or_briefly_paused_counts_as_watching(entry, counts):
    sessions = parse_sessions([entry])
    assert (active_playback(sessions, now=NOW) == sessions) is counts


def test_sessions_parse_jellyfin_dates_with_seven_fraction_digits():
    (session,) = parse_sessions([_jellyfin_session(paused=True, paused_minutes_ago=5)])
    assert session.last_activity == datetime(2024, 5, 1, 22, 59, 51, 384692, tzinfo=timezone.utc)
    assert session.last_paused == NOW - timedelta(minutes=5)
    assert session.describe() == "alice on Jellyfin Web (Firefox): Open Movie Hour - The Pilot (paused)"


# ---------------------------------------------------------------------------
# Parsers over real outputs
# ---------------------------------------------------------------------------

WHO = """\
root     pts/0        2024-05-01 20:14 (192.168.4.20)
jashan   tty1         2024-05-01 08:02
alice    pts/1        2024-05-01 21:03 (tmux(4012).%0)
"""


def test_parse_who():
    assert idle.parse_who(WHO) == ("root on pts/0 from 192.168.4.20", "jashan on tty1",
                                   "alice on pts/1 from tmux(4012).%0")
    assert idle.parse_who(WHO, own_tty="pts/0") == ("jashan on tty1", "alice on pts/1 from tmux(4012).%0")
    assert idle.parse_who("") == ()


LOGINCTL_252 = """\
      3    0 root         pts/0
     15 1000 jashan seat0 tty1
     42    0 root
"""
LOGINCTL_255 = """\
      2 1000 alice seat0 tty2  active no   -
     42    0 root  -     pts/1 active no   -
     57    0 root  -     -     active no   -
"""
LOGINCTL_256 = """\
      1 1000 alice seat0 1305 user    tty1 no   -
      3 1000 alice -     1342 manager -    no   -
     c7    0 root  -     8120 user    -    no   -
"""


@pytest.mark.parametrize("text, own, expected", [
    (LOGINCTL_252, None, ("root on pts/0 (session 3)", "jashan on tty1 (session 15)")),
    (LOGINCTL_252, "3", ("jashan on tty1 (session 15)",)),
    (LOGINCTL_255, None, ("alice on tty2 (session 2)", "root on pts/1 (session 42)")),
    (LOGINCTL_256, None, ("alice on tty1 (session 1)",)),
    ("", None, ()),
])
def test_parse_loginctl_counts_only_sessions_at_a_terminal(text, own, expected):
    assert idle.parse_loginctl_sessions(text, own_session=own) == expected


PROC_STAT_BEFORE = """\
cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0
intr 1462898 0 9 0 0 0 0 0 0 1 0 0 0 156 0 0 0
ctxt 10947128
btime 1714550400
"""
PROC_STAT_AFTER = "cpu  10132253 290696 3084769 46828783 16733 0 25195 0 175700 0\n"


def test_proc_stat_deltas_give_busy_percent():
    before, after = idle.parse_proc_stat(PROC_STAT_BEFORE), idle.parse_proc_stat(PROC_STAT_AFTER)
    assert before == idle.CpuTimes(busy=13532763, total=60377929)
    assert idle.cpu_percent(before, after) == pytest.approx(100 * 150 / 500)
    assert idle.cpu_percent(after, after) == 0.0
    with pytest.raises(InputError, match="no 'cpu' line"):
        idle.parse_proc_stat("intr 1 2 3\n")


NODE_EXPORTER = """\
# HELP node_cpu_guest_seconds_total Seconds the CPUs spent in guests (VMs) for each mode.
# TYPE node_cpu_guest_seconds_total counter
node_cpu_guest_seconds_total{cpu="0",mode="nice"} 0
node_cpu_guest_seconds_total{cpu="0",mode="user"} 12.5
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 368912.57
node_cpu_seconds_total{cpu="0",mode="iowait"} 120.5
node_cpu_seconds_total{cpu="0",mode="irq"} 0
node_cpu_seconds_total{cpu="0",mode="nice"} 2.07
node_cpu_seconds_total{cpu="0",mode="softirq"} 88.12
node_cpu_seconds_total{cpu="0",mode="steal"} 0
node_cpu_seconds_total{cpu="0",mode="system"} 2411.3
node_cpu_seconds_total{cpu="0",mode="user"} 5120.44
node_cpu_seconds_total{cpu="1",mode="idle"} 3.6891e+05
node_cpu_seconds_total{cpu="1",mode="user"} 5000
# HELP node_load1 1m load average.
node_load1 0.21
"""


def test_node_exporter_cpu_sums_modes_over_cpus_and_skips_guest_time():
    times = idle.parse_node_exporter_cpu(NODE_EXPORTER)
    assert times.busy == pytest.approx(2.07 + 88.12 + 2411.3 + 5120.44 + 5000)
    assert times.total == pytest.approx(times.busy + 368912.57 + 120.5 + 368910)
    with pytest.raises(InputError, match="no node_cpu_seconds_total"):
        idle.parse_node_exporter_cpu("node_load1 0.21\n")


KUBECTL_JOBS = {
    "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
    "items": [
        {"apiVersion": "batch/v1", "kind": "Job",
         "metadata": {"name": "restic-28512345", "namespace": "backup",
                      "ownerReferences": [{"kind": "CronJob", "name": "restic"}]},
         "spec": {"completions": 1, "parallelism": 1},
         "status": {"active": 1, "ready": 1, "startTime": "2024-05-01T22:45:00Z"}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "transcode", "namespace": "media"},
         "status": {"succeeded": 1, "completionTime": "2024-05-01T20:01:12Z",
                    "conditions": [{"type": "Complete", "status": "True"}]}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "broken", "namespace": "default"},
         "status": {"failed": 6, "active": 0, "conditions": [{"type": "Failed", "status": "True"}]}},
    ],
}


def test_kubectl_jobs_running_are_those_with_active_pods():
    assert idle.parse_kubectl_jobs(json.dumps(KUBECTL_JOBS)) == ("backup/restic-28512345",)
    assert idle.parse_kubectl_jobs('{"apiVersion": "v1", "items": [], "kind": "List"}') == ()
    with pytest.raises(InputError, match="not a Kubernetes list"):
        idle.parse_kubectl_jobs("error: You must be logged in to the server (Unauthorized)")


# ---------------------------------------------------------------------------
# The state file and the config file
# ---------------------------------------------------------------------------


def test_state_round_trips_atomically(tmp_path):
    path = tmp_path / "state" / "idle.json"
    assert idle.load_state(path) == IdleState()
    idle.save_state(path, IdleState(idle_since=NOW))
    assert json.loads(path.read_text()) == {"idle_since": "2024-05-01T23:00:00Z"}
    assert idle.load_state(path) == IdleState(idle_since=NOW)
    idle.save_state(path, IdleState())
    assert idle.load_state(path) == IdleState()
    assert os.listdir(path.parent) == ["idle.json"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "idle state unreadable"),
    ('{"idle_since": "yesterday"}', "key 'idle_since'"),
    ("[1, 2]", "key 'idle_since'"),
])
def test_a_broken_state_file_is_named(tmp_path, content, message):
    path = tmp_path / "idle.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as caught:
        idle.load_state(path)
    assert str(caught.value).startswith(str(path))


def test_load_config_reads_the_engine_written_file(tmp_path):
    path = tmp_path / "idle-check.json"
    path.write_text(json.dumps({"idle_hours": 2, "cpu_threshold_percent": 20,
                                "jellyfin_url": "http://192.168.4.61:30096",
                                "jellyfin_api_key_file": "/etc/vmstation/jellyfin-api-key",
                                "cpu": {"storagenodet3500": "http://192.168.4.61:9100/metrics", "masternode": "local"},
                                "kubectl": ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf"]}))
    config = idle.load_config(str(path))
    assert config.kubectl == ("kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf")
    assert config.cpu["masternode"] == "local"
    assert config.paused_grace_minutes == 15.0


@pytest.mark.parametrize("data, message", [
    ({"idle_hour": 2}, "key 'idle_hour': unknown"),
    ({"idle_hours": "2h"}, "key 'idle_hours': expected a number"),
    ({"cpu_threshold_percent": -1}, "key 'cpu_threshold_percent'"),
    ({"cpu": {"storagenodet3500": "ssh://x"}}, "key 'cpu'"),
    ({"kubectl": "kubectl get jobs"}, "key 'kubectl'"),
    ([], "expected a JSON object"),
])
def test_load_config_errors_name_the_file_and_key(tmp_path, data, message):
    path = tmp_path / "idle-check.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message) as caught:
        idle.load_config(str(path))
    assert str(caught.value).startswith(f"{path}: ")
