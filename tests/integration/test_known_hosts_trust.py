"""--trust-new-host-keys on real sshd hosts (the module's own set: prefix vmse, 10.77.5.0/24).

The bug: a known_hosts without a final newline got the new entry glued onto its last line, and every
later connection failed with paramiko's InvalidHostKey as a raw tuple. Here three hosts are trusted at
once, in parallel threads, into such a file; every key lands on a line of its own, and afterwards each
host connects with strict checking. A glued file is one InputError naming the file and the line.
"""

from __future__ import annotations

import threading

import pytest

from vmstation.errors import InputError
from vmstation.inventory import Host
from vmstation.transport import SshOptions, connect

pytestmark = pytest.mark.hosts


def host_of(hosts, index: int) -> Host:
    return Host(name=hosts[index].name, address=hosts[index].address, cluster="lab", roles=("worker",),
                ssh_key=str(hosts.client_key))


def test_parallel_trust_into_a_file_without_final_newline_then_strict_connections(hosts, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("# the operator's own line, no final newline")
    errors: list[BaseException] = []

    def trust(index: int) -> None:
        try:
            connect(host_of(hosts, index), SshOptions(known_hosts=str(known_hosts), trust_new_host_keys=True,
                                                      deadline=10)).close()
        except BaseException as exc:          # reported below, with the host
            errors.append(exc)

    threads = [threading.Thread(target=trust, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    lines = known_hosts.read_text().splitlines()
    assert lines[0] == "# the operator's own line, no final newline"
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(h.address for h in hosts)
    for index in range(3):
        connection = connect(host_of(hosts, index), SshOptions(known_hosts=str(known_hosts), deadline=10))
        assert connection.run("echo checked").stdout == "checked\n"
        connection.close()


def test_a_glued_known_hosts_is_one_error_naming_the_line(hosts, tmp_path):
    first, second = (" ".join(hosts[i].host_key.public_line.split()[:2]) for i in range(2))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{hosts[0].address} {first}{hosts[1].address} {second}\n")
    with pytest.raises(InputError, match=f"^{known_hosts}: line 1: malformed known_hosts entry"):
        connect(host_of(hosts, 0), SshOptions(known_hosts=str(known_hosts), deadline=5))
