"""The inventory `make test-vagrant` writes from `vagrant ssh-config` (tests/vagrant/deploy_vms.py).

The public-box mode (a workstation with internet) cannot run on this machine, so its `vagrant ssh-config`
outputs are written here as Vagrant renders them: the template templates/commands/ssh_config/config.erb of
Vagrant 2.3.4 (Debian 12's package) and of Vagrant's main branch (hashicorp/vagrant, which adds
PreferredAuthentications), filled with what Vagrant reports for a VirtualBox VM (NAT port forward on
127.0.0.1, a key per VM under .vagrant/machines/NAME/PROVIDER/, quoted when the path holds a space) and for a
libvirt VM (its management network address). LOCAL_BOX is the output of `make check-vagrant` on this machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.vagrant.deploy_vms import NODES_FILE, VmFacts, parse_ssh_config, write_inventory_files
from vmstation.inventory import load
from vmstation.testing.known_hosts import generate_ed25519

VIRTUALBOX_2_3_4 = """\
Host masternode
  HostName 127.0.0.1
  User vagrant
  Port 2222
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /var/tmp/vmstation-vagrant-Q1w2E3/.vagrant/machines/masternode/virtualbox/private_key
  IdentitiesOnly yes
  LogLevel FATAL
"""

VIRTUALBOX_MAIN_WITH_SPACE = """\
Host storagenodet3500
  HostName 127.0.0.1
  User vagrant
  Port 2200
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "/Users/Jane Doe/tmp/vmstation-vagrant-Q1w2E3/.vagrant/machines/storagenodet3500/virtualbox/private_key"
  IdentitiesOnly yes
  PreferredAuthentications gssapi-keyex,gssapi-with-mic,publickey,keyboard-interactive
  LogLevel FATAL
"""

LIBVIRT_MAIN = """\
Host homelab
  HostName 192.168.121.57
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /var/tmp/vmstation-vagrant-Q1w2E3/.vagrant/machines/homelab/libvirt/private_key
  IdentitiesOnly yes
  PreferredAuthentications gssapi-keyex,gssapi-with-mic,publickey,keyboard-interactive
  LogLevel FATAL
"""

# Local box (VMSTATION_VAGRANT_LOCAL=1, insert_key = false): the box's own key, the management network's DHCP.
LOCAL_BOX = """\
Host masternode
  HostName 10.77.41.180
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /var/tmp/vmstation-vagrant-YPEU5J/box-cache/debian12-f9db1bc7c290/vagrant_ed25519
  IdentitiesOnly yes
  LogLevel FATAL

"""

NODES = json.loads(NODES_FILE.read_text())["nodes"]


def test_parse_ssh_config_takes_user_and_key_of_each_vagrant_version():
    assert parse_ssh_config(VIRTUALBOX_2_3_4)["identityfile"] == \
        "/var/tmp/vmstation-vagrant-Q1w2E3/.vagrant/machines/masternode/virtualbox/private_key"
    spaced = parse_ssh_config(VIRTUALBOX_MAIN_WITH_SPACE)
    assert spaced["identityfile"] == \
        "/Users/Jane Doe/tmp/vmstation-vagrant-Q1w2E3/.vagrant/machines/storagenodet3500/virtualbox/private_key"
    assert (spaced["user"], spaced["port"], spaced["hostname"]) == ("vagrant", "2200", "127.0.0.1")


def test_parse_ssh_config_keeps_the_first_of_several_keys():
    two_keys = LOCAL_BOX.replace("  IdentitiesOnly", "\n  IdentityFile /root/.vagrant.d/insecure_private_key\n"
                                                     "  IdentitiesOnly")
    assert parse_ssh_config(two_keys)["identityfile"].endswith("debian12-f9db1bc7c290/vagrant_ed25519")


def test_parse_ssh_config_without_a_user_is_an_error_naming_the_host():
    with pytest.raises(SystemExit, match="vagrant ssh-config of masternode: no user"):
        parse_ssh_config(LOCAL_BOX.replace("  User vagrant\n", ""))


def _facts(tmp_path: Path, outputs: dict[str, str], interface: str) -> dict[str, VmFacts]:
    keys = {name: generate_ed25519(tmp_path / f"{name}_host_key", f"root@{name}").public_line for name in outputs}
    return {name: VmFacts(parse_ssh_config(text), keys[name], interface) for name, text in outputs.items()}


def test_public_boxes_inventory_uses_the_private_addresses_and_each_vms_own_key(tmp_path):
    outputs = {"masternode": VIRTUALBOX_2_3_4, "storagenodet3500": VIRTUALBOX_MAIN_WITH_SPACE,
               "homelab": LIBVIRT_MAIN}
    facts = _facts(tmp_path, outputs, "eth1")
    inventory = load(write_inventory_files(tmp_path, NODES, facts, apt_proxy=None, local=False))

    hosts = {host.name: host for host in inventory.hosts}
    assert {name: host.address for name, host in hosts.items()} == \
        {"masternode": "10.77.40.11", "storagenodet3500": "10.77.40.12", "homelab": "10.77.40.13"}
    for name, host in hosts.items():
        assert (host.ssh_user, host.ssh_port, host.interface) == ("vagrant", 22, "eth1")
        assert host.ssh_key == parse_ssh_config(outputs[name])["identityfile"]
        assert host.passwordless_sudo and host.apt_proxy is None
    assert hosts["homelab"].os_family == "rhel" and hosts["homelab"].cluster == "rke2"
    assert hosts["storagenodet3500"].media_path == "/srv/media" and hosts["masternode"].always_on
    assert {cluster.name: cluster.artifacts_dir for cluster in inventory.clusters} == {"debian": None, "rke2": None}
    assert inventory.cluster("debian").api_endpoint == "10.77.40.11:6443"


def test_known_hosts_pins_each_vms_host_key_to_its_private_address_and_name(tmp_path):
    facts = _facts(tmp_path, {"masternode": VIRTUALBOX_2_3_4, "storagenodet3500": VIRTUALBOX_MAIN_WITH_SPACE},
                   "enp0s8")
    inventory = load(write_inventory_files(tmp_path, NODES[:2], facts, apt_proxy=None, local=False))

    lines = Path(inventory.known_hosts).read_text().splitlines()
    expected = [f"10.77.40.11,masternode {' '.join(facts['masternode'].host_key.split()[:2])}",
                f"10.77.40.12,storagenodet3500 {' '.join(facts['storagenodet3500'].host_key.split()[:2])}"]
    assert lines == expected
    assert "127.0.0.1" not in Path(inventory.path).read_text()   # never Vagrant's NAT address


def test_local_box_inventory_adds_the_apt_proxy_and_an_empty_artifacts_directory(tmp_path):
    facts = _facts(tmp_path, {"masternode": LOCAL_BOX, "storagenodet3500": LOCAL_BOX}, "eth1")
    inventory = load(write_inventory_files(tmp_path, NODES[:2], facts, apt_proxy="http://10.77.40.1:3142",
                                           local=True))

    assert {host.apt_proxy for host in inventory.hosts} == {"http://10.77.40.1:3142"}
    artifacts = Path(inventory.cluster("debian").artifacts_dir)
    assert artifacts == tmp_path / "artifacts" and list((artifacts / "kubernetes").iterdir()) == []
