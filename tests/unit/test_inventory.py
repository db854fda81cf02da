"""hosts.toml -> Inventory: the real file, the defaults, and one exact one-line error per broken rule."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.conftest import homelab_inventory
from vmstation.errors import InventoryError
from vmstation.inventory import load, load_text, parse_mac

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
vault = "secrets.vault"

[defaults]
ssh_key = "~/.ssh/id_test"

[power]
wol_broadcast = "10.0.0.255"
jellyfin_api_key = "vault:jellyfin_api_key"

[clusters.debian]
kind = "kubeadm"
api_endpoint = "10.0.0.1:6443"

[clusters.rke2]
kind = "rke2"

[hosts.cp]
address = "10.0.0.1"
cluster = "debian"
roles = ["control-plane"]
always_on = true

[hosts.worker]
address = "10.0.0.2"
cluster = "debian"
roles = ["worker", "jellyfin"]
mac = "aa:bb:cc:dd:ee:02"
media_path = "/srv/media"

[hosts.server]
address = "10.0.0.3"
cluster = "rke2"
roles = ["server"]
ssh_user = "admin"
become_password = "vault:server_sudo"
mac = "aa:bb:cc:dd:ee:03"
"""


def edited(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


# (what is wrong, text replaced in BASE, its replacement, the exact one-line error)
BAD = [
    ("toml syntax", 'kind = "rke2"', "kind = rke2",
     "t.toml: line 15, column 8: TOML syntax: Invalid value"),
    ("unknown top-level key", 'vault = "secrets.vault"', 'vaul = "secrets.vault"',
     "t.toml: key 'vaul': unknown key (did you mean 'vault'?)"),
    ("unknown host key", 'mac = "aa:bb:cc:dd:ee:02"', 'wol_mac = "aa:bb:cc:dd:ee:02"',
     "t.toml: host 'worker': key 'wol_mac': unknown key (did you mean 'mac'?)"),
    ("unknown cluster key", 'api_endpoint = "10.0.0.1:6443"', 'api_endpont = "10.0.0.1:6443"',
     "t.toml: key 'clusters.debian.api_endpont': unknown key (did you mean 'api_endpoint'?)"),
    ("unknown power key", 'wol_broadcast = "10.0.0.255"', 'wol_broadcst = "10.0.0.255"',
     "t.toml: key 'power.wol_broadcst': unknown key (did you mean 'wol_broadcast'?)"),
    ("unknown key, nothing close", 'ssh_key = "~/.ssh/id_test"', 'colour = "blue"',
     "t.toml: key 'defaults.colour': unknown key (allowed: ssh_user, ssh_key, ssh_port, known_hosts)"),
    ("known_hosts twice", 'vault = "secrets.vault"\n\n[defaults]',
     'vault = "secrets.vault"\nknown_hosts = "/a"\n\n[defaults]\nknown_hosts = "/b"',
     "t.toml: key 'known_hosts': set known_hosts at the top level or in [defaults], not both"),
    ("wrong type in defaults", 'ssh_key = "~/.ssh/id_test"', 'ssh_port = "22"',
     "t.toml: key 'defaults.ssh_port': expected an integer, got a string"),
    ("wrong type on a host", "always_on = true", 'always_on = "yes"',
     "t.toml: host 'cp': key 'always_on': expected a boolean, got a string"),
    ("host is not a table", ('[hosts.cp]\naddress = "10.0.0.1"\ncluster = "debian"\nroles = ["control-plane"]\n'
     'always_on = true\n'), '[hosts]\ncp = "10.0.0.1"\n',
     "t.toml: host 'cp': must be a table [hosts.NAME]"),
    ("bad IP", 'address = "10.0.0.2"', 'address = "10.0.0.300"',
     "t.toml: host 'worker': key 'address': '10.0.0.300' is not an IPv4 or IPv6 address"),
    ("bad MAC", 'mac = "aa:bb:cc:dd:ee:02"', 'mac = "aa:bb:cc:dd:ee"',
     "t.toml: host 'worker': key 'mac': 'aa:bb:cc:dd:ee' is not a MAC address like 'aa:bb:cc:dd:ee:ff'"),
    ("MAC pasted from ip link", 'mac = "aa:bb:cc:dd:ee:02"', 'mac = "00:e0:4c:68:cb:bf brd ff:ff:ff:ff:ff:ff"',
     ("t.toml: host 'worker': key 'mac': '00:e0:4c:68:cb:bf brd ff:ff:ff:ff:ff:ff' has text after the MAC "
     "address (pasted from `ip link`?); use '00:e0:4c:68:cb:bf'")),
    ("multicast MAC", 'mac = "aa:bb:cc:dd:ee:02"', 'mac = "01:00:5e:00:00:01"',
     ("t.toml: host 'worker': key 'mac': '01:00:5e:00:00:01' is a multicast/broadcast address, "
     "not a network card's")),
    ("mixed MAC separators", 'mac = "aa:bb:cc:dd:ee:02"', 'mac = "aa-bb:cc:dd:ee:02"',
     "t.toml: host 'worker': key 'mac': 'aa-bb:cc:dd:ee:02' is not a MAC address like 'aa:bb:cc:dd:ee:ff'"),
    ("host of a missing cluster", 'address = "10.0.0.2"\ncluster = "debian"',
     'address = "10.0.0.2"\ncluster = "debain"',
     "t.toml: host 'worker': key 'cluster': cluster 'debain' is not defined (did you mean 'debian'?)"),
    ("cluster without hosts", "[hosts.cp]", '[clusters.spare]\nkind = "rke2"\n\n[hosts.cp]',
     "t.toml: key 'clusters.spare': no host belongs to this cluster"),
    ("two kubeadm control planes", 'roles = ["worker", "jellyfin"]', 'roles = ["control-plane", "jellyfin"]',
     "t.toml: key 'clusters.debian': kubeadm cluster has 2 control planes (cp, worker); vmstation supports one"),
    ("kubeadm without control plane", 'roles = ["control-plane"]', 'roles = ["worker"]',
     "t.toml: key 'clusters.debian': kubeadm cluster has no host with role 'control-plane'"),
    ("rke2 without server", 'roles = ["server"]', 'roles = ["agent"]',
     "t.toml: key 'clusters.rke2': rke2 cluster has no host with role 'server'"),
    ("unknown role", 'roles = ["control-plane"]', 'roles = ["master"]',
     ("t.toml: host 'cp': key 'roles': unknown role 'master' (allowed: control-plane, worker, jellyfin, "
     "storage, server, agent)")),
    ("misspelt role", 'roles = ["control-plane"]', 'roles = ["control_plane"]',
     "t.toml: host 'cp': key 'roles': unknown role 'control_plane' (did you mean 'control-plane'?)"),
    ("role of the other kind", 'roles = ["control-plane"]', 'roles = ["server"]',
     ("t.toml: host 'cp': key 'roles': role 'server' does not exist in kubeadm cluster 'debian' "
     "(use control-plane or worker)")),
    ("no node role", 'roles = ["worker", "jellyfin"]', 'roles = ["jellyfin"]',
     "t.toml: host 'worker': key 'roles': needs exactly one of the roles control-plane, worker"),
    ("duplicate address", 'address = "10.0.0.2"', 'address = "10.0.0.1"',
     "t.toml: host 'worker': key 'address': 10.0.0.1 is also the address of host 'cp'"),
    ("duplicate MAC, other spelling", 'mac = "aa:bb:cc:dd:ee:03"', 'mac = "AA-BB-CC-DD-EE-02"',
     "t.toml: host 'server': key 'mac': aa:bb:cc:dd:ee:02 is also the mac of host 'worker'"),
    ("CIDR with host bits", 'api_endpoint = "10.0.0.1:6443"', ('api_endpoint = "10.0.0.1:6443"\n'
     'pod_cidr = "10.244.0.1/16"'),
     "t.toml: key 'clusters.debian.pod_cidr': '10.244.0.1/16' is not a network: 10.244.0.1/16 has host bits set"),
    ("CIDR without prefix", 'kind = "rke2"', 'kind = "rke2"\nservice_cidr = "10.43.0.0"',
     "t.toml: key 'clusters.rke2.service_cidr': '10.43.0.0' needs a prefix length, e.g. '10.244.0.0/16'"),
    ("overlapping pod and service CIDRs", 'kind = "rke2"', 'kind = "rke2"\npod_cidr = "10.43.128.0/17"',
     "t.toml: key 'clusters.rke2.service_cidr': pod_cidr 10.43.128.0/17 overlaps service_cidr 10.43.0.0/16"),
    ("service CIDR holding a host", 'kind = "rke2"', 'kind = "rke2"\nservice_cidr = "10.0.0.0/16"',
     "t.toml: key 'clusters.rke2.service_cidr': 10.0.0.0/16 contains the address of host 'server'"),
    ("api_endpoint without port", 'api_endpoint = "10.0.0.1:6443"', 'api_endpoint = "10.0.0.1"',
     ("t.toml: key 'clusters.debian.api_endpoint': '10.0.0.1' is not host:port "
     "(e.g. '192.168.4.63:6443', IPv6 as '[::1]:6443')")),
    ("api_endpoint port out of range", 'api_endpoint = "10.0.0.1:6443"', 'api_endpoint = "10.0.0.1:99999"',
     "t.toml: key 'clusters.debian.api_endpoint': port 99999 is out of range 1-65535"),
    ("sleep_method", "always_on = true", 'sleep_method = "hibernate"',
     "t.toml: host 'cp': key 'sleep_method': 'hibernate' is not one of shutdown, suspend"),
    ("non-root user without sudo password", 'become_password = "vault:server_sudo"\n', "",
     ("t.toml: host 'server': key 'become_password': user 'admin' is not root: sudo needs "
     "become_password = \"vault:NAME\" (or passwordless_sudo = true)")),
    ("both sudo ways", 'become_password = "vault:server_sudo"',
     'become_password = "vault:server_sudo"\npasswordless_sudo = true',
     ("t.toml: host 'server': key 'passwordless_sudo': set either become_password or passwordless_sudo = true, "
     "not both")),
    ("literal sudo password", 'become_password = "vault:server_sudo"', 'become_password = "hunter2"',
     ("t.toml: host 'server': key 'become_password': must be a reference like \"vault:NAME\"; a literal secret "
     "does not belong in this file (value not shown)")),
    ("literal API key", 'jellyfin_api_key = "vault:jellyfin_api_key"', 'jellyfin_api_key = "0123abcd"',
     ("t.toml: key 'power.jellyfin_api_key': must be a reference like \"vault:NAME\"; a literal secret "
     "does not belong in this file (value not shown)")),
    ("vault reference without a vault file", 'vault = "secrets.vault"\n', "",
     ("t.toml: host 'server': key 'become_password': refers to the vault but no vault file is configured "
     "(top-level vault = \"secrets.vault\")")),
    ("containerd_source", 'api_endpoint = "10.0.0.1:6443"', ('api_endpoint = "10.0.0.1:6443"\n'
     'containerd_source = "apt"'),
     "t.toml: key 'clusters.debian.containerd_source': 'apt' is not one of debian, docker, tarball"),
    ("tarball without artifacts", 'api_endpoint = "10.0.0.1:6443"', ('api_endpoint = "10.0.0.1:6443"\n'
     'containerd_source = "tarball"'),
     ("t.toml: key 'clusters.debian.containerd_source': containerd_source 'tarball' needs artifacts_dir "
     "(where the release tarball is)")),
    ("containerd_source on rke2", 'kind = "rke2"', 'kind = "rke2"\ncontainerd_source = "docker"',
     ("t.toml: key 'clusters.rke2.containerd_source': rke2 brings its own containerd; containerd_source is "
     "for kubeadm clusters")),
    ("proxy_mode on rke2", 'kind = "rke2"', 'kind = "rke2"\nproxy_mode = "iptables"',
     "t.toml: key 'clusters.rke2.proxy_mode': proxy_mode is for kubeadm clusters"),
    ("selinux on kubeadm", 'kind = "kubeadm"', 'kind = "kubeadm"\nselinux = false',
     "t.toml: key 'clusters.debian.selinux': selinux is for rke2 clusters"),
    ("proxy_mode unknown", 'kind = "kubeadm"', 'kind = "kubeadm"\nproxy_mode = "ipvs"',
     "t.toml: key 'clusters.debian.proxy_mode': 'ipvs' is not one of nftables, iptables"),
    ("accept_old_containerd not a bool", 'kind = "kubeadm"', 'kind = "kubeadm"\naccept_old_containerd = "yes"',
     "t.toml: key 'clusters.debian.accept_old_containerd': expected a boolean, got a string"),
    ("jellyfin_certificate off the jellyfin host", 'roles = ["server"]',
     'roles = ["server"]\njellyfin_certificate = "/etc/jellyfin/jellyfin.pfx"',
     "t.toml: host 'server': key 'jellyfin_certificate': jellyfin_certificate is for the host with role 'jellyfin'"),
    ("jellyfin_certificate relative", 'roles = ["server"]', 'roles = ["server"]\njellyfin_certificate = "x.pfx"',
     "t.toml: host 'server': key 'jellyfin_certificate': 'x.pfx' is not an absolute path"),
    ("two rke2 servers", 'mac = "aa:bb:cc:dd:ee:03"\n"""'[:-4],
     'mac = "aa:bb:cc:dd:ee:03"\n\n[hosts.server2]\naddress = "10.0.0.4"\ncluster = "rke2"\nroles = ["server"]',
     "t.toml: key 'clusters.rke2': rke2 cluster has 2 servers (server, server2); etcd needs an odd number "
     "(docs.rke2.io/install/ha): make one of them an agent, or add a server"),
    ("kubeadm version with v", 'kind = "kubeadm"', 'kind = "kubeadm"\nversion = "v1.29.15"',
     ("t.toml: key 'clusters.debian.version': 'v1.29.15' is not a Kubernetes version like '1.29.15' "
     "(no leading 'v')")),
    ("rke2 version", 'kind = "rke2"', 'kind = "rke2"\nversion = "1.29.15"',
     "t.toml: key 'clusters.rke2.version': '1.29.15' is not an RKE2 release like 'v1.29.15+rke2r1'"),
    ("unknown kind", 'kind = "rke2"', 'kind = "k3s"',
     "t.toml: key 'clusters.rke2.kind': 'k3s' is not a cluster kind (allowed: kubeadm, rke2)"),
    ("cni of the wrong kind", 'kind = "rke2"', 'kind = "rke2"\ncni = "flannel"',
     "t.toml: key 'clusters.rke2.cni': cni 'flannel' is not supported for rke2 (use 'canal')"),
    ("ssh port out of range", 'ssh_user = "admin"', 'ssh_user = "admin"\nssh_port = 70000',
     "t.toml: host 'server': key 'ssh_port': port 70000 is out of range 1-65535"),
    ("missing address", 'address = "10.0.0.3"\n', "",
     "t.toml: host 'server': key 'address': missing (required)"),
    ("host name not a node name", "[hosts.worker]", "[hosts.Worker_1]",
     "t.toml: host 'Worker_1': host name must be a lower-case DNS name (it is the Kubernetes node name)"),
    ("URL with credentials", 'wol_broadcast = "10.0.0.255"',
     'wol_broadcast = "10.0.0.255"\njellyfin_url = "http://me:pw@10.0.0.2:30096"',
     "t.toml: key 'power.jellyfin_url': must not carry credentials (user:password@); value not shown"),
    ("IPv6 broadcast for WoL", 'wol_broadcast = "10.0.0.255"', 'wol_broadcast = "ff02::1"',
     "t.toml: key 'power.wol_broadcast': 'ff02::1' is not an IPv4 address"),
    ("cpu threshold", 'wol_broadcast = "10.0.0.255"', 'wol_broadcast = "10.0.0.255"\ncpu_threshold_percent = 150',
     "t.toml: key 'power.cpu_threshold_percent': 150 is not a percentage above 0 and at most 100"),
    ("control character", 'media_path = "/srv/media"', 'media_path = "/srv/media\\n"',
     "t.toml: host 'worker': key 'media_path': must be a non-empty string without control characters"),
    ("relative media path", 'media_path = "/srv/media"', 'media_path = "srv/media"',
     "t.toml: host 'worker': key 'media_path': 'srv/media' is not an absolute path"),
]


def test_base_inventory_loads():
    inventory = load_text(BASE, "t.toml")
    assert [h.name for h in inventory.hosts] == ["cp", "worker", "server"]


@pytest.mark.parametrize("old, new, expected", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_inventory_is_one_line_naming_file_host_and_key(old, new, expected):
    with pytest.raises(InventoryError) as caught:
        load_text(edited(old, new), "t.toml")
    assert str(caught.value) == expected
    assert "\n" not in str(caught.value)


def test_enough_bad_inventories_are_covered():
    assert len(BAD) >= 25


def test_literal_secret_is_not_echoed():
    secret = "Sup3r-S3cret!"
    with pytest.raises(InventoryError) as caught:
        load_text(edited('become_password = "vault:server_sudo"', f'become_password = "{secret}"'), "t.toml")
    assert secret not in str(caught.value) and secret not in repr(caught.value.args)


def test_real_hosts_toml_is_the_homelab():
    inventory = load(ROOT / "hosts.toml")
    assert inventory.path == str(ROOT / "hosts.toml")
    assert dataclasses.replace(inventory, path="hosts.toml") == homelab_inventory()
    assert inventory.vault_path == ROOT / "secrets.vault"


def test_kind_picks_the_defaults():
    inventory = load_text(BASE, "t.toml")
    debian, rke2 = inventory.cluster("debian"), inventory.cluster("rke2")
    assert (debian.cni, debian.pod_cidr, debian.service_cidr, debian.version) == (
        "flannel", "10.244.0.0/16", "10.96.0.0/12", "1.29.15")
    assert (rke2.cni, rke2.pod_cidr, rke2.service_cidr, rke2.version) == (
        "canal", "10.42.0.0/16", "10.43.0.0/16", "v1.35.7+rke2r1")
    assert rke2.api_endpoint == "10.0.0.3:6443"       # the server's address when not given
    assert (rke2.firewall, rke2.selinux) == ("disabled", True)    # rke2-docs known issue: firewalld off
    assert (debian.containerd_source, debian.proxy_mode, debian.accept_old_containerd) == ("docker", "nftables",
                                                                                           False)


def test_rke2_clusters_of_three_servers_and_agents_load():
    grown = BASE + "".join(f'\n[hosts.{name}]\naddress = "10.0.0.{n}"\ncluster = "rke2"\nroles = ["{role}"]\n'
                           for n, (name, role) in enumerate((("server2", "server"), ("server3", "server"),
                                                              ("agent1", "agent")), start=4))
    inventory = load_text(grown, "t.toml")
    assert [h.name for h in inventory.hosts_of("rke2") if h.has_role("server")] == ["server", "server2", "server3"]
    assert inventory.cluster("rke2").api_endpoint == "10.0.0.3:6443"      # the first server's


def test_defaults_apply_unless_the_host_says_otherwise():
    inventory = load_text(BASE, "t.toml")
    assert inventory.host("cp").ssh_key == "~/.ssh/id_test"
    assert inventory.host("cp").ssh_user == "root"
    assert inventory.host("server").ssh_user == "admin"
    assert inventory.known_hosts == "~/.ssh/known_hosts"


def test_known_hosts_at_the_top_level():
    text = edited('vault = "secrets.vault"', 'vault = "secrets.vault"\nknown_hosts = "/etc/vmstation/known_hosts"')
    assert load_text(text, "t.toml").known_hosts == "/etc/vmstation/known_hosts"


def test_mac_is_normalised_and_ipv6_endpoint_accepted():
    text = edited('mac = "aa:bb:cc:dd:ee:02"', 'mac = "AA-BB-CC-DD-EE-0F"')
    text = text.replace('address = "10.0.0.1"', 'address = "fd00::1"').replace(
        '"10.0.0.1:6443"', '"[fd00::1]:6443"')
    inventory = load_text(text, "t.toml")
    assert inventory.host("worker").mac == "aa:bb:cc:dd:ee:0f"
    assert inventory.cluster("debian").api_endpoint == "[fd00::1]:6443"


def test_passwordless_sudo_is_an_explicit_choice():
    text = edited('become_password = "vault:server_sudo"', "passwordless_sudo = true")
    host = load_text(text, "t.toml").host("server")
    assert host.passwordless_sudo and host.become_password is None


def test_vault_path_is_relative_to_the_inventory(tmp_path):
    (tmp_path / "hosts.toml").write_text(BASE)
    assert load(tmp_path / "hosts.toml").vault_path == tmp_path / "secrets.vault"


def test_missing_file_is_an_inventory_error(tmp_path):
    with pytest.raises(InventoryError, match=r"^.*nope\.toml: file not found$"):
        load(tmp_path / "nope.toml")


def test_empty_file_says_hosts_are_needed():
    with pytest.raises(InventoryError) as caught:
        load_text("", "t.toml")
    assert str(caught.value) == "t.toml: key 'clusters': no [clusters.NAME] table: the inventory needs at least one"


unicast_first_octet = st.integers(0, 255).map(lambda b: b & 0xFE)


@given(first=unicast_first_octet, rest=st.lists(st.integers(0, 255), min_size=5, max_size=5),
       upper=st.booleans(), separator=st.sampled_from([":", "-"]))
def test_parse_mac_normalises_any_spelling(first, rest, upper, separator):
    octets = [first, *rest]
    if not any(octets):
        return
    spelled = separator.join(f"{b:02X}" if upper else f"{b:02x}" for b in octets)
    assert parse_mac(spelled) == ":".join(f"{b:02x}" for b in octets)


def test_importing_inventory_stays_cheap():
    code = ("import sys, vmstation.inventory; "
            "print(sorted(m for m in ('yaml', 'cryptography', 'jinja2', 'paramiko') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
