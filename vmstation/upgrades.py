"""Upgrade chains: kubeadm's rule of one minor version per step, planned before anything moves.

Pure: the cluster's version and the operator's ``--to`` in, the list of versions to pass through out.
kubeadm upgrades one minor at a time ("Skipping MINOR versions when upgrading is unsupported",
kubernetes.io "Upgrading kubeadm clusters"); RKE2 asks the same (docs.rke2.io "Upgrades": upgrade one
minor at a time). A request to jump two minors becomes two steps: each intermediate step goes to the
newest patch of its minor in versions.KUBERNETES_RELEASES, the last one to exactly what was asked
(``1.31`` or ``1.31.x`` meaning that minor's newest patch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmstation import versions
from vmstation.errors import InputError
from vmstation.support import minor_key, minor_of

_KUBEADM = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+|x))?$")
_RKE2 = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+|x))?(\+rke2r\d+)?$")


@dataclass(frozen=True)
class UpgradeStep:
    number: int           # 1-based, as the plan and the journal show it
    from_version: str
    to_version: str

    @property
    def minor(self) -> str:
        return minor_of(self.to_version)


def kubeadm_chain(current: str, to: str) -> list[UpgradeStep]:
    """The steps from ``current`` ("1.29.15") to ``to`` ("1.31", "1.31.x", "1.31.14", "v1.31.14")."""
    wanted = _resolve(to, _KUBEADM, "--to", lambda minor: versions.KUBERNETES_RELEASES[minor].patch)
    return _chain(_plain(current), wanted, lambda minor: versions.KUBERNETES_RELEASES[minor].patch)


def rke2_chain(current: str, to: str) -> list[UpgradeStep]:
    """The same for RKE2 releases ("v1.33.13+rke2r2"); a minor alone means its newest release known here."""
    _check_rke2(to)
    wanted = _resolve(to, _RKE2, "--to", lambda minor: versions.KUBERNETES_RELEASES[minor].rke2)
    return _chain(current, wanted, lambda minor: versions.KUBERNETES_RELEASES[minor].rke2)


def resolve(kind: str, to: str) -> str:
    """``--to`` as the exact version it names (bad input if it names none), checked before any host is asked."""
    if kind == "kubeadm":
        return _resolve(to, _KUBEADM, "--to", lambda minor: versions.KUBERNETES_RELEASES[minor].patch)
    _check_rke2(to)
    return _resolve(to, _RKE2, "--to", lambda minor: versions.KUBERNETES_RELEASES[minor].rke2)


def _check_rke2(to: str) -> None:
    match = _RKE2.match(to.strip())
    if not match:
        raise InputError(f"--to {to!r}: expected an RKE2 release such as "
                         f"{versions.KUBERNETES_RELEASES['1.35'].rke2} (or a minor, v1.35)")
    if match[3] not in (None, "x") and not match[4]:
        raise InputError(f"--to {to!r}: an RKE2 release names its rke2r revision "
                         f"(v{match[1]}.{match[2]}.{match[3]}+rke2r1), or give the minor alone")


def _chain(current: str, wanted: str, newest_of) -> list[UpgradeStep]:
    here, there = minor_key(minor_of(current)), minor_key(minor_of(wanted))
    if there < here or (there == here and _patch_key(wanted) < _patch_key(current)):
        raise InputError(f"--to {wanted}: the cluster runs {current}; a downgrade is not an upgrade "
                         "(kubeadm and RKE2 support neither; restore an etcd snapshot instead)")
    if there == here and _patch_key(wanted) == _patch_key(current):
        return []
    steps: list[UpgradeStep] = []
    at = current
    for minor in range(here[1] + 1, there[1] + 1):
        name = f"{here[0]}.{minor}"
        if name not in versions.KUBERNETES_RELEASES:
            raise InputError(f"--to {wanted}: no row for Kubernetes {name} in versions.KUBERNETES_RELEASES; known: "
                             f"{', '.join(versions.KUBERNETES_RELEASES)}")
        target = wanted if minor == there[1] else newest_of(name)
        steps.append(UpgradeStep(len(steps) + 1, at, target))
        at = target
    if there == here:          # a patch upgrade within the same minor
        steps.append(UpgradeStep(1, current, wanted))
    return steps


def _resolve(text: str, pattern: re.Pattern, option: str, newest_of) -> str:
    match = pattern.match(text.strip())
    if not match:
        raise InputError(f"{option} {text!r}: expected a version such as 1.30, 1.30.x or 1.30.14")
    minor = f"{match[1]}.{match[2]}"
    if minor not in versions.KUBERNETES_RELEASES:
        raise InputError(f"{option} {text!r}: Kubernetes {minor} is not in versions.KUBERNETES_RELEASES; known: "
                         f"{', '.join(versions.KUBERNETES_RELEASES)}")
    if match[3] in (None, "x"):
        return newest_of(minor)
    return text.strip() if pattern is _RKE2 else _plain(text)


def _plain(version: str) -> str:
    return version.strip().lstrip("v")


def _patch_key(version: str) -> tuple[int, int]:
    match = re.match(r"v?\d+\.\d+\.(\d+)(?:\+rke2r(\d+))?", version)
    return (int(match[1]), int(match[2] or 0)) if match else (0, 0)
