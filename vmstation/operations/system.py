"""The system: packages, services with handlers, kernel parameters and modules."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from vmstation.operations.base import CHANGE, OK, SKIP, Operation, Step, labels_of, sh

PACKAGE_DEADLINE = 1800.0   # seconds an install may take: downloads over a slow link, apt's own lock waits


@dataclass(frozen=True)
class Package(Operation):
    """Packages installed (at a version when given), optionally held at it (apt-mark hold)."""

    names: tuple[str, ...]
    manager: str = "apt"              # "apt" | "dnf"
    version: str | None = None
    hold: bool = False

    @property
    def label(self) -> str:
        pinned = f"={self.version}" if self.version else ""
        return f"{self.manager} {' '.join(self.names)}{pinned}"

    def probe(self, detail: bool) -> str:
        names = " ".join(shlex.quote(n) for n in self.names)
        if self.manager == "dnf":
            query = "rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE} installed\\n'"
            return f"{query} {names} 2>/dev/null | grep ' installed$'"
        # dpkg's own status says installed and held: db:Status-Want is "hold" once `apt-mark hold` set the dpkg
        # selection (apt-mark(8): "hold ... the package is held back"; dpkg-query(1): db:Status-Want). One
        # process, no apt cache loaded (`apt-mark showhold` reads apt's whole cache).
        return f"dpkg-query -W -f='${{Package}} ${{Version}} ${{db:Status-Status}} ${{db:Status-Want}}\\n' {names}"

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        installed, held = _parse_packages(fact)
        missing = [n for n in self.names if n not in installed or (self.version and installed[n] != self.version)]
        commands: list[str] = []
        if missing:
            commands.append(self._install(missing))
        if self.hold and self.manager == "apt" and any(n not in held for n in self.names):
            commands.append(sh("apt-mark hold" + " {}" * len(self.names), *self.names) + " >/dev/null")
        if not commands:
            return Step(self.label, OK, "installed" + (" and held" if self.hold else ""))
        reason = f"missing: {', '.join(missing)}" if missing else "not held"
        return Step(self.label, CHANGE, reason, commands=tuple(commands), deadline=PACKAGE_DEADLINE,
                    fresh_apt_index=bool(missing) and self.manager == "apt")

    def _install(self, names: list[str]) -> str:
        spec = [f"{n}={self.version}" if self.version and self.manager == "apt" else
                f"{n}-{self.version}" if self.version else n for n in names]
        quoted = " ".join(shlex.quote(s) for s in spec)
        if self.manager == "dnf":
            return f"dnf install -y -q {quoted}"
        unhold = " ".join(shlex.quote(n) for n in names)
        return (f"apt-mark unhold {unhold} >/dev/null 2>&1 || true; "
                f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
                f"--allow-change-held-packages {quoted}")


@dataclass(frozen=True)
class Service(Operation):
    """A systemd unit enabled/started, restarted once when something it watches changed."""

    name: str
    enabled: bool = True
    running: bool | None = True       # None: leave it as it is (kubelet: kubeadm starts it, later runs keep it)
    restart_on: tuple = ()            # operations of the same phase it restarts after (``(config,)``)
    daemon_reload: bool = False

    def __post_init__(self):
        object.__setattr__(self, "restart_on", labels_of(self.restart_on))   # kept as their labels

    @property
    def label(self) -> str:
        return f"service {self.name}"

    def probe(self, detail: bool) -> str:
        return sh("systemctl is-enabled {0} 2>/dev/null || true; systemctl is-active {0} 2>/dev/null || true",
                  self.name)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        enabled_state, active_state = (fact.split() + ["", ""])[:2]
        commands, reasons = [], []
        if self.daemon_reload and changed:
            commands.append("systemctl daemon-reload")
        if self.enabled and enabled_state not in ("enabled", "static", "alias"):
            commands.append(sh("systemctl enable --quiet {}", self.name))
            reasons.append(f"was {enabled_state or 'unknown'}")
        triggers = sorted(set(self.restart_on) & changed)
        if self.running and active_state != "active":
            commands.append(sh("systemctl start {}", self.name))
            reasons.append(f"was {active_state or 'unknown'}")
        elif self.running and triggers:
            commands.append(sh("systemctl restart {}", self.name))
            reasons.append("restart: " + ", ".join(triggers) + " changed")
        if self.running is False and active_state == "active":
            commands.append(sh("systemctl stop {}", self.name))
            reasons.append("was active")
        if not commands or commands == ["systemctl daemon-reload"]:
            return Step(self.label, OK, f"{enabled_state}, {active_state}")
        return Step(self.label, CHANGE, "; ".join(reasons), commands=tuple(commands))


# ---------------------------------------------------------------------------------------------
# Kernel
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sysctl(Operation):
    """A kernel parameter set now (persist it with a File in /etc/sysctl.d).

    ``needs_module``: the key exists only once that module is loaded (net.bridge.* needs
    br_netfilter). When a KernelModule earlier in the phase loads it, the key is set in
    the same run instead of being skipped as absent.
    """

    key: str
    value: str
    needs_module: "KernelModule | str | None" = None

    def __post_init__(self):
        if isinstance(self.needs_module, KernelModule):
            object.__setattr__(self, "needs_module", self.needs_module.name)

    @property
    def label(self) -> str:
        return f"sysctl {self.key}={self.value}"

    def probe(self, detail: bool) -> str:
        path = "/proc/sys/" + self.key.replace(".", "/")
        return sh("if [ -e {0} ]; then cat -- {0}; if [ -w {0} ]; then echo writable; else echo read-only; fi; "
                  "else echo absent; fi", path)

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        lines = fact.strip().splitlines() or ["absent"]
        set_now = (sh("sysctl -q -w {}", f"{self.key}={self.value}"),)
        if lines[0] == "absent" and self.needs_module and f"module {self.needs_module}" in changed:
            return Step(self.label, CHANGE, f"appears once {self.needs_module} is loaded", commands=set_now)
        if lines[0] == "absent":
            return Step(self.label, SKIP, "this kernel has no such parameter here")
        if " ".join(lines[0].split()) == self.value:
            return Step(self.label, OK, "already set")
        if lines[-1] == "read-only":
            return Step(self.label, SKIP, "/proc/sys is read-only for this key here (a container's kernel limits)")
        return Step(self.label, CHANGE, f"was {lines[0]}", commands=set_now)


# How to tell a kernel feature is there even when it is built in (no /sys/module entry, no lsmod line).
FEATURE_PROBES = {
    "br_netfilter": "[ -d /proc/sys/net/bridge ]",
    "overlay": "grep -qw overlay /proc/filesystems",
}


@dataclass(frozen=True)
class KernelModule(Operation):
    """A kernel module loaded now (persist it with a File in /etc/modules-load.d)."""

    name: str

    @property
    def label(self) -> str:
        return f"module {self.name}"

    def probe(self, detail: bool) -> str:
        present = FEATURE_PROBES.get(self.name, sh("[ -d /sys/module/{} ]", self.name))
        return (f"if {present}; then echo present; elif [ -d /lib/modules/$(uname -r) ]; then echo loadable; "
                f"else echo no-modules; fi")

    def decide(self, fact: str, changed: frozenset[str]) -> Step:
        state = fact.strip()
        if state == "present":
            return Step(self.label, OK, "loaded or built in")
        if state == "no-modules":
            return Step(self.label, SKIP, "not loaded and this kernel has no /lib/modules to load it from")
        return Step(self.label, CHANGE, "not loaded", commands=(sh("modprobe {}", self.name),))


def _parse_packages(fact: str) -> tuple[dict[str, str], set[str]]:
    installed, held = {}, set()
    for row in fact.splitlines():
        parts = row.split()
        if len(parts) >= 3 and parts[2] == "installed":
            installed[parts[0].split(":")[0]] = parts[1]
            if len(parts) >= 4 and parts[3] == "hold":
                held.add(parts[0].split(":")[0])
    return installed, held
