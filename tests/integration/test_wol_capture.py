"""Wake-on-LAN on a real wire: two network namespaces joined by a veth pair, nothing else.

vmsp-a (10.77.3.1/24, vmsp-a0) sends; vmsp-b (10.77.3.2/24, vmsp-b0) captures with a
raw AF_PACKET socket and reports each magic packet it sees. Both ends of the veth are
created inside the namespaces, so no packet can leave them. Needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmstation.power import wol

REPO = Path(__file__).resolve().parents[2]
SENDER, RECEIVER = "vmsp-a", "vmsp-b"
SENDER_IF, RECEIVER_IF = "vmsp-a0", "vmsp-b0"
BROADCAST = "10.77.3.255"
MAC = "00:e0:4c:68:cb:bf"
OTHER_MAC = "d0:94:66:ad:8b:42"
SECUREON = "c0:ff:ee:00:11:22"
ETHER_BROADCAST = "ff:ff:ff:ff:ff:ff"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2 to create network namespaces")

# Runs inside vmsp-b: print "ready" once bound, then one JSON line per WoL frame or UDP datagram seen.
CAPTURE = r"""
import json, select, socket, struct, sys, time
iface, wanted, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sock.bind((iface, 0))
print("ready", flush=True)
seen = 0
while seen < wanted and time.monotonic() < deadline:
    if not select.select([sock], [], [], 0.2)[0]:
        continue
    frame, address = sock.recvfrom(65535)
    if address[2] == socket.PACKET_OUTGOING:
        continue
    ethertype, record = struct.unpack("!H", frame[12:14])[0], None
    if ethertype == 0x0842:
        record = {"kind": "raw", "payload": frame[14:].hex()}
    elif ethertype == 0x0800 and frame[23] == 17:
        udp = frame[14 + (frame[14] & 0x0F) * 4:]
        length = struct.unpack("!H", udp[4:6])[0]
        record = {"kind": "udp", "dst_ip": socket.inet_ntoa(frame[30:34]),
                  "port": struct.unpack("!H", udp[2:4])[0], "payload": udp[8:length].hex()}
    if record:
        record["dst_mac"] = frame[:6].hex(":")
        print(json.dumps(record), flush=True)
        seen += 1
