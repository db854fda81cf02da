"""A hosts.toml for a set of test hosts, in the schema ``vmstation.inventory`` loads.

The keys are the field names of ``vmstation.inventory.Host`` and ``Cluster``;
clusters get the homelab's own versions and CIDRs, with the API endpoint on the
cluster's first host. Kept small on purpose: the loader is the schema's owner.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vmstation import versions

CLUSTERS = {
    # The boxes reach Debian's mirror only (no download.docker.com), so they keep Debian 12's containerd 1.6.20
    # and say so: it is below Kubernetes 1.29's floor of 1.6.27, which a real inventory may not do silently.
    "debian": {"kind": "kubeadm", "version": versions.KUBERNETES, "pod_cidr": "10.244.0.0/16",
               "service_cidr": "10.96.0.0/12", "cni": "flannel", "containerd_source": "debian",
               "accept_old_containerd": True},
    "rke2": {"kind": "rke2", "version": versions.RKE2, "pod_cidr": "10.42.0.0/16",
             "service_cidr": "10.43.0.0/16", "cni": "canal"},
}


@dataclass(frozen=True)
class InventoryHost:
    name: str
    address: str
    port: int
    roles: tuple[str, ...]
    cluster: str
    ssh_user: str = "root"
    become_password: str | None = None  # a reference ("vault:NAME"), never a value
    mac: str | None = None
    os_family: str | None = None
    apt_proxy: str | None = None
    extra: tuple[tuple[str, object], ...] = ()   # any other Host keys (always_on, media_path, ...)


def write_inventory(path: Path, hosts: Sequence[InventoryHost], client_key: Path, known_hosts: Path,
                    vault: Path | None = None, cluster_extra: dict[str, dict] | None = None,
                    power: dict | None = None) -> Path:
    """Write ``path`` describing ``hosts``: one [clusters.X] per cluster used, one [hosts.NAME] per host.

    ``cluster_extra`` adds keys per cluster (an artifacts_dir, say); ``power`` is the [power] table.
    """
    lines = [f"known_hosts = {_toml(str(known_hosts))}"]
    if vault is not None:
        lines.append(f"vault = {_toml(str(vault))}")
    if power:
        lines += ["", "[power]", *_pairs(power)]
    for cluster in dict.fromkeys(h.cluster for h in hosts):
        first = next(h for h in hosts if h.cluster == cluster)
        table = {**CLUSTERS[cluster], "api_endpoint": f"{first.address}:6443", **(cluster_extra or {}).get(cluster, {})}
        lines += ["", f"[clusters.{cluster}]", *_pairs(table)]
    for host in hosts:
        lines += ["", f"[hosts.{host.name}]", *_pairs(_host_table(host, client_key))]
    path.write_text("\n".join(lines) + "\n")
    return path


def _host_table(host: InventoryHost, client_key: Path) -> dict[str, object]:
    table: dict[str, object] = {"address": host.address, "cluster": host.cluster, "roles": list(host.roles),
                                "ssh_user": host.ssh_user, "ssh_port": host.port, "ssh_key": str(client_key)}
    optional = {"become_password": host.become_password, "mac": host.mac, "os_family": host.os_family,
                "apt_proxy": host.apt_proxy}
    table.update({key: value for key, value in optional.items() if value is not None})
    table.update(dict(host.extra))
    return table


def _pairs(table: dict[str, object]) -> list[str]:
    return [f"{key} = {_toml(value)}" for key, value in table.items()]


def _toml(value: object) -> str:
    """TOML for strings, ints, bools and lists of strings (a JSON string is a valid TOML basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(str(value))
