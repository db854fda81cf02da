"""The network guard: addresses, a malformed VMSTATION_ALLOWED_NETWORKS, and raw frames by interface.

The raw-frame tests use this machine's loopback interface (127.0.0.1 and ::1): real addresses read
with ``ip``, and the refusal happens before scapy is even imported, so nothing is sent.
"""

from __future__ import annotations

import shutil

import pytest

from vmstation import netguard
from vmstation.errors import InputError
from vmstation.power import wol

needs_ip = pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2's ip is not installed")


@pytest.mark.parametrize("address, allowed", [
    ("127.0.0.1", True), ("10.77.3.1", True), ("192.168.4.63", False), ("::1", False),
    ("::ffff:192.168.4.63", False), ("::ffff:127.0.0.1", False), ("masternode", False),
])
def test_addresses_inside_and_outside(monkeypatch, address, allowed):
    monkeypatch.setenv(netguard.ENV, "127.0.0.0/8,10.77.0.0/16")
    assert (netguard.refusal(address) is None) is allowed


def test_unset_restricts_nothing(monkeypatch):
    monkeypatch.delenv(netguard.ENV, raising=False)
    assert netguard.refusal("192.168.4.63") is None
    assert netguard.interface_refusal("no-such-nic") is None


@pytest.mark.parametrize("value", ["10.77.0.0/33", "10.77.0.0/16,bogus", "192.168.4.0/24;rm", ",", "::/129"])
def test_a_malformed_variable_is_bad_input_not_no_restriction(monkeypatch, value):
    monkeypatch.setenv(netguard.ENV, value)
    with pytest.raises(InputError, match=netguard.ENV):
        netguard.refusal("192.168.4.63")


@needs_ip
def test_raw_frames_leave_only_by_an_interface_inside_the_allowed_networks(monkeypatch):
    monkeypatch.setenv(netguard.ENV, "10.77.0.0/16")
    refused = netguard.interface_refusal("lo")
    assert refused is not None and "127.0.0.1" in refused
    monkeypatch.setenv(netguard.ENV, "127.0.0.0/8")
    assert "::1" in netguard.interface_refusal("lo")          # every address counts, not the first
    monkeypatch.setenv(netguard.ENV, "127.0.0.0/8,::1/128")
    assert netguard.interface_refusal("lo") is None


@needs_ip
def test_an_interface_without_addresses_or_unknown_is_refused(monkeypatch):
    monkeypatch.setenv(netguard.ENV, "127.0.0.0/8,::1/128")
    assert "has no address" in netguard.interface_refusal("vms-nonexistent")


@needs_ip
def test_send_raw_refuses_before_sending(monkeypatch):
    monkeypatch.setenv(netguard.ENV, "10.77.0.0/16")
    with pytest.raises(InputError, match="Wake-on-LAN raw frame: interface lo carries 127.0.0.1"):
        wol.send_raw("aa:bb:cc:dd:ee:02", "lo")
    with pytest.raises(InputError, match="interface lo carries"):
        wol.wake("aa:bb:cc:dd:ee:02", interface="lo", method="raw")
