"""Fixtures of the engine's integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def hosts() -> Iterator[object]:
    """Three sshd hosts for one test module alone (prefix vmse), so a test may stop them or cut their
    connections without disturbing the session-wide ``sshd_hosts``."""
    if os.geteuid() != 0:
        pytest.skip("sshd hosts need root: network namespaces, a bridge and sshd")
    from vmstation.testing.sshd_hosts import SshdHostSet

    with SshdHostSet(count=3, prefix="vmse", subnet="10.77.5.0/24", bridge="vmse0") as host_set:
        yield host_set
