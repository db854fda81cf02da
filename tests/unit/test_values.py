"""The parsers of values that become code, paths or configuration (vmstation.values), one rule each."""

from __future__ import annotations

import shutil

import pytest

from tests.unit.test_inventory import BASE, edited
from vmstation import values
from vmstation.errors import InputError, InventoryError
from vmstation.inventory import load_text

HAS_SYSTEMD_ANALYZE = shutil.which("systemd-analyze") is not None


@pytest.mark.parametrize("text, url", [
    ("http://10.0.0.1:3142", "http://10.0.0.1:3142"),
    ("http://10.0.0.1:3142/", "http://10.0.0.1:3142"),
    ("https://Proxy.Lan/", "https://proxy.lan"),
    ("http://[fd00::1]:3142/", "http://[fd00::1]:3142"),
])
def test_proxy_urls_are_rebuilt_from_their_parts(text, url):
    assert values.proxy_url(text) == url


@pytest.mark.parametrize("text", [
    'http://10.0.0.1:3142/";APT::Update::Pre-Invoke {"touch /tmp/pwned-by-apt";};//',
    "http://10.0.0.1:3142/path", "http://10.0.0.1:3142/?q", "http://10.0.0.1:3142/#f", "ftp://10.0.0.1/",
    "http://10.0.0.1:0/", "http://10.0.0.1:70000/", "http://999.0.0.1/", "http://[fd00::zz]/", "http://-bad-/",
    "http:// 10.0.0.1/", "HTTP://10.0.0.1/", "http://10.0.0.1:3142\u2028", "//10.0.0.1:3142",
])
def test_anything_else_is_not_a_proxy(text):
    with pytest.raises(ValueError, match="proxy URL|not an IPv|not a DNS name|out of range"):
        values.proxy_url(text)


def test_a_proxy_with_credentials_is_refused_without_showing_them():
    with pytest.raises(ValueError) as raised:
        values.proxy_url("http://user:hunter2@10.0.0.1:3142/")
    assert "hunter2" not in str(raised.value) and "credentials" in str(raised.value)


@pytest.mark.parametrize("name", ["debian", "rke2", "a", "home-lab-2", "x" * 63])
def test_cluster_names_are_dns_labels(name):
    assert values.cluster_name(name) == name


@pytest.mark.parametrize("name", ["../../../../tmp/evil", "a.b", "-a", "a-", "A", "x" * 64, "a b", "a/b", ".."])
def test_cluster_names_that_would_be_paths_or_bad_labels_are_refused(name):
    with pytest.raises(ValueError, match="DNS label"):
        values.cluster_name(name)


def test_the_path_climbing_cluster_of_the_issue_is_one_inventory_error():
    text = BASE.replace("[clusters.debian]", '[clusters."../../../../tmp/evil"]').replace(
        'cluster = "debian"', 'cluster = "../../../../tmp/evil"')
    with pytest.raises(InventoryError) as raised:
        load_text(text, "t.toml")
    assert str(raised.value).startswith("t.toml: key 'clusters.../../../../tmp/evil': cluster name")


@pytest.mark.parametrize("name", ["eno1", "enp2s0", "wlan0.100", "br_lan", "veth-a", "x" * 15])
def test_interface_names(name):
    assert values.interface_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "x" * 16, "eth0:1", "a/b", "a b", "é" * 8, "eth0\u2028"])
def test_interface_names_linux_would_refuse_or_that_are_unsafe_to_render(name):
    with pytest.raises(ValueError, match="network interface name"):
        values.interface_name(name)


@pytest.mark.parametrize("expression", ["hourly", "daily", "*-*-* 02:00", "Mon..Fri *-*-* 08:00:00",
                                        "*:0/15", "Sat,Sun 10:30"])
def test_calendar_expressions_accepted_with_and_without_systemd_analyze(expression, monkeypatch):
    assert values.calendar(expression) == expression
    monkeypatch.setattr(values, "_systemd_calendar_verdict", lambda value: None)
    assert values.calendar(expression) == expression


@pytest.mark.parametrize("expression", ["hourly\nExecStart=/bin/sh", "hourly;reboot", "%n", "hourly ", "",
                                        "$(reboot)", "every hour", "25:00"])
def test_calendar_expressions_refused(expression, monkeypatch):
    if expression == "25:00" and not HAS_SYSTEMD_ANALYZE:
        pytest.skip("only systemd-analyze knows hours stop at 23")
    with pytest.raises(ValueError, match="calendar expression"):
        values.calendar(expression)
    monkeypatch.setattr(values, "_systemd_calendar_verdict", lambda value: None)
    if expression != "25:00":
        with pytest.raises(ValueError, match="calendar expression"):
            values.calendar(expression)


@pytest.mark.skipif(not HAS_SYSTEMD_ANALYZE, reason="systemd-analyze is not installed")
def test_systemd_analyze_is_the_judge_where_it_is_installed():
    assert values.calendar("daily Europe/Berlin") == "daily Europe/Berlin"     # beyond the strict subset
    with pytest.raises(ValueError, match="systemd-analyze calendar refused it"):
        values.calendar("Mon..Funday 02:00")


def test_check_interval_is_checked_at_load_time():
    text = edited('wol_broadcast = "10.0.0.255"', 'wol_broadcast = "10.0.0.255"\ncheck_interval = "%n"')
    with pytest.raises(InventoryError, match="key 'power.check_interval': '%n' is not a systemd calendar"):
        load_text(text, "t.toml")


def test_local_paths_stay_inside_their_directory(tmp_path):
    assert values.inside(tmp_path, "debian", "admin.conf") == tmp_path / "debian" / "admin.conf"
    for parts in (("..", "x"), ("a/../../x",), ("/etc/passwd",)):
        with pytest.raises(InputError, match="outside"):
            values.inside(tmp_path, *parts)
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(InputError, match="outside"):
        values.inside(tmp_path, "link", "passwd")


def test_an_output_directory_must_not_be_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert values.output_directory(tmp_path / "new") == tmp_path / "new"
    with pytest.raises(InputError, match="not a directory"):
        values.output_directory(tmp_path / "file")
    with pytest.raises(InputError, match="is not a directory"):
        values.output_directory(tmp_path / "file" / "below")


@pytest.mark.parametrize("path", ["/srv/media", "/srv/My Media", "/mnt/disk-1/tv_shows"])
def test_host_paths(path):
    assert values.host_path(path) == path


@pytest.mark.parametrize("path", ["srv", "/srv/../etc", "/srv//x", "/srv/$(reboot)", '/srv/"x', "/srv\u2028x",
                                  "/srv/x ", "/srv/'x"])
def test_host_paths_refused(path):
    with pytest.raises(ValueError, match="path"):
        values.host_path(path)


def test_input_files_must_be_regular(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InputError, match="not a regular file"):
        values.read_input_file(tmp_path / "fifo")
    with pytest.raises(InputError, match="not a regular file"):
        values.read_input_file(tmp_path)
    with pytest.raises(InputError, match="file not found"):
        values.read_input_file(tmp_path / "absent")
    (tmp_path / "big").write_bytes(b"x" * 11)
    with pytest.raises(InputError, match="larger than"):
        values.read_input_file(tmp_path / "big", limit=10)
    assert values.read_input_file(tmp_path / "big", limit=11) == b"x" * 11
