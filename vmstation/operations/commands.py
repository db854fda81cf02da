"""Commands: guarded commands, checks and bounded waits, preflight notices."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from vmstation.operations.base import CHANGE, CHECK, OK, WARN, Operation, Step, labels_of, sh

@dataclass(frozen=True)
class Command(Operation):
    """A command run only when its guard says so (``creates``/``removes`` a path, ``unless``/``onlyif`` a test)."""

    script: str
    description: str
    creates: str | None = None
    removes: str | None = None
    unless: str | None = None
    onlyif: str | None = None
    when_changed: tuple = ()            # run only if one of these operations of this phase changed
    deadline: float | None = None       # seconds it may run when longer than the run's default (kubeadm init)

    def __post_init__(self):
        object.__setattr__(self, "when_changed", labels_of(self.when_changed))   # kept as their labels

    @property
    def label(self) -> str:
        return f"run {self.description}"

    def probe(self, detail: bool) -> str:
        checks = []
        if self.creates:
            checks.append(sh("[ -e {} ] && echo creates-exists", self.creates))
        if self.removes:
            checks.append(sh("[ -e {} ] || echo removes-absent", self.removes))
        if self.unless:
            checks.append(f"( {self.unless} ) >/dev/null 2>&1 && echo unless-true")
        if self.onlyif:
            checks.append(f"( {self.onlyif} ) >/dev/null 2>&1 || echo onlyif-false")
        return "; ".join(checks) + "; true" if checks else "true"

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        words = set(fact.split())
        reasons = {"creates-exists": f"{self.creates} exists", "removes-absent": f"{self.removes} absent",
                   "unless-true": "already so (unless-check passed)",
                   "onlyif-false": "not needed (onlyif-check failed)"}
        for word, reason in reasons.items():
            if word in words:
                return Step(self.label, OK, reason)
        triggers = sorted(set(self.when_changed) & changed)
        if self.when_changed and not triggers:
            return Step(self.label, OK, "nothing it depends on changed")
        reason = (", ".join(triggers) + " changed") if triggers else \
            "guard says run" if self.probe(False) != "true" else "always"
        return Step(self.label, CHANGE, reason, commands=(self.script,), deadline=self.deadline)


CHECK_PASSED = "vmstation-check-passed"


@dataclass(frozen=True)
class Check(Operation):
    """Runs every time and changes nothing: a bounded wait, a verification, a value captured for later phases."""

    script: str
    description: str
    capture: Any = None                 # a vmstation.handles.Capture: the output kept for later phases
    secret: bool = False
    deadline: float | None = None

    @property
    def label(self) -> str:
        return f"check {self.description}"

    @property
    def asked_with_probes(self) -> bool:
        """A plain verification is asked with the phase's probes (a no-op sends nothing more for it); a wait
        (its own deadline), a capture or a secret runs as a step, as does any check after a change."""
        return not (self.capture or self.secret or self.deadline)

    def probe(self, detail: bool) -> str:
        if not self.asked_with_probes:
            return ""
        # as a step would run it: its own shell, set -e (pipefail under bash), stdin from /dev/null
        script = shlex.quote("set -e\n[ -z \"${BASH_VERSION:-}\" ] || set -o pipefail\n" + self.script + "\n")
        return (f"vms_s=sh; command -v bash >/dev/null 2>&1 && vms_s=bash; "
                f'"$vms_s" -c {script} </dev/null >/dev/null 2>&1 && echo {CHECK_PASSED}')

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        if self.asked_with_probes and not changed and fact.strip() == CHECK_PASSED:
            return Step(self.label, OK, f"{self.description}: passed (asked with the probes)")
        # failed, not asked, or something changed before it: run as a step, whose failure is reported in full
        return Step(self.label, CHECK, self.description, commands=(self.script,), capture=self.capture,
                    secret=self.secret or getattr(self.capture, "secret", False), deadline=self.deadline)


def wait_until(test: str, description: str, timeout: int = 300, interval: int = 5, show: str = "") -> Check:
    """A bounded wait on the host: retry ``test`` until it passes; print ``show`` each time while waiting."""
    timed_out = shlex.quote(f"timed out after {timeout}s: {description}")
    script = (f"vms_end=$(( $(date +%s) + {int(timeout)} )); "
              f"until ( {test} ) >/dev/null 2>&1; do "
              f"if [ $(date +%s) -ge $vms_end ]; then echo {timed_out} >&2; "
              f"{show + ' >&2;' if show else ''} exit 1; fi; "
              f"{show + ';' if show else ''} sleep {int(interval)}; done")
    # the executor's deadline is the wait's own bound plus room for one last try
    return Check(script, f"wait for {description} (up to {timeout}s)", deadline=timeout + 2 * interval + 60)


@dataclass(frozen=True)
class Notice(Operation):
    """A preflight warning shown in the plan and the summary (a version below what upstream supports)."""

    message: str

    @property
    def label(self) -> str:
        return "warning"

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        return Step(self.label, WARN, self.message)
