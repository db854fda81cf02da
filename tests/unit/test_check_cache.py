"""Config checks remembered by the digest of what they checked (issue 16, item 2): passes only."""

from __future__ import annotations

import json

import pytest

from vmstation import check_cache
from vmstation.config_checks import check_containerd_config


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A new process's view: nothing in memory, the file under ``tmp_path``."""
    monkeypatch.setattr(check_cache, "_passed", set())
    monkeypatch.setattr(check_cache, "_new", [])
    check_cache.use(tmp_path / "checks.json")
    yield tmp_path / "checks.json"
    check_cache.use(None)


def counting():
    calls = []

    @check_cache.remembered
    def check(text: str, strict: bool = True) -> list[str]:
        calls.append(text)
        return [] if text.startswith("good") else [f"bad: {text}"]
    return check, calls


def test_a_pass_is_remembered_across_processes_and_a_changed_or_failing_text_is_checked_again(fresh, monkeypatch):
    check, calls = counting()
    assert check("good 1") == [] and check("bad 1") == ["bad: bad 1"]
    check_cache.save()
    stored = json.loads(fresh.read_text())
    assert len(stored["passed"]) == 1 and (fresh.stat().st_mode & 0o777) == 0o600

    monkeypatch.setattr(check_cache, "_passed", set())      # the next run: only the file remains
    monkeypatch.setattr(check_cache, "_loaded", False)
    check, calls = counting()
    assert check("good 1") == [] and calls == []               # not checked again
    assert check("good 2") == [] and calls == ["good 2"]       # a changed file is checked
    assert check("bad 1") == ["bad: bad 1"] and calls[-1] == "bad 1"   # a failure is never remembered
    assert check("good 1", strict=False) == [] and calls[-1] == "good 1"   # other arguments: checked


def test_the_file_is_not_read_until_a_check_is_asked_and_another_checker_ignores_it(fresh, monkeypatch):
    fresh.write_text(json.dumps({"checker": "another", "passed": ["x"]}))
    check_cache.use(fresh.parent / "elsewhere.json")
    check_cache.use(fresh)
    assert check_cache._loaded is False
    check, calls = counting()
    assert check("good 3") == [] and calls == ["good 3"]
    assert check_cache._loaded is True and "x" not in check_cache._passed


def test_a_real_check_still_fails_a_bad_config_after_a_good_one_passed(fresh):
    good = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
            'SystemdCgroup = true\n')
    assert check_containerd_config(good, 2) == []
    assert check_containerd_config(good, 2) == []
    assert check_containerd_config(good.replace("true", "false"), 2) != []
