"""Facts: what a host is, asked in one remote command.

Two kinds, both one command each:

- the probes of a phase's operations, joined into one script whose sections are
  separated by a marker line (``probe_script`` / ``split_sections``);
- the host facts phases decide with (OS, versions, what is installed, what this
  kernel allows), gathered only when a phase asks for them (``HostFacts``).
"""

from __future__ import annotations

import re
import secrets as _random
import shlex
from dataclasses import dataclass, field

MARKER = "@@vmstation"


def new_token() -> str:
    """A per-script marker suffix, so file contents can never be mistaken for a section break."""
    return _random.token_hex(6)


def probe_script(probes: list[str], token: str) -> str:
    """One script asking every probe; each answer follows a ``@@vmstation-TOKEN N`` line."""
    parts = ["export LC_ALL=C"]
    for index, probe in enumerate(probes):
        parts.append(f"echo '{MARKER}-{token} {index}'")
        parts.append(f"{{ {probe or 'true'}\n}} 2>/dev/null")
    return "\n".join(parts) + "\n"


def split_sections(output: str, token: str, count: int) -> list[str]:
    """The answers of ``probe_script``'s probes (or a step's output), in order.

    A marker is found anywhere in a line, not only at its start: a probe whose
    answer has no final newline puts the next marker at the end of its last line.
    """
    sections = [""] * count
    pieces = re.split(rf"{re.escape(MARKER)}-{re.escape(token)} (\d+)\n", output)
    for index, text in zip(pieces[1::2], pieces[2::2], strict=True):
        if int(index) < count:
            sections[int(index)] += text
    return sections


# -- host facts -----------------------------------------------------------------------------------

PATHS_OF_INTEREST = (
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/kubelet.conf",
    "/usr/bin/kubeadm", "/usr/local/bin/kubeadm",
    "/usr/bin/kubelet", "/usr/local/bin/kubelet",
    "/usr/bin/rke2", "/usr/local/bin/rke2",
    "/usr/bin/rke2-uninstall.sh", "/usr/local/bin/rke2-uninstall.sh", "/opt/rke2/bin/rke2-uninstall.sh",
    "/etc/rancher/rke2/rke2.yaml",
    "/usr/lib/systemd/system/nm-cloud-setup.service",
    "/usr/sbin/firewalld", "/usr/sbin/getenforce",
    "/proc/sys/net/bridge",
    "/run/systemd/system",
)

HOST_FACTS_SCRIPT = r"""export LC_ALL=C
echo "@@os-release"; cat /etc/os-release 2>/dev/null
echo "@@kernel"; uname -r
echo "@@arch"; uname -m
echo "@@virt"; systemd-detect-virt 2>/dev/null || echo none
echo "@@modules-dir"; [ -d "/lib/modules/$(uname -r)" ] && echo yes || echo no
echo "@@cgroup"; [ -f /sys/fs/cgroup/cgroup.controllers ] && echo v2 || echo v1
echo "@@swap"; tail -n +2 /proc/swaps 2>/dev/null | wc -l
echo "@@containerd"; containerd --version 2>/dev/null | awk '{print $3}'
echo "@@kubeadm"; (kubeadm version -o short 2>/dev/null || /usr/local/bin/kubeadm version -o short 2>/dev/null)
echo "@@selinux"; getenforce 2>/dev/null
echo "@@paths"; for p in __PATHS__; do [ -e "$p" ] && echo "$p"; done
echo "@@end"
"""


@dataclass(frozen=True)
class HostFacts:
    os_release: dict[str, str]
    kernel: str
    arch: str
    virtualization: str
    can_load_modules: bool
    cgroup: str
    swap_devices: int
    containerd_version: str | None
    kubeadm_version: str | None
    selinux: str | None
    paths: frozenset[str] = field(default_factory=frozenset)

    @property
    def os_family(self) -> str:
        return os_family(self.os_release)

    @property
    def os_major_version(self) -> int:
        try:
            return int(self.os_release.get("VERSION_ID", "0").split(".")[0])
        except ValueError:
            return 0

    @property
    def in_container(self) -> bool:
        return self.virtualization in {"systemd-nspawn", "docker", "podman", "lxc", "lxc-libvirt", "container-other"}

    def exists(self, path: str) -> bool:
        if path not in PATHS_OF_INTEREST:
            raise KeyError(f"{path} is not among the paths host facts look at; add it to PATHS_OF_INTEREST")
        return path in self.paths


def host_facts_script() -> str:
    return HOST_FACTS_SCRIPT.replace("__PATHS__", " ".join(PATHS_OF_INTEREST))


def parse_host_facts(output: str) -> HostFacts:
    sections: dict[str, list[str]] = {}
    current = None
    for raw in output.splitlines():
        if raw.startswith("@@"):
            current = raw[2:]
            sections[current] = []
        elif current is not None:
            sections[current].append(raw)

    def first(name: str) -> str | None:
        values = [v.strip() for v in sections.get(name, []) if v.strip()]
        return values[0] if values else None

    return HostFacts(
        os_release=parse_os_release("\n".join(sections.get("os-release", []))),
        kernel=first("kernel") or "",
        arch=first("arch") or "",
        virtualization=first("virt") or "none",
        can_load_modules=first("modules-dir") == "yes",
        cgroup=first("cgroup") or "v1",
        swap_devices=_count(first("swap")),
        containerd_version=(first("containerd") or "").lstrip("v") or None,
        kubeadm_version=first("kubeadm"),
        selinux=first("selinux"),
        paths=frozenset(v.strip() for v in sections.get("paths", []) if v.strip()),
    )


def _count(text: str | None) -> int:
    """A number the host printed; anything else (a shell's error text) counts as 0 rather than raising."""
    return int(text) if text and text.isdigit() else 0


RHEL_IDS = frozenset({"rhel", "centos", "almalinux", "rocky"})


def os_family(os_release: dict[str, str]) -> str:
    """"rhel" | "debian" | "other", from ID and ID_LIKE (AlmaLinux and Rocky say ``ID_LIKE="rhel ..."``)."""
    ids = {os_release.get("ID", "").lower(), *os_release.get("ID_LIKE", "").lower().split()}
    if ids & RHEL_IDS:
        return "rhel"
    if "debian" in ids:
        return "debian"
    return "other"


def parse_os_release(text: str) -> dict[str, str]:
    """``/etc/os-release`` as a dict (os-release(5): KEY=value, shell quoting, # comments)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            continue
        try:
            fields[key] = " ".join(shlex.split(raw))
        except ValueError:      # unbalanced quote: keep the raw text rather than lose the field
            fields[key] = raw.strip("\"'")
    return fields
