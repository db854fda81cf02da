"""The transport on real sshd hosts (prefix vmse, 10.77.5.0/24): host keys and sudo with a password.

Host keys: an unknown key is refused (nothing changes on the host, known_hosts
untouched), a changed key is refused even with --trust-new-host-keys, and that
option records a key seen for the first time. Sudo: the user ``vmstation-sudo``
whose sudo asks for its password runs a phase as root, and the password shows
up nowhere (ps on the host during the run, sshd's log, the journal, messages,
logs); a wrong password is a SudoError that does not carry it either.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path

import pytest

from vmstation import operations as op
from vmstation import vault
from vmstation.context import RunContext
from vmstation.errors import HostKeyError, SudoError
from vmstation.graph import Graph, Phase, Target, all_hosts
from vmstation.inventory import Cluster, Host, Inventory
from vmstation.runner import RunOptions, run
from vmstation.secrets import Secret, SecretStore
from vmstation.transport import SshOptions, connect
from vmstation.testing.known_hosts import KnownHost, write_known_hosts


def host_of(hosts, index: int, **fields) -> Host:
    return Host(name=hosts[index].name, address=hosts[index].address, cluster="lab", roles=("worker",),
                ssh_key=str(hosts.client_key), **fields)


def inventory_of(members: tuple[Host, ...], directory: Path, known_hosts: Path, vault_file: str | None = None):
    cluster = Cluster("lab", "kubeadm", "1.29.15", "10.244.0.0/16", "10.96.0.0/12", f"{members[0].address}:6443",
                      "flannel")
    return Inventory(path=str(directory / "hosts.toml"), hosts=members, clusters=(cluster,),
                     known_hosts=str(known_hosts), vault=vault_file)


def file_phase(target: Path) -> Graph:
    phase = Phase("write", "write a file", all_hosts, lambda ctx: [op.File(str(target), "hello\n")])
    return Graph([phase], [Target("t", "t", ("write",))])


# -- host keys -------------------------------------------------------------------------------------


def test_an_unknown_host_key_is_refused_and_nothing_changes(hosts, tmp_path):
    known_hosts = write_known_hosts(tmp_path / "known_hosts", [KnownHost((hosts[1].address,), 22,
                                                                         hosts[1].host_key.public_line)])
    before = known_hosts.read_text()
    host = host_of(hosts, 0)
    with pytest.raises(HostKeyError) as caught:
        connect(host, SshOptions(known_hosts=str(known_hosts), deadline=5))
    message = str(caught.value)
    assert message.startswith(f"{host.name}: unknown host key for {host.address} (ssh-ed25519 ")
    assert f"not in {known_hosts}" in message and "--trust-new-host-keys" in message

    target = hosts[0].root / "unknown-key.txt"
    result = run(file_phase(target), RunContext(inventory_of((host,), tmp_path, known_hosts)),
                 RunOptions("t", ssh=SshOptions(known_hosts=str(known_hosts), deadline=5)))
    (outcome,) = result.outcomes
    assert outcome.status == "failed" and outcome.message.startswith("unknown host key for")
    assert result.exit_code == 1
    assert not target.exists()
    assert known_hosts.read_text() == before


@pytest.mark.parametrize("trust_new", [False, True])
def test_a_changed_host_key_is_refused_even_when_trusting_new_keys(hosts, tmp_path, trust_new):
    # host 0's address, but host 1's key: what a reinstalled host or a man in the middle looks like
    known_hosts = write_known_hosts(tmp_path / "known_hosts", [KnownHost((hosts[0].address,), 22,
                                                                         hosts[1].host_key.public_line)])
    before = known_hosts.read_text()
    with pytest.raises(HostKeyError, match=f"host key for {hosts[0].address} does not match {known_hosts}"):
        connect(host_of(hosts, 0), SshOptions(known_hosts=str(known_hosts), trust_new_host_keys=trust_new,
                                              deadline=5))
    assert known_hosts.read_text() == before


def test_trusting_new_keys_records_the_key_seen_and_it_is_then_checked(hosts, tmp_path):
    known_hosts = tmp_path / "ssh" / "known_hosts"
    host = host_of(hosts, 0)
    connection = connect(host, SshOptions(known_hosts=str(known_hosts), trust_new_host_keys=True, deadline=5))
    try:
        assert connection.run("hostname").stdout.strip() == hosts[0].name
    finally:
        connection.close()
    key_type, key_data = hosts[0].host_key.public_line.split()[:2]
    assert known_hosts.read_text() == f"{host.address} {key_type} {key_data}\n"

    checked = connect(host, SshOptions(known_hosts=str(known_hosts), deadline=5))
    checked.close()
    assert known_hosts.read_text() == f"{host.address} {key_type} {key_data}\n"
    with pytest.raises(HostKeyError):  # the other host is still unknown
        connect(host_of(hosts, 1), SshOptions(known_hosts=str(known_hosts), deadline=5))


# -- sudo with a password ---------------------------------------------------------------------------------


class ProcessWatch:
    """Every command line on this machine (the hosts share its process table), sampled until stopped."""

    def __init__(self):
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "ProcessWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True).stdout
            self.seen.update(out.splitlines())
            self._stop.wait(0.005)


def sudo_inventory(hosts, tmp_path: Path, password: str) -> tuple[Inventory, SecretStore]:
    """An inventory whose host logs in as vmstation-sudo, its sudo password in a real vault."""
    vault_password = tmp_path / "vault-password"
    vault_password.write_text("vault-pass-for-the-test\n")
    (tmp_path / "secrets.vault").write_text(vault.encrypt(f"sudo_password: {password!r}\n".encode(),
                                                          Secret("vault-pass-for-the-test")))
    host = host_of(hosts, 0, ssh_user=hosts.sudo_user, become_password="vault:sudo_password")
    inventory = inventory_of((host,), tmp_path, hosts.known_hosts, vault_file="secrets.vault")
    return inventory, SecretStore.open(inventory, password_file=str(vault_password), prompt=False)


def test_a_phase_runs_as_root_through_sudo_and_the_password_shows_nowhere(hosts, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    password = hosts.sudo_password
    inventory, store = sudo_inventory(hosts, tmp_path, password)
    root = hosts[0].root / f"sudo-{tmp_path.name}"

    def operations(ctx):
        yield op.File(f"{root}/etc/app.conf", "as root\n", mode="0600")
        yield op.Command(op.sh("id -u > {}; sleep 1", f"{root}/whoami"), "who am I")
        yield op.Check("sleep 1; echo captured", "a slow check", capture="slow")

    graph = Graph([Phase("sudo", "through sudo", all_hosts, operations)], [Target("t", "t", ("sudo",))])
    run_ctx = RunContext(inventory, secrets=store)
    with ProcessWatch() as watch:
        result = run(graph, run_ctx, RunOptions("t", ssh=SshOptions(known_hosts=str(hosts.known_hosts))))
    (outcome,) = result.outcomes
    assert outcome.status == "changed", outcome.message
    assert (root / "whoami").read_text() == "0\n"
    conf = root / "etc/app.conf"
    assert (conf.stat().st_uid, conf.stat().st_mode & 0o777, conf.read_text()) == (0, 0o600, "as root\n")
    assert run_ctx.values["slow"] == "captured"

    assert any("sudo -S -p" in line for line in watch.seen)  # the watch did see the run's sudo
    assert not [line for line in watch.seen if password in line]
    assert password not in (hosts.workdir / hosts[0].name / "sshd.log").read_text()
    assert password not in Path(result.journal_path).read_text()
    assert password not in caplog.text
    assert password not in repr(result)


def test_a_wrong_sudo_password_is_a_sudo_error_without_the_password(hosts, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + hosts.sudo_password[::-1]
    host = host_of(hosts, 0, ssh_user=hosts.sudo_user, become_password="vault:sudo_password")
    connection = connect(host, SshOptions(known_hosts=str(hosts.known_hosts), deadline=5), Secret(wrong))
    try:
        with pytest.raises(SudoError) as caught:
            connection.run("true")
    finally:
        connection.close()
    text = f"{caught.value} {caught.value!r} {caught.value.message}"
    assert str(caught.value) == (f"{host.name}: sudo refused the password for user {hosts.sudo_user} "
                                 "(become_password = vault:sudo_password)")
    assert wrong not in text and hosts.sudo_password not in text

    inventory, store = sudo_inventory(hosts, tmp_path, wrong)
    target = hosts[0].root / f"wrong-sudo-{tmp_path.name}"
    result = run(file_phase(target), RunContext(inventory, secrets=store),
                 RunOptions("t", ssh=SshOptions(known_hosts=str(hosts.known_hosts))))
    (outcome,) = result.outcomes
    assert outcome.status == "failed" and "sudo refused the password" in outcome.message
    assert not target.exists()
    for text in (outcome.message, Path(result.journal_path).read_text(), caplog.text,
                 (hosts.workdir / hosts[0].name / "sshd.log").read_text()):
        assert wrong not in text and hosts.sudo_password not in text


def test_sudo_without_a_password_configured_says_so(hosts):
    host = host_of(hosts, 0, ssh_user=hosts.sudo_user)
    connection = connect(host, SshOptions(known_hosts=str(hosts.known_hosts), deadline=5))
    try:
        with pytest.raises(SudoError, match="asked for a password and none is configured"):
            connection.run("true")
    finally:
        connection.close()
