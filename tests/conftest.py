"""Fixtures for every test: real hosts to SSH into (root only).

``sshd_hosts``: three plain sshd hosts in network namespaces (under a second to
start). ``boxes``: the homelab's three hosts as systemd-nspawn boxes with
systemd, sudo and apt (a few seconds; the first run also builds the cached base
root, about 40 s). Both are session-wide and skip, saying why, when the tests do
not run as root. Tests that use ``boxes`` are marked ``boxes`` automatically, so
``-m "not boxes"`` leaves them out. ``open_ssh`` opens paramiko connections that
check host keys against the set's known_hosts (RejectPolicy) and closes them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest

from vmstation.testing.ssh_client import connect_checked

BOX_NAMES = ["masternode", "storagenodet3500", "homelab"]

# Nothing in the suite may reach beyond loopback and the test networks it makes (10.77.0.0/16): the default
# hosts.toml describes a real home network. The engine refuses any other destination while this is set, and
# the CLI runs the tests start inherit it.
os.environ["VMSTATION_ALLOWED_NETWORKS"] = "127.0.0.0/8,10.77.0.0/16"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "boxes: needs the systemd-nspawn boxes (root, systemd-nspawn, mmdebstrap)")
    config.addinivalue_line("markers", "drops_privileges: the code under test drops root before it is done; "
                            "tests/integration/test_privilege_drop.py runs these from a clone in a 0700 directory")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "boxes" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.boxes)


@pytest.fixture(scope="session")
def sshd_hosts() -> Iterator[object]:
    _skip_unless_root()
    from vmstation.testing.sshd_hosts import SshdHostSet

    with SshdHostSet(count=3, prefix="vmst", subnet="10.77.1.0/24", bridge="vmst0") as hosts:
        yield hosts


@pytest.fixture(scope="session")
def boxes() -> Iterator[object]:
    _skip_unless_root()
    from vmstation.testing.boxes import BoxSet

    # Overridable so that two suites can run side by side on one machine without sharing boxes.
    prefix = os.environ.get("VMSTATION_BOX_PREFIX", "vmsb")
    subnet = os.environ.get("VMSTATION_BOX_SUBNET", "10.77.2.0/24")
    with BoxSet(names=BOX_NAMES, prefix=prefix, subnet=subnet, bridge=f"{prefix}0") as box_set:
        yield box_set


@pytest.fixture
def open_ssh() -> Iterator[Callable[..., paramiko.SSHClient]]:
    """``open_ssh(address, known_hosts, key, user="root")`` -> a connected client; all closed after the test."""
    clients: list[paramiko.SSHClient] = []

    def connect(address: str, known_hosts: Path, key: Path, user: str = "root") -> paramiko.SSHClient:
        client = connect_checked(address, known_hosts, key, user)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def _skip_unless_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("real test hosts need root: network namespaces, a bridge, sshd and systemd-nspawn")
