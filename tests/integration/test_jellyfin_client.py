"""The Jellyfin client against the Sessions API double on 127.0.0.1, and the idle check run as masternode would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import traceback
from datetime import timedelta
from pathlib import Path

import pytest

from vmstation.errors import HostError, InputError
from vmstation.power.jellyfin import JellyfinClient, active_playback
from vmstation.testing.jellyfin_double import JellyfinDouble

KEY = "4f0c1b2a9e8d7c6b5a4f3e2d1c0b9a8f"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def jellyfin():
    with JellyfinDouble(api_key=KEY) as double:
        yield double


def test_idle_scenario_has_a_session_but_nothing_playing(jellyfin):
    sessions = JellyfinClient(jellyfin.url, KEY).sessions()
    assert [s.describe() for s in sessions] == ["bob on Jellyfin Android (Pixel 7): nothing playing"]
    assert active_playback(sessions) == []


def test_playing_scenario_counts_as_watching(jellyfin):
    jellyfin.scenario = "playing"
    watching = active_playback(JellyfinClient(jellyfin.url, KEY).sessions())
    assert [s.describe() for s in watching] == ["alice on Jellyfin Web (Firefox): Big Buck Bunny (playing)"]
    assert watching[0].item_type == "Movie"


def test_paused_scenario_counts_only_within_the_grace_period(jellyfin):
    jellyfin.scenario = "paused"
    client = JellyfinClient(jellyfin.url, KEY)
    watching = active_playback(client.sessions())
    assert [s.describe() for s in watching] == [
        "alice on Jellyfin Web (Firefox): Open Movie Hour - The Pilot (paused)"]
    jellyfin.paused_for = timedelta(minutes=40)
    assert active_playback(client.sessions()) == []


def test_the_key_travels_in_the_mediabrowser_authorization_header(jellyfin):
    JellyfinClient(jellyfin.url, KEY).sessions()
    assert [(r.path, r.authorised) for r in jellyfin.requests] == [("/Sessions", True)]


def test_public_info_needs_no_key(jellyfin):
    info = JellyfinClient(jellyfin.url + "/", KEY).public_info()
    assert info["ProductName"] == "Jellyfin Server" and info["Version"] == "10.9.11"
    assert jellyfin.requests[-1].authorised is False      # the key is only sent where it is needed


def test_the_double_also_accepts_x_emby_token_and_refuses_no_key(jellyfin):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(jellyfin.url + "/Sessions", headers={"X-Emby-Token": KEY})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())[0]["UserName"] == "bob"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(jellyfin.url + "/Sessions", timeout=5)
    assert caught.value.code == 401


def test_a_wrong_key_is_a_clear_error_that_never_contains_a_key(jellyfin):
    wrong = "ffffeeeeddddccccbbbbaaaa99998888"
    with pytest.raises(HostError) as caught:
        JellyfinClient(jellyfin.url, wrong).sessions()
    assert str(caught.value) == f"127.0.0.1: Jellyfin at {jellyfin.url}: /Sessions refused the API key (HTTP 401)"
    rendered = "".join(traceback.format_exception(caught.value))
    assert wrong not in rendered and KEY not in rendered
    assert wrong not in repr(JellyfinClient(jellyfin.url, wrong))


def test_an_unreachable_server_is_named():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]          # bound, never listening: connection refused
        with pytest.raises(HostError, match=f"Jellyfin at http://127.0.0.1:{port}: /Sessions unreachable"):
            JellyfinClient(f"http://127.0.0.1:{port}", KEY, timeout=2).sessions()


@pytest.mark.parametrize("url, key, message", [
    ("192.168.4.61:30096", KEY, "expected http"),
    ("http://user:pw@127.0.0.1:8096", KEY, "no credentials or query"),
    ("http://127.0.0.1:8096", 'abc" injected="1', "expected a token"),
])
def test_bad_client_input_is_refused_without_the_key(url, key, message):
    with pytest.raises(InputError, match=message) as caught:
        JellyfinClient(url, key)
    assert key not in str(caught.value)


# ---------------------------------------------------------------------------
# The scheduled check, run the way masternode runs it: python3 -m, stdlib only
# ---------------------------------------------------------------------------


def _run_check(tmp_path: Path, jellyfin: JellyfinDouble, *extra: str) -> dict:
    key_file = tmp_path / "jellyfin-api-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    jobs = tmp_path / "jobs.json"
    jobs.write_text('{"apiVersion": "v1", "kind": "List", "items": []}')
    config = tmp_path / "idle-check.json"
    config.write_text(json.dumps({
        "idle_hours": 2, "cpu_threshold_percent": 101, "jellyfin_url": jellyfin.url,
        "jellyfin_api_key_file": str(key_file), "cpu": {"this-host": "local"}, "cpu_sample_seconds": 0.2,
        # No kubectl or cluster here: a stand-in that prints a JobList, ignoring kubectl's arguments.
        "kubectl": ["sh", "-c", 'cat "$0"', str(jobs)],
    }))
    # -S: no site-packages, proving the check needs nothing but the standard library.
    done = subprocess.run([sys.executable, "-S", "-m", "vmstation.power.idle", "--config", str(config),
                           "--state", str(tmp_path / "state.json"), *extra],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1
    assert KEY not in done.stdout + done.stderr
    return json.loads(done.stdout)


def test_scheduled_check_stays_awake_while_jellyfin_plays(tmp_path, jellyfin):
    jellyfin.scenario = "playing"
    result = _run_check(tmp_path, jellyfin)
    assert result["sleep"] is False and result["idle_since"] is None
    assert "Jellyfin: alice on Jellyfin Web (Firefox): Big Buck Bunny (playing)" in result["reasons"]
    assert json.loads((tmp_path / "state.json").read_text()) == {"idle_since": None}


def test_scheduled_check_sees_no_jellyfin_activity_when_idle(tmp_path, jellyfin):
    result = _run_check(tmp_path, jellyfin, "--dry-run")
    assert not any(reason.startswith(("Jellyfin", "not observed", "Kubernetes")) for reason in result["reasons"])
    assert not (tmp_path / "state.json").exists()


def test_scheduled_check_reports_a_bad_config_with_exit_code_2(tmp_path):
    config = tmp_path / "idle-check.json"
    config.write_text('{"idle_hours": "two"}')
    done = subprocess.run([sys.executable, "-S", "-m", "vmstation.power.idle", "--config", str(config),
                           "--state", str(tmp_path / "state.json")], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"vmstation idle check: {config}: key 'idle_hours': expected a number >= 0"
