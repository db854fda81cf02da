"""ssh_config as OpenSSH reads it, on real sshd hosts (prefix vmsop, 10.77.57.0/24, bridge vmsop0).

Issue 12 item 3/4 and issue 11 item 4: a host on a non-22 port whose user is set only in ssh_config is
reached as that user on that port; a refused port fails at once, not after the retry deadline; a
passphrase-protected key with no agent says to run ssh-add; a ProxyJump hop is checked like a host (its key in
known_hosts, its address inside VMSTATION_ALLOWED_NETWORKS) or refused; and every SSH client the engine
creates on the way has vmstation's host-key policy, never AutoAddPolicy.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from vmstation.errors import ConnectError, HostKeyError
from vmstation.inventory import load_text
from vmstation.testing.known_hosts import KnownHost, write_known_hosts
from vmstation.transport import SshOptions, connect

PORT = 2222
INVENTORY = """
[clusters.lab]
kind = "kubeadm"
[hosts.target]
address = "{address}"
cluster = "lab"
roles = ["control-plane"]
"""


@pytest.fixture(scope="module")
def lab():
    """Two sshd hosts; host 0 also runs an sshd on port 2222 (the one ssh_config points at)."""
    if os.geteuid() != 0:
        pytest.skip("sshd hosts need root: network namespaces, a bridge and sshd")
    from vmstation.testing.sshd_hosts import SSHD, SshdHostSet

    with SshdHostSet(count=2, prefix="vmsop", subnet="10.77.57.0/24", bridge="vmsop0") as hosts:
        hostdir = hosts.workdir / hosts[0].name
        config = hostdir / "sshd_config"
        (hostdir / "sshd_2222_config").write_text(config.read_text().replace("Port 22\n", f"Port {PORT}\n"))
        daemon = subprocess.Popen(["ip", "netns", "exec", hosts[0].name, SSHD, "-D", "-f",
                                   str(hostdir / "sshd_2222_config"), "-E", str(hostdir / "sshd_2222.log")],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_banner(hosts[0].address, PORT)
            yield hosts
        finally:
            daemon.terminate()
            daemon.wait(timeout=10)


def _wait_for_banner(address: str, port: int) -> None:
    from vmstation.transport import ssh_answers

    deadline = time.monotonic() + 15
    while not ssh_answers(address, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no sshd on {address}:{port}")
        time.sleep(0.05)


def target(address: str):
    """The host as hosts.toml gives it: no ssh_user, ssh_port or ssh_key, so ssh_config may fill them."""
    return load_text(INVENTORY.format(address=address)).host("target")


def known_hosts_for(tmp_path: Path, *entries) -> Path:
    return write_known_hosts(tmp_path / "known_hosts", [KnownHost((address,), port, host.host_key.public_line)
                                                        for host, address, port in entries])


def who(connection) -> tuple[str, str]:
    """(login user, "client-address server-port") as the host saw the session."""
    out = connection.run("id -un; set -- $SSH_CONNECTION; echo \"$1 $4\"", sudo=False).stdout.split("\n")
    return out[0], out[1]


def test_port_user_and_key_come_from_ssh_config_where_hosts_toml_is_silent(lab, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(f"Host target\n  HostName {lab[0].address}\n  User vmstation-sudo\n  Port {PORT}\n"
                      f"  IdentityFile {lab.client_key}\n")
    options = SshOptions(known_hosts=str(known_hosts_for(tmp_path, (lab[0], lab[0].address, PORT))),
                         ssh_config=str(config), deadline=10)
    connection = connect(target(lab[0].address), options)
    try:
        user, seen = who(connection)
        assert user == "vmstation-sudo" and seen.endswith(f" {PORT}")
        assert connection.host.ssh_user == "vmstation-sudo" and not connection.host.is_root   # so sudo is used
    finally:
        connection.close()


def test_a_refused_port_fails_at_once_and_says_so(lab, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(f"Host target\n  Port 2223\n  IdentityFile {lab.client_key}\n")
    options = SshOptions(known_hosts=str(known_hosts_for(tmp_path, (lab[0], lab[0].address, 22))),
                         ssh_config=str(config), deadline=30)
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        connect(target(lab[0].address), options)
    assert time.monotonic() - started < 3          # not the 30 s deadline of retries
    assert f"cannot reach {lab[0].address}:2223" in caught.value.message
    assert "nothing listens there" in caught.value.message


def test_a_passphrase_protected_key_without_an_agent_names_ssh_add(lab, tmp_path, monkeypatch):
    key = tmp_path / "locked_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(key)], check=True)
    authorized = lab.workdir / "authorized_keys"
    original = authorized.read_text()
    authorized.write_text(original + key.with_name(key.name + ".pub").read_text())
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host target\n  IdentityFile {key}\n")
    options = SshOptions(known_hosts=str(known_hosts_for(tmp_path, (lab[0], lab[0].address, 22))),
                         ssh_config=str(config), deadline=10)
    try:
        with pytest.raises(ConnectError) as caught:
            connect(target(lab[0].address), options)
    finally:
        authorized.write_text(original)
    assert f"run `ssh-add {key}`" in caught.value.message and "passphrase-protected" in caught.value.message


# -- ProxyJump: the hop is a host like any other ---------------------------------------------------------


def jump_config(tmp_path: Path, lab) -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host target\n  HostName {lab[1].address}\n  User root\n  IdentityFile {lab.client_key}\n"
                      f"  ProxyJump hop\nHost hop\n  HostName {lab[0].address}\n  User root\n"
                      f"  IdentityFile {lab.client_key}\n")
    return config


def test_proxyjump_goes_through_the_hop_with_both_keys_checked(lab, tmp_path):
    known = known_hosts_for(tmp_path, (lab[0], lab[0].address, 22), (lab[1], lab[1].address, 22))
    options = SshOptions(known_hosts=str(known), ssh_config=str(jump_config(tmp_path, lab)), deadline=10)
    connection = connect(target(lab[1].address), options)
    try:
        user, seen = who(connection)
        assert user == "root" and seen == f"{lab[0].address} 22"      # the session came from the hop
    finally:
        connection.close()


def test_an_unknown_hop_key_is_refused_and_nothing_is_recorded(lab, tmp_path):
    known = known_hosts_for(tmp_path, (lab[1], lab[1].address, 22))       # the target's key only
    before = known.read_text()
    options = SshOptions(known_hosts=str(known), ssh_config=str(jump_config(tmp_path, lab)), deadline=10)
    with pytest.raises(HostKeyError) as caught:
        connect(target(lab[1].address), options)
    assert caught.value.message.startswith(f"unknown host key for {lab[0].address} (its ProxyJump hop")
    assert known.read_text() == before


def test_a_hop_outside_the_allowed_networks_is_refused_before_any_packet(lab, tmp_path, monkeypatch):
    known = known_hosts_for(tmp_path, (lab[0], lab[0].address, 22), (lab[1], lab[1].address, 22))
    monkeypatch.setenv("VMSTATION_ALLOWED_NETWORKS", f"127.0.0.0/8,{lab[1].address}/32")
    options = SshOptions(known_hosts=str(known), ssh_config=str(jump_config(tmp_path, lab)), deadline=10)
    log = lab.workdir / lab[0].name / "sshd.log"
    size = log.stat().st_size
    with pytest.raises(ConnectError) as caught:
        connect(target(lab[1].address), options)
    assert f"{lab[0].address} is outside VMSTATION_ALLOWED_NETWORKS" in caught.value.message
    assert not caught.value.transient
    assert "Connection from" not in log.read_text()[size:]


def test_every_ssh_client_the_engine_creates_checks_host_keys(lab, tmp_path, monkeypatch):
    """Direct, through a hop, and with --trust-new-host-keys: each client's policy at connect time."""
    from vmstation.host_keys import RejectPolicy, TrustNewPolicy

    policies = []
    real_connect = paramiko.SSHClient.connect

    def recording_connect(client, *args, **kwargs):
        policies.append(type(client._policy))
        return real_connect(client, *args, **kwargs)

    monkeypatch.setattr(paramiko.SSHClient, "connect", recording_connect)
    known = known_hosts_for(tmp_path, (lab[0], lab[0].address, 22), (lab[1], lab[1].address, 22))
    for options, address in (
            (SshOptions(known_hosts=str(known), deadline=10), lab[0].address),
            (SshOptions(known_hosts=str(known), ssh_config=str(jump_config(tmp_path, lab)), deadline=10),
             lab[1].address),
            (SshOptions(known_hosts=str(tmp_path / "fresh_known_hosts"), trust_new_host_keys=True, deadline=10),
             lab[0].address)):
        host = target(address)
        if options.ssh_config is None:
            import dataclasses

            host = dataclasses.replace(host, ssh_key=str(lab.client_key), ssh_set=frozenset({"ssh_key"}))
        connect(host, options).close()
    assert len(policies) == 4                    # direct, hop + target, trust-new
    assert set(policies) <= {RejectPolicy, TrustNewPolicy}
    assert policies.count(TrustNewPolicy) == 1