"""


@pytest.fixture(scope="module")
def wire():
    """The two namespaces and their veth; removed afterwards, and checked to be gone."""
    _remove_namespaces()
    try:
        _ip("netns", "add", SENDER)
        _ip("netns", "add", RECEIVER)
        _ip("link", "add", SENDER_IF, "netns", SENDER, "type", "veth", "peer", "name", RECEIVER_IF, "netns", RECEIVER)
        for namespace, interface, address in ((SENDER, SENDER_IF, "10.77.3.1/24"),
                                              (RECEIVER, RECEIVER_IF, "10.77.3.2/24")):
            _ip("-n", namespace, "addr", "add", address, "dev", interface)
            _ip("-n", namespace, "link", "set", interface, "up")
        yield
    finally:
        _remove_namespaces()
        assert not {SENDER, RECEIVER} & _namespaces()
        assert "vmsp-" not in _ip("-o", "link", "show")


def test_raw_frame_is_ethertype_0842_with_exactly_the_magic_packet(wire):
    frames = _capture_while(_in_sender_python(f"wol.send_raw({MAC!r}, {SENDER_IF!r})"))
    assert frames == [{"kind": "raw", "dst_mac": ETHER_BROADCAST, "payload": wol.magic_packet(MAC).hex()}]
    assert len(bytes.fromhex(frames[0]["payload"])) == 102


def test_raw_frame_carries_a_six_byte_secureon_password(wire):
    frames = _capture_while(_in_sender_python(f"wol.send_raw({MAC!r}, {SENDER_IF!r}, secureon={SECUREON!r})"))
    payload = bytes.fromhex(frames[0]["payload"])
    assert len(payload) == 108
    assert payload == wol.magic_packet(MAC) + bytes.fromhex("c0ffee001122")


def test_udp_goes_to_the_subnet_broadcast_port_9_bound_to_the_interface(wire):
    frames = _capture_while(_in_sender_python(f"wol.send_udp({MAC!r}, {BROADCAST!r}, 9, {SENDER_IF!r})"))
    assert frames == [{"kind": "udp", "dst_ip": BROADCAST, "port": 9, "dst_mac": ETHER_BROADCAST,
                       "payload": wol.magic_packet(MAC).hex()}]


def test_udp_carries_a_six_byte_secureon_password(wire):
    code = f"wol.send_udp({MAC!r}, {BROADCAST!r}, 9, {SENDER_IF!r}, secureon={SECUREON!r})"
    (frame,) = _capture_while(_in_sender_python(code))
    assert bytes.fromhex(frame["payload"]) == wol.magic_packet(MAC) + bytes.fromhex("c0ffee001122")


def test_remote_send_script_runs_with_plain_python3_in_the_sender(wire):
    script = wol.remote_send_script([MAC, OTHER_MAC], BROADCAST, 9, SENDER_IF)
    frames = _capture_while(["ip", "netns", "exec", SENDER, "sh", "-c", script], wanted=2)
    assert [(f["kind"], f["dst_ip"], f["port"], f["payload"]) for f in frames] == [
        ("udp", BROADCAST, 9, wol.magic_packet(MAC).hex()),
        ("udp", BROADCAST, 9, wol.magic_packet(OTHER_MAC).hex()),
    ]


def test_wake_as_root_sends_a_raw_frame(wire):
    code = f"print(wol.wake({MAC!r}, broadcast={BROADCAST!r}, interface={SENDER_IF!r}).reason)"
    frames, output = _capture_while(_in_sender_python(code), with_output=True)
    assert output == f"sent raw frame (EtherType 0x0842) on {SENDER_IF}"
    assert [f["kind"] for f in frames] == ["raw"]


@pytest.mark.drops_privileges
def test_wake_without_privilege_falls_back_to_udp_and_says_why(wire):
    # Drop to nobody after the imports (the interpreter lives under /root, unreadable to nobody).
    code = ("os.setgroups([]); os.setgid(65534); os.setuid(65534); "
            f"print(wol.wake({MAC!r}, broadcast={BROADCAST!r}, interface={SENDER_IF!r}).reason)")
    frames, output = _capture_while(_in_sender_python(code), with_output=True)
    assert output == (f"raw frame refused: not root and no CAP_NET_RAW; "
                      f"sent UDP broadcast to {BROADCAST}:9 via {SENDER_IF}")
    assert [(f["kind"], f["payload"]) for f in frames] == [("udp", wol.magic_packet(MAC).hex())]


def _in_sender_python(code: str) -> list[str]:
    return ["ip", "netns", "exec", SENDER, sys.executable, "-c", f"import os; from vmstation.power import wol; {code}"]


def _capture_while(send: list[str], wanted: int = 1, with_output: bool = False):
    """Start the capture in vmsp-b, run ``send`` once it is listening, return what it saw."""
    capture = subprocess.Popen(["ip", "netns", "exec", RECEIVER, sys.executable, "-c", CAPTURE,
                                RECEIVER_IF, str(wanted), "15"], stdout=subprocess.PIPE, text=True)
    try:
        assert capture.stdout.readline().strip() == "ready"
        sent = subprocess.run(send, capture_output=True, text=True, timeout=60, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert sent.returncode == 0, sent.stderr
        lines = capture.communicate(timeout=30)[0].splitlines()
    finally:
        if capture.poll() is None:
            capture.kill()
            capture.wait()
    frames = [json.loads(line) for line in lines]
    assert len(frames) == wanted
    return (frames, sent.stdout.strip()) if with_output else frames


def _remove_namespaces() -> None:
    for namespace in {SENDER, RECEIVER} & _namespaces():
        _ip("netns", "delete", namespace)


def _namespaces() -> set[str]:
    return {line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()}


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True, timeout=30).stdout
