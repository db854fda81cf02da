"""Fixtures for unit tests: the real homelab inventory as the engine sees it."""

from __future__ import annotations

import pytest

from vmstation.inventory import Cluster, Host, Inventory, Power


def homelab_inventory() -> Inventory:
    """The homelab of findings.md, built from the dataclasses (no file, no SSH)."""
    return Inventory(
        path="hosts.toml",
        hosts=(
            Host(name="masternode", address="192.168.4.63", cluster="debian", roles=("control-plane",),
                 ssh_key="~/.ssh/id_k3s", always_on=True, interface="eno1", mac="d0:94:66:30:d6:63"),
            Host(name="storagenodet3500", address="192.168.4.61", cluster="debian", roles=("worker", "jellyfin"),
                 ssh_key="~/.ssh/id_k3s", mac="00:e0:4c:68:cb:bf", media_path="/srv/media", interface="enp2s0"),
            Host(name="homelab", address="192.168.4.62", cluster="rke2", roles=("server",),
                 ssh_user="jashandeepjustinbains", ssh_key="~/.ssh/id_k3s",
                 become_password="vault:homelab_become_password", mac="d0:94:66:ad:8b:42", os_family="rhel"),
        ),
        clusters=(
            Cluster(name="debian", kind="kubeadm", version="1.29.15", pod_cidr="10.244.0.0/16",
                    service_cidr="10.96.0.0/12", api_endpoint="192.168.4.63:6443", cni="flannel"),
            Cluster(name="rke2", kind="rke2", version="v1.35.7+rke2r1", pod_cidr="10.42.0.0/16",
                    service_cidr="10.43.0.0/16", api_endpoint="192.168.4.62:6443", cni="canal"),
        ),
        power=Power(wol_broadcast="192.168.4.255", jellyfin_url="http://192.168.4.61:30096",
                    jellyfin_api_key="vault:jellyfin_api_key"),
        vault="secrets.vault",
    )


@pytest.fixture
def homelab() -> Inventory:
    return homelab_inventory()
