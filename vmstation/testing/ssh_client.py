"""Reaching a test host the way a careful client does: host key checked against the set's known_hosts.

For the tests of the harness and for tests that look at a host's state after the
engine ran; the engine itself has its own transport.
"""

from __future__ import annotations

from pathlib import Path

import paramiko


def connect_checked(address: str, known_hosts: Path, key: Path, user: str = "root",
                    port: int = 22) -> paramiko.SSHClient:
    """A connected client; a host key that is missing from ``known_hosts`` or differs raises SSHException."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(address, port=port, username=user, key_filename=str(key), look_for_keys=False,
                       allow_agent=False, timeout=10)
    except BaseException:
        client.close()
        raise
    return client


def run(client: paramiko.SSHClient, command: str, stdin: str | None = None, timeout: float = 600) -> tuple[int, str]:
    """Run ``command``; return (exit status, stdout followed by stderr). ``stdin`` is sent, then closed."""
    channel_in, out, err = client.exec_command(command, timeout=timeout)
    if stdin is not None:
        channel_in.write(stdin)
        channel_in.channel.shutdown_write()
    text = out.read().decode() + err.read().decode()
    return out.channel.recv_exit_status(), text
