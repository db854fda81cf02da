"""The test hosts themselves: they answer over SSH with checked host keys, sudo asks for its password,
boxes boot systemd and reach apt, and teardown leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import paramiko
import pytest

from vmstation.inventory import load
from vmstation.testing import netns
from vmstation.testing.ssh_client import run


# -- plain sshd hosts ---------------------------------------------------------------


def test_each_sshd_host_answers_as_itself(sshd_hosts, open_ssh):
    for host in sshd_hosts:
        client = open_ssh(host.address, sshd_hosts.known_hosts, sshd_hosts.client_key)
        assert run(client, "hostname; id -u") == (0, f"{host.name}\n0\n")


def test_a_host_key_not_in_known_hosts_is_rejected(sshd_hosts, open_ssh, tmp_path):
    others = tmp_path / "known_hosts"
    others.write_text(sshd_hosts.known_hosts.read_text().replace(sshd_hosts[0].address + " ", "10.77.1.250 "))
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        open_ssh(sshd_hosts[0].address, others, sshd_hosts.client_key)


def test_sudo_user_needs_its_password(sshd_hosts, open_ssh):
    client = open_ssh(sshd_hosts[1].address, sshd_hosts.known_hosts, sshd_hosts.client_key, user="vmstation-sudo")
    assert run(client, "sudo -n true")[0] != 0
    assert run(client, "sudo -S -p '' -k id -u", stdin="not-the-password\n")[0] != 0
    assert run(client, "sudo -S -p '' -k id -u", stdin=sshd_hosts.sudo_password + "\n") == (0, "0\n")


def test_a_stopped_host_answers_nothing_until_started(sshd_hosts):
    host = sshd_hosts[2]
    sshd_hosts.stop(2)
    assert not sshd_hosts.is_running(2) and not netns.ssh_answers(host.address)
    sshd_hosts.start(2)
    assert sshd_hosts.is_running(2) and netns.ssh_answers(host.address)


def test_each_host_has_a_root_directory_of_its_own(sshd_hosts, open_ssh):
    client = open_ssh(sshd_hosts[0].address, sshd_hosts.known_hosts, sshd_hosts.client_key)
    status, _ = run(client, f"mkdir -p {sshd_hosts[0].root}/etc && echo h1 > {sshd_hosts[0].root}/etc/marker")
    assert status == 0 and (sshd_hosts[0].root / "etc/marker").read_text() == "h1\n"
    assert not (sshd_hosts[1].root / "etc/marker").exists()


def test_inventory_written_for_the_hosts_loads(sshd_hosts, tmp_path):
    inventory = load(sshd_hosts.write_inventory(tmp_path / "hosts.toml"))
    first = inventory.host("vmst-h1")
    assert (first.address, first.roles, first.ssh_user, first.ssh_key) == (
        "10.77.1.2", ("control-plane",), "root", str(sshd_hosts.client_key))
    assert [h.roles for h in inventory.hosts[1:]] == [("worker",), ("worker",)]
    assert inventory.known_hosts == str(sshd_hosts.known_hosts)
    assert inventory.cluster("debian").api_endpoint == "10.77.1.2:6443"


def test_sshd_set_teardown_leaves_nothing():
    if os.geteuid() != 0:
        pytest.skip("real test hosts need root")
    from vmstation.testing.sshd_hosts import SshdHostSet

    with SshdHostSet(count=2, prefix="vmstt", subnet="10.77.1.128/26", bridge="vmstt0") as hosts:
        pids = [pid for host in hosts for pid in netns.pids_in(host.name)]
        workdir = hosts.workdir
        assert pids and netns.ssh_answers(hosts[1].address)
    assert hosts.leftovers() == []
    assert not workdir.exists()
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []


# -- boxes ----------------------------------------------------------------------------


def test_each_box_boots_systemd(boxes, open_ssh):
    for box in boxes:
        client = open_ssh(box.address, boxes.known_hosts, boxes.client_key)
        status, text = run(client, "hostname; systemctl is-system-running --wait")
        assert text.split()[0] == box.name
        assert text.split()[1] in ("running", "degraded"), text


def test_box_installs_a_package_through_the_apt_proxy(boxes, open_ssh):
    client = open_ssh(boxes["storagenodet3500"].address, boxes.known_hosts, boxes.client_key)
    status, text = run(client, "apt-get update -q && DEBIAN_FRONTEND=noninteractive "
                               "apt-get install -y -q --no-install-recommends hello")
    assert status == 0, text[-2000:]
    assert run(client, "hello") == (0, "Hello, world!\n")


def test_box_sudo_users(boxes, open_ssh):
    box = boxes["homelab"]
    sudo_user = open_ssh(box.address, boxes.known_hosts, boxes.client_key, user="vmstation-sudo")
    assert run(sudo_user, "sudo -n true")[0] != 0
    assert run(sudo_user, "sudo -S -p '' id -u", stdin=boxes.sudo_password + "\n") == (0, "0\n")
    vagrant = open_ssh(box.address, boxes.known_hosts, boxes.client_key, user="vagrant")
    assert run(vagrant, "sudo -n id -u") == (0, "0\n")


def test_box_set_teardown_leaves_nothing():
    if os.geteuid() != 0:
        pytest.skip("real test hosts need root")
    from vmstation.testing.boxes import BoxSet

    with BoxSet(names=["teardownbox"], prefix="vmsbt", subnet="10.77.2.128/26", bridge="vmsbt0") as box_set:
        pids = netns.pids_in(box_set["teardownbox"].netns)
        assert pids and box_set.is_running("teardownbox")
    assert box_set.leftovers() == []
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []


def test_inventory_written_for_the_boxes_loads(boxes, tmp_path):
    inventory = load(boxes.write_inventory(tmp_path / "hosts.toml"))
    assert [c.name for c in inventory.clusters] == ["debian", "rke2"]
    homelab = inventory.host("homelab")
    assert (homelab.cluster, homelab.roles, homelab.mac) == ("rke2", ("server",), boxes.mac("homelab"))
    assert homelab.apt_proxy == boxes.apt_proxy_url == "http://10.77.2.1:3142"
    assert inventory.cluster("debian").api_endpoint == f"{boxes['masternode'].address}:6443"
