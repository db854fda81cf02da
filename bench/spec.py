"""Workload W as data: the five files, where they go, and the values each host renders them with.

Every tool reads the same description (written to ``hosts.json`` by the
benchmark), so no tool knows more about W than the others.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TOOL_NAME = "bench-w"          # a constant, so that every tool writes the same bytes
MAX_MAP_COUNT = 262144

# (template under TEMPLATE_DIR, path under the host's root directory)
FILES = (
    ("sysctl.conf.j2", "etc/sysctl.d/99-bench.conf"),
    ("modules.conf.j2", "etc/modules-load.d/bench.conf"),
    ("containerd.toml.j2", "etc/containerd/config.toml"),
    ("kubeadm.yaml.j2", "etc/kubernetes/kubeadm-join.yaml"),
    ("kubelet-dropin.conf.j2", "etc/systemd/system/kubelet.service.d/10-bench.conf"),
)
FILE_MODE = 0o644
APPLY_COMMAND = "true"         # stands for `sysctl --system`: run once, only when a file changed


def host_values(index: int, address: str) -> dict[str, object]:
    """The template values of host number ``index`` (1-based)."""
    return {
        "host_name": f"pbh{index:02d}",
        "host_ip": address,
        "node_index": index,
        "pod_cidr": f"10.244.{index}.0/24",
        "max_map_count": MAX_MAP_COUNT,
        "tool_name": TOOL_NAME,
    }
