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


# ---------------------------------------------------------------------------------------------------
# Pinned checksums: what vmstation downloads or uploads that no signed package manager checks for it.
#
# Pin policy (SECURITY.md):
# - Scripts and files vmstation itself fetches or uploads are pinned by sha256 here, with the upstream
#   source each digest was computed from. A file whose digest is not pinned is refused before any host is
#   touched (air-gapped files are checked on this machine during the preflight); online, the host checks
#   the downloaded script against the pin before running it.
# - Release tarballs in an artifacts directory are checked against the release's own sha256sum file
#   (artifacts.verified_files), as RKE2's install.sh does itself.
# - Packages from apt (pkgs.k8s.io, Debian, Docker) and dnf (rpm.rancher.io) are checked by their package
#   managers' signatures (signed-by keyrings, gpgcheck=1 and repo_gpgcheck=1 in install.sh's repo file).
# - Container images (Flannel, the apps, RKE2's own) are referenced by tag in IMAGES above, not by digest:
#   no registry can be reached from here to read digests. A tag can be moved by whoever controls the
#   repository; pinning digests is the next step, recorded as a known gap in SECURITY.md.
# ---------------------------------------------------------------------------------------------------

# install.sh from the rke2 repository at a fixed commit (get.rke2.io serves master's copy, which moves).
# Source: github.com/rancher/rke2, `git show COMMIT:install.sh | sha256sum`.
RKE2_INSTALL_SCRIPT_COMMIT = "666d6249bed097769ec58b6c85b80f332cd6ca56"      # master, 2026-03-27, knows el10
RKE2_INSTALL_SCRIPT_URL = f"https://raw.githubusercontent.com/rancher/rke2/{RKE2_INSTALL_SCRIPT_COMMIT}/install.sh"
RKE2_INSTALL_SCRIPT_SHA256 = "42983c86d1da64a92061d83afb57630cedd69241989f1b0673f3db6c3d92ee6b"

# Every install.sh accepted from an artifacts directory: digest -> where it comes from.
RKE2_INSTALL_SCRIPTS = {
    RKE2_INSTALL_SCRIPT_SHA256: f"rancher/rke2 install.sh at {RKE2_INSTALL_SCRIPT_COMMIT[:9]} (master, 2026-03-27)",
    "fb2d0000208d9f471c5eca30ce37f5783ae781deb4d1cd5ff9b4a0031c44171b":
        "rancher/rke2 install.sh at tag v1.29.15+rke2r1 (c2282328, 2025-03-25)",
}

# rke2-selinux RPMs accepted from an artifacts directory: file name -> sha256. Upstream publishes them as
# release assets of github.com/rancher/rke2-selinux and on rpm.rancher.io, with no checksum file in the
# repository; none could be read from here, so the table starts empty and an RPM in artifacts_dir is refused
# until its digest, checked against the release page, is added here.
RKE2_SELINUX_RPMS: dict[str, str] = {}
