"""Wake-on-LAN: build magic packets and send them.

A magic packet is 6 bytes 0xFF then the target MAC 16 times (102 bytes), with an
optional 4- or 6-byte SecureOn password after it. It travels either as a raw
Ethernet frame with EtherType 0x0842 (needs root or CAP_NET_RAW; sent with scapy)
or as UDP to port 9 of a broadcast address (no privilege needed).

Why a subnet-directed broadcast and a named interface: on a multi-homed sender,
255.255.255.255 leaves by whichever interface the routing table picks, which is
the classic "WoL does nothing" report. There is no acknowledgement either; a
wake is only done when the host answers, which is the caller's job to check.

``remote_send_script`` is the same UDP sender as a one-shot script for masternode
(the architecture has masternode send the packets), needing only python3 there.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import socket
from dataclasses import dataclass

from vmstation import netguard  # here, not in send_udp: a sender that dropped privileges may not read it later
from vmstation.errors import HostError, InputError, Unsupported
from vmstation.inventory import parse_mac as normalise

ETHERTYPE_WOL = 0x0842
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
LIMITED_BROADCAST = "255.255.255.255"
_SENDER = "localhost"          # the host name HostErrors carry: the packets leave from here
_CAP_NET_RAW = 13              # bit in /proc/self/status CapEff
_SIX_HEX_PAIRS = re.compile(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}")  # a SecureOn password


@dataclass(frozen=True)
class WakeResult:
    """What ``wake`` did: the method used (``raw`` or ``udp``) and why, in words."""

    mac: str
    method: str
    reason: str


def wake(
    mac: str,
    *,
    broadcast: str | None = None,
    port: int = 9,
    interface: str | None = None,
    secureon: str | bytes | None = None,
    method: str = "auto",
) -> WakeResult:
    """Send one magic packet for ``mac``; ``method`` is ``auto``, ``raw`` or ``udp``.

    ``auto`` sends a raw frame when it can (privileged, an interface named, scapy
    importable) and falls back to UDP otherwise; the result says which and why.
    """
    if method not in ("auto", "raw", "udp"):
        raise InputError(f"wake method {method!r}: expected 'auto', 'raw' or 'udp'")
    normal = format_mac(parse_mac(mac))
    if method == "raw":
        send_raw(normal, _required_interface(interface), secureon)
        return WakeResult(normal, "raw", f"sent raw frame (EtherType 0x0842) on {interface}")
    refusal = _raw_refusal(interface) if method == "auto" else "UDP asked for"
    if refusal is None:
        try:
            send_raw(normal, interface, secureon)
            return WakeResult(normal, "raw", f"sent raw frame (EtherType 0x0842) on {interface}")
        except HostError as exc:
            refusal = f"raw frame refused: {exc.message}"
    target = broadcast or LIMITED_BROADCAST
    send_udp(normal, target, port, interface, secureon)
    return WakeResult(normal, "udp", f"{refusal}; sent UDP broadcast to {target}:{port}{_via(interface)}")


def parse_mac(text: str) -> bytes:
    """A MAC address by the inventory's rules (one definition of a valid MAC) -> 6 bytes; else InputError."""
    if not isinstance(text, str):
        raise InputError(f"MAC address {text!r}: expected text like 'aa:bb:cc:dd:ee:ff'")
    try:
        return bytes.fromhex(normalise(text).replace(":", ""))
    except ValueError as exc:
        raise InputError(f"MAC address {text!r}: {exc}") from None


def format_mac(mac: bytes) -> str:
    """6 bytes -> ``aa:bb:cc:dd:ee:ff`` (lower case)."""
    return ":".join(f"{byte:02x}" for byte in mac)


def magic_packet(mac: str | bytes, secureon: str | bytes | None = None) -> bytes:
    """The 102-byte magic packet for ``mac``, plus the SecureOn password when one is given."""
    target = parse_mac(mac) if isinstance(mac, str) else bytes(mac)
    if len(target) != 6:
        raise InputError(f"MAC address {target.hex()!r}: expected 6 bytes, got {len(target)}")
    return b"\xff" * 6 + target * 16 + _secureon_bytes(secureon)


def send_raw(mac: str | bytes, interface: str, secureon: str | bytes | None = None) -> None:
    """Send the magic packet as a broadcast Ethernet frame (EtherType 0x0842) on ``interface``.

    Needs root or CAP_NET_RAW. With VMSTATION_ALLOWED_NETWORKS set, the frame leaves only by an
    interface whose addresses lie inside those networks (netguard). scapy is imported here, not at
    module import, because it takes about a second to load and the UDP path never needs it.
    """
    from vmstation.netguard import interface_refusal

    payload = magic_packet(mac, secureon)
    refused = interface_refusal(interface)
    if refused:
        raise InputError(f"Wake-on-LAN raw frame: {refused}")
    try:
        from scapy.layers.l2 import Ether
        from scapy.packet import Raw
        from scapy.sendrecv import sendp
    except ImportError as exc:
        raise Unsupported(_SENDER, "scapy is not installed (pip install scapy)") from exc
    frame = Ether(dst=BROADCAST_MAC, type=ETHERTYPE_WOL) / Raw(load=payload)
    try:
        sendp(frame, iface=interface, verbose=False)
    except PermissionError as exc:
        raise Unsupported(_SENDER, f"raw frame on {interface}: not permitted (needs root or CAP_NET_RAW)") from exc
    except (OSError, ValueError) as exc:
        raise HostError(_SENDER, f"raw frame on {interface}: {_os_reason(exc)}") from exc


