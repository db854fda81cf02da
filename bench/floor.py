"""The paramiko floor: connect, authenticate and run one `true` on every host, in parallel, one process.

    python -m bench.floor hosts.json

No tool can do W in less: one connection and one command per host. Host keys
are checked (known_hosts, parsed once, + RejectPolicy) and TCP_NODELAY is set, as vmstation does.
"""

from __future__ import annotations

import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

import paramiko


def main(path: str) -> int:
    described = json.load(open(path))
    known = paramiko.HostKeys(described["known_hosts"])
    with ThreadPoolExecutor(max_workers=len(described["hosts"])) as pool:
        codes = list(pool.map(lambda host: run_true(host, described, known), described["hosts"]))
    return 0 if all(code == 0 for code in codes) else 1


def run_true(host: dict, described: dict, known: paramiko.HostKeys) -> int:
    sock = socket.create_connection((host["address"], host["port"]), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    for key_type, key in (known.lookup(host["address"]) or {}).items():
        client.get_host_keys().add(host["address"], key_type, key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(host["address"], port=host["port"], username="root", key_filename=described["client_key"],
                       sock=sock, look_for_keys=False, allow_agent=False)
        channel = client.get_transport().open_session()
        channel.exec_command("true")
        return channel.recv_exit_status()
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
