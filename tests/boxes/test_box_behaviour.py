"""What a box does that the engine and the power tests rely on: writable cgroups for containerd,
a fixed MAC, power off and on with its disk kept, and a reboot that the box set follows."""

from __future__ import annotations

import time

import paramiko

from vmstation.testing import netns
from vmstation.testing.ssh_client import run


def test_cgroup_controllers_are_writable(boxes, open_ssh):
    client = open_ssh(boxes["masternode"].address, boxes.known_hosts, boxes.client_key)
    status, text = run(client, "mkdir /sys/fs/cgroup/memory/vmst-probe && rmdir /sys/fs/cgroup/memory/vmst-probe"
                               " && findmnt -no OPTIONS /sys/fs/cgroup/memory")
    assert status == 0 and text.startswith("rw,"), text


def test_box_has_its_fixed_mac(boxes, open_ssh):
    box = boxes["storagenodet3500"]
    client = open_ssh(box.address, boxes.known_hosts, boxes.client_key)
    assert run(client, "cat /sys/class/net/eth0/address") == (0, box.mac + "\n")
    assert box.mac == boxes.mac("storagenodet3500") and int(box.mac[:2], 16) & 0b11 == 0b10


def test_box_powers_off_and_on_keeping_its_disk(boxes, open_ssh):
    box = boxes["homelab"]
    client = open_ssh(box.address, boxes.known_hosts, boxes.client_key)
    assert run(client, "echo kept > /root/disk-marker")[0] == 0
    boxes.stop("homelab")
    assert not boxes.is_running("homelab") and not netns.ssh_answers(box.address)
    boxes.start("homelab")
    client = open_ssh(box.address, boxes.known_hosts, boxes.client_key)
    assert run(client, "cat /root/disk-marker") == (0, "kept\n")


def test_a_reboot_inside_the_box_is_followed(boxes, open_ssh):
    box = boxes["masternode"]
    client = open_ssh(box.address, boxes.known_hosts, boxes.client_key)
    assert run(client, "touch /run/before-reboot")[0] == 0  # /run is a tmpfs: a reboot empties it
    client.exec_command("systemctl reboot")
    assert _back_after_reboot(box, boxes, open_ssh)
    assert boxes.is_running("masternode")


def _back_after_reboot(box, boxes, open_ssh) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if not netns.ssh_answers(box.address):
            continue
        try:
            client = open_ssh(box.address, boxes.known_hosts, boxes.client_key)
        except (OSError, paramiko.SSHException):
            continue
        state = run(client, "test -e /run/before-reboot && echo not-yet || systemctl is-system-running --wait")[1]
        if state.strip() in ("running", "degraded"):
            return True
    return False