def send_udp(
    mac: str | bytes,
    broadcast: str,
    port: int = 9,
    interface: str | None = None,
    secureon: str | bytes | None = None,
) -> None:
    """Send the magic packet as one UDP datagram to ``broadcast:port``, bound to ``interface`` when named."""
    payload = magic_packet(mac, secureon)
    address = _ipv4(broadcast)
    _check_port(port)
    refused = netguard.refusal(address)
    if refused:
        raise InputError(f"Wake-on-LAN broadcast {refused}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if interface:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            sock.sendto(payload, (address, port))
        except OSError as exc:
            raise HostError(_SENDER, f"UDP to {address}:{port}{_via(interface)}: {_os_reason(exc)}") from exc


def remote_send_script(macs: list[str], broadcast: str, port: int = 9, interface: str | None = None) -> str:
    """A POSIX sh script that sends one UDP magic packet per MAC from the host that runs it.

    The Python program is fixed text; every value reaches it as a quoted argument.
    No SecureOn password here: it would have to sit in argv on the remote host.
    """
    if not macs:
        raise InputError("Wake-on-LAN: no MAC addresses to wake")
    normal = [format_mac(parse_mac(mac)) for mac in macs]
    _check_port(port)
    args = [_ipv4(broadcast), str(port), interface or "", *normal]
    return (
        "#!/bin/sh\n"
        "# vmstation: send Wake-on-LAN magic packets (UDP broadcast) from this host\n"
        "set -eu\n"
        f"exec python3 -c {shlex.quote(_REMOTE_PROGRAM)} {' '.join(shlex.quote(a) for a in args)}\n"
    )


# The remote sender: stdlib only, re-validates what it is given, one line per packet.
_REMOTE_PROGRAM = """\
import re, socket, sys
broadcast, port, interface, macs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
for mac in macs:
    if not re.fullmatch("([0-9a-f]{2}:){5}[0-9a-f]{2}", mac):
        sys.exit("invalid MAC address: %r" % mac)
    packet = b"\\xff" * 6 + bytes.fromhex(mac.replace(":", "")) * 16
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.sendto(packet, (broadcast, port))
    print("sent magic packet for %s to %s:%d%s" % (mac, broadcast, port, " via " + interface if interface else ""))
"""


def _raw_refusal(interface: str | None) -> str | None:
    """Why a raw frame cannot be tried here, or None when it can."""
    if not interface:
        return "raw frame skipped: no interface named"
    if not _can_send_raw():
        return "raw frame refused: not root and no CAP_NET_RAW"
    try:
        import scapy  # noqa: F401  (only asking whether it is there)
    except ImportError:
        return "raw frame skipped: scapy is not installed"
    return None


def _can_send_raw() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_RAW & 1)
    except OSError:
        pass
    return False


def _secureon_bytes(secureon: str | bytes | None) -> bytes:
    """4 or 6 bytes; text as ``aa:bb:cc:dd:ee:ff`` (6) or dotted ``a.b.c.d`` (4), like ether-wake -p.

    Messages never repeat the password: it is a secret.
    """
    if secureon is None:
        return b""
    if isinstance(secureon, bytes):
        password = secureon
    elif re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", secureon) and all(int(p) < 256 for p in secureon.split(".")):
        password = bytes(int(part) for part in secureon.split("."))
    elif _SIX_HEX_PAIRS.fullmatch(secureon):
        password = bytes.fromhex(secureon.replace(secureon[2], ""))
    else:
        raise InputError("SecureOn password: expected 6 hex pairs (aa:bb:cc:dd:ee:ff) or 4 numbers (a.b.c.d)")
    if len(password) not in (4, 6):
        raise InputError(f"SecureOn password: expected 4 or 6 bytes, got {len(password)}")
    return password


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except (ipaddress.AddressValueError, ValueError) as exc:
        raise InputError(f"Wake-on-LAN broadcast address {text!r}: not an IPv4 address") from exc


def _check_port(port: int) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise InputError(f"Wake-on-LAN port {port!r}: expected 1..65535 (usually 9 or 7)")


def _required_interface(interface: str | None) -> str:
    if not interface:
        raise InputError("Wake-on-LAN raw frame: an interface must be named (wol_interface)")
    return interface


def _via(interface: str | None) -> str:
    return f" via {interface}" if interface else ""


def _os_reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
