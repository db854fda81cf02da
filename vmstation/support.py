"""Upstream support windows: is a cluster's Kubernetes (or RKE2) line still supported, and what to move to.

Pure: a version and a date in, a sentence out ("" while the line is supported). The end-of-life dates
are versions.KUBERNETES_END_OF_LIFE (kubernetes.io/releases); an RKE2 line follows its Kubernetes minor.
"""

from __future__ import annotations

import datetime
import re

from vmstation import versions


def kubernetes_notice(version: str, today: datetime.date | None = None) -> str:
    """A preflight notice when Kubernetes ``version`` ("1.29.15") is past its upstream end of life."""
    return _notice("Kubernetes", version, today)


def rke2_notice(version: str, today: datetime.date | None = None) -> str:
    """The same for an RKE2 release ("v1.29.15+rke2r1"): its line leaves support with its Kubernetes minor."""
    return _notice("RKE2", version, today)


def supported_lines(today: datetime.date) -> list[str]:
    """The Kubernetes minors still in upstream support on ``today``, oldest first."""
    return [minor for minor, end in sorted(versions.KUBERNETES_END_OF_LIFE.items(), key=lambda kv: minor_key(kv[0]))
            if datetime.date.fromisoformat(end) >= today]


def _notice(product: str, version: str, today: datetime.date | None) -> str:
    today = today or datetime.date.today()
    minor = minor_of(version)
    end = versions.KUBERNETES_END_OF_LIFE.get(minor)
    if end is None or datetime.date.fromisoformat(end) >= today:
        return ""
    supported = supported_lines(today)
    move = (f"move to {supported[-1]} (supported until {versions.KUBERNETES_END_OF_LIFE[supported[-1]]})"
            + (f" or {supported[0]}" if len(supported) > 1 else "")) if supported else \
        "move to a supported line (kubernetes.io/releases)"
    return (f"{product} {version}: the {minor} line left upstream support on {end} (no more security fixes); "
            f"{move}")


def minor_of(version: str) -> str:
    """``"1.29"`` for "1.29.15", "v1.35.7+rke2r1" or "v1.29"; "" for anything else."""
    match = re.match(r"v?(\d+)\.(\d+)", version)
    return f"{match[1]}.{match[2]}" if match else ""


def minor_key(minor: str) -> tuple[int, int]:
    """``(1, 29)`` for "1.29": minors in their numeric order."""
    major, _, rest = minor.partition(".")
    return int(major), int(rest)
