"""Every pinned version and image, in one place.

Templates read these as ``versions.NAME``; tests check manifests against them.
The inventory may override the Kubernetes and RKE2 versions per cluster.
"""

from __future__ import annotations

KUBERNETES = "1.29.15"
KUBERNETES_APT_VERSION = "1.29.15-1.1"          # pkgs.k8s.io package version of kubeadm/kubelet/kubectl
KUBERNETES_APT_REPO = "https://pkgs.k8s.io/core:/stable:/v1.29/deb/"
RKE2 = "v1.29.15+rke2r1"
CONTAINERD_MINIMUM = {"1.6": "1.6.27", "1.7": "1.7.11"}   # floor for Kubernetes 1.29 (containerd's table)
CNI_PLUGINS = "v1.3.0"
CONTAINERD_TARBALL = "1.7.22"                    # containerd_source = "tarball": the release the artifacts dir holds
SANDBOX_IMAGE = "registry.k8s.io/pause:3.9"    # containerd's pause image; kubeadm 1.29 expects 3.9

FLANNEL_IMAGE = "ghcr.io/flannel-io/flannel:v0.27.4"
FLANNEL_CNI_PLUGIN_IMAGE = "ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1"

IMAGES = {
    "prometheus": "quay.io/prometheus/prometheus:v2.53.2",
    "grafana": "docker.io/grafana/grafana:11.2.2",
    "loki": "docker.io/grafana/loki:3.2.1",
    "promtail": "docker.io/grafana/promtail:3.2.1",
    "node_exporter": "quay.io/prometheus/node-exporter:v1.8.2",
    "kube_state_metrics": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.13.0",
    "jellyfin": "docker.io/jellyfin/jellyfin:10.9.11",
}


def as_dict() -> dict:
    """The values templates see as ``versions``."""
    return {
        "kubernetes": KUBERNETES,
        "kubernetes_apt": KUBERNETES_APT_VERSION,
        "kubernetes_apt_repo": KUBERNETES_APT_REPO,
        "rke2": RKE2,
        "cni_plugins": CNI_PLUGINS,
        "sandbox_image": SANDBOX_IMAGE,
        "flannel_image": FLANNEL_IMAGE,
        "flannel_cni_plugin_image": FLANNEL_CNI_PLUGIN_IMAGE,
        "images": dict(IMAGES),
    }
