"""Magic packets, MAC parsing and the remote sender script; UDP sends go to loopback only."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmstation.errors import InputError
from vmstation.power import wol

MAC = "00:e0:4c:68:cb:bf"
MAC_BYTES = bytes.fromhex("00e04c68cbbf")


def test_magic_packet_is_six_ff_then_the_mac_sixteen_times():
    packet = wol.magic_packet(MAC)
    assert len(packet) == 102
    assert packet[:6] == b"\xff" * 6
    assert [packet[6 + 6 * i: 12 + 6 * i] for i in range(16)] == [MAC_BYTES] * 16


@pytest.mark.parametrize("secureon, expected", [
    ("c0:ff:ee:00:11:22", bytes.fromhex("c0ffee001122")),
    ("c0-ff-ee-00-11-22", bytes.fromhex("c0ffee001122")),
    ("192.168.1.7", bytes([192, 168, 1, 7])),
    (b"\x01\x02\x03\x04", b"\x01\x02\x03\x04"),
    (b"secret", b"secret"),
])
def test_secureon_password_follows_the_mac(secureon, expected):
    packet = wol.magic_packet(MAC, secureon)
    assert len(packet) == 102 + len(expected)
    assert packet[102:] == expected


@pytest.mark.parametrize("secureon", [b"12345", b"1234567", "hunter2", "300.1.2.3", "c0:ff:ee:00:11"])
def test_a_bad_secureon_password_is_refused_without_repeating_it(secureon):
    with pytest.raises(InputError) as caught:
        wol.magic_packet(MAC, secureon)
    text = secureon.decode() if isinstance(secureon, bytes) else secureon
    assert text not in str(caught.value)
    assert "SecureOn" in str(caught.value)


@pytest.mark.parametrize("text", [MAC, MAC.upper(), "00-e0-4c-68-cb-bf", " 00:e0:4c:68:cb:bf"])
def test_parse_mac_accepts_the_usual_spellings(text):
    assert wol.parse_mac(text) == MAC_BYTES


@pytest.mark.parametrize("text", [
    "00:e0:4c:68:cb:bf brd ff:ff:ff:ff:ff:ff",    # pasted from `ip link`, the older system's mistake
    "00E04C68CBBF",                               # the inventory's rule: separated pairs only
    "00:e0:4c:68:cb",
    "00:e0-4c:68:cb:bf",
    "00:e0:4c:68:cb:bg",
    "0:e0:4c:68:cb:bf",
    "ff:ff:ff:ff:ff:ff",
    "01:00:5e:00:00:01",
    "00:00:00:00:00:00",
    "",
])
def test_parse_mac_is_strict_and_names_the_offending_value(text):
    with pytest.raises(InputError) as caught:
        wol.parse_mac(text)
    assert repr(text) in str(caught.value)
    assert "\n" not in str(caught.value)


@given(st.binary(min_size=6, max_size=6).filter(lambda b: not b[0] & 1 and b != bytes(6)))
def test_any_unicast_mac_round_trips_and_fills_the_packet(mac):
    text = wol.format_mac(mac)
    assert wol.parse_mac(text) == mac
    assert wol.magic_packet(text) == b"\xff" * 6 + mac * 16


def test_send_udp_delivers_exactly_the_packet(udp_listener):
    sock, port = udp_listener
    wol.send_udp(MAC, "127.0.0.1", port)
    data, _ = sock.recvfrom(2048)
    assert data == wol.magic_packet(MAC)


def test_wake_without_an_interface_uses_udp_and_says_why(udp_listener):
    sock, port = udp_listener
    result = wol.wake(MAC.upper(), broadcast="127.0.0.1", port=port)
    assert sock.recvfrom(2048)[0] == wol.magic_packet(MAC)
    assert result == wol.WakeResult(MAC, "udp", f"raw frame skipped: no interface named; "
                                                f"sent UDP broadcast to 127.0.0.1:{port}")


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "magic"}, "wake method 'magic'"),
    ({"method": "raw"}, "an interface must be named"),
    ({"broadcast": "192.168.4.0/24"}, "broadcast address '192.168.4.0/24'"),
    ({"broadcast": "127.0.0.1", "port": 0}, "port 0"),
])
def test_wake_refuses_bad_input_before_sending(kwargs, message):
    with pytest.raises(InputError, match=message):
        wol.wake(MAC, **kwargs)


def test_importing_wol_does_not_import_scapy():
    code = "import sys, vmstation.power.wol; print('scapy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_remote_script_passes_every_value_as_one_quoted_argument():
    hostile = "eth0; touch /tmp/pwned"
    script = wol.remote_send_script([MAC, "D0-94-66-AD-8B-42"], "10.77.3.255", 7, hostile)
    words = shlex.split(script, comments=True)
    argv = words[words.index("exec"):]
    assert argv[:3] == ["exec", "python3", "-c"]
    assert argv[3] == wol._REMOTE_PROGRAM
    assert argv[4:] == ["10.77.3.255", "7", hostile, MAC, "d0:94:66:ad:8b:42"]
    assert script.startswith("#!/bin/sh\n") and "set -eu" in script


def test_remote_script_refuses_bad_macs_and_empty_lists():
    with pytest.raises(InputError, match="'00:e0:4c:68:cb:bf brd'"):
        wol.remote_send_script(["00:e0:4c:68:cb:bf brd"], "10.77.3.255")
    with pytest.raises(InputError, match="no MAC addresses"):
        wol.remote_send_script([], "10.77.3.255")


def test_remote_script_sends_from_plain_sh_and_python3(udp_listener):
    sock, port = udp_listener
    script = wol.remote_send_script([MAC, "d0:94:66:ad:8b:42"], "127.0.0.1", port)
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"sent magic packet for {MAC} to 127.0.0.1:{port}",
                                        f"sent magic packet for d0:94:66:ad:8b:42 to 127.0.0.1:{port}"]
    received = {sock.recvfrom(2048)[0] for _ in range(2)}
    assert received == {wol.magic_packet(MAC), wol.magic_packet("d0:94:66:ad:8b:42")}


@pytest.fixture
def udp_listener():
    """A UDP socket on 127.0.0.1 (ephemeral port): the only place these tests send to."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        yield sock, sock.getsockname()[1]
