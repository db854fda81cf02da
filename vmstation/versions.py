"""Every pinned version and image, in one place.

Templates read these as ``versions.NAME``; tests check manifests against them.
The inventory may override the Kubernetes and RKE2 versions per cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

KUBERNETES = "1.29.15"
KUBERNETES_APT_VERSION = "1.29.15-1.1"          # pkgs.k8s.io package version of kubeadm/kubelet/kubectl
KUBERNETES_APT_REPO = "https://pkgs.k8s.io/core:/stable:/v1.29/deb/"
CNI_PLUGINS = "v1.3.0"
CONTAINERD_TARBALL = "1.7.22"                    # containerd_source = "tarball": the release the artifacts dir holds
SANDBOX_IMAGE = "registry.k8s.io/pause:3.9"    # containerd's pause image for a version the table below lacks

# kubeadm's config API per Kubernetes minor. v1beta4 came with kubeadm 1.31 (kubernetes/kubernetes PR #125029
# "kubeadm: enable the v1beta4 API": "v1beta3 is now marked as deprecated but will continue to be supported until
# version 1.34 or later"); v1beta3 was removed in 1.36 (PR #136016, merged 2026-01: "removed the v1beta3 API which
# was deprecated since v1.31. The 1.35 kubeadm binary can be used to migrate to v1beta4"; kubeadm 1.36 refuses it:
# "your configuration file uses an old API spec: \"kubeadm.k8s.io/v1beta3\"", kubernetes-sigs/image-builder PR
# #2154). deploy-debian renders v1beta4 from 1.31 (kubespray did the same, kubernetes-sigs/kubespray PR #13027).
KUBEADM_V1BETA4_SINCE = (1, 31)
KUBEADM_V1BETA3_REMOVED_IN = (1, 36)

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


# ---------------------------------------------------------------------------------------------------------
# RKE2 on RHEL, containerd floors, upstream support windows (the clusters as they really install)
# ---------------------------------------------------------------------------------------------------------

# The RKE2 release a cluster gets unless the inventory names one: the `stable` channel's latest in
# rancher/rke2 channels.yaml (read 2026-08, commit 6ce1a80). v1.29.15+rke2r1 (the older system's) has no
# el10 RPMs and no el10 SELinux policy released with it (RKE2_EL_RPMS below), so it cannot install on
# RHEL 10 with SELinux; Kubernetes 1.29 also left upstream support on 2025-02-28.
RKE2 = "v1.35.7+rke2r1"

# Which RKE2 releases publish RPMs for a RHEL major: (major) -> {(1, minor): first patch}; a line above
# every listed one publishes from its .0, a line below none. A major not listed publishes for every line.
# Source: rancher/rke2-packaging. Its rpm/centos10 tree ("Add centos10", authored 2025-10-03) is in no
# tag of v1.30/v1.31; the first stable tags that hold it are v1.32.11+rke2r1, v1.33.7+rke2r1,
# v1.34.3+rke2r1 and v1.35.0+rke2r1 (`git tag --contains 92086bd`), and every later tag is cut from a
# tree holding it. rpm/centos10/scripts/sign-and-upload puts them at rpm.rancher.io/rke2/<channel>/<minor>/
# centos/10/<arch>, the path get.rke2.io's do_install_rpm writes for VERSION_ID 10 (rancher/rke2 install.sh).
RKE2_EL_RPMS = {10: {(1, 32): 11, (1, 33): 7, (1, 34): 3, (1, 35): 0}}

# The SELinux policy. rke2-common's spec says `Requires(post): rke2-selinux >= 0.12-0` (rke2-packaging
# rpm/centos8/common/rke2-common.spec, linked for centos9 and centos10), so an RPM install brings it.
# rancher/rke2-selinux added policy/centos10 on 2025-10-06 (first stable tag v0.22.stable.1), published at
# rpm.rancher.io/rke2/<channel>/common/centos/10/noarch (scripts/sign-and-upload), the repository install.sh
# writes beside the versioned one. Rancher ships it for el10 only alongside RKE2 releases that have el10 RPMs
# (they require it): vmstation pairs it with no other release (rhel.selinux_policy_problem).

# Canal and firewalld: "Firewalld conflicts with RKE2's default Canal (Calico + Flannel) networking stack.
# To avoid unexpected behavior, firewalld should be disabled on systems running RKE2."
# (rancher/rke2-docs docs/known_issues.md, "Firewalld conflicts with default networking").
RKE2_FIREWALLD_KNOWN_ISSUE = "https://docs.rke2.io/known_issues#firewalld-conflicts-with-default-networking"

# containerd's minimum per Kubernetes minor, per containerd series (containerd/containerd RELEASES.md,
# "Kubernetes Support": 1.29 row as of commit caa9e2075 (2024-02), later rows at HEAD). A series not
# listed for a Kubernetes minor is below its floor when it is older than every listed series.
CONTAINERD_MINIMUM_BY_KUBERNETES = {
    "1.29": {"1.6": "1.6.27", "1.7": "1.7.11"},
    "1.30": {"1.6": "1.6.28", "1.7": "1.7.13", "2.0": "2.0.0"},
    "1.31": {"1.6": "1.6.34", "1.7": "1.7.20", "2.0": "2.0.0", "2.1": "2.1.0"},   # RELEASES.md at b5ee44fe8^
    "1.32": {"1.6": "1.6.36", "1.7": "1.7.24", "2.0": "2.0.1", "2.1": "2.1.0"},
    "1.33": {"1.6": "1.6.36", "1.7": "1.7.24", "2.0": "2.0.4", "2.1": "2.1.0"},
    "1.34": {"1.6": "1.6.39", "1.7": "1.7.28", "2.0": "2.0.6", "2.1": "2.1.3"},
    "1.35": {"1.7": "1.7.28", "2.1": "2.1.5", "2.2": "2.2.0"},
    "1.36": {"2.2": "2.2.0", "2.3": "2.3.0"},
}
DEBIAN12_CONTAINERD = "1.6.20"                    # bookworm's containerd package (findings.md)

# Kubelet version skew: kubernetes.io "Version Skew Policy" (kubernetes/website content/en/releases/
# version-skew-policy.md, "kubelet"): "kubelet must not be newer than kube-apiserver." and "kubelet may be up to
# three minor versions older than kube-apiserver (kubelet < 1.25 may only be up to two minor versions older than
# kube-apiserver)." (three since 1.28 control planes: kubernetes/website PR #42218, KEP-3935). kubeadm tolerates
# the same N-3 from 1.29 for init, join and upgrade (kubernetes/kubernetes PR #120825, kubernetes/website PR
# #43769 "v1.29: kubeadm skew policy for kubelet is n-3"); every minor of KUBERNETES_RELEASES is 1.29 or newer.
KUBELET_SKEW_MINORS = 3
KUBELET_SKEW_MINORS_BEFORE_1_25 = 2

# Upstream support: a Kubernetes minor's end-of-life date (kubernetes.io/releases, kubernetes/website
# data/releases/schedule.yaml and eol.yaml). RKE2 community releases follow upstream patch releases, so an
# RKE2 line leaves upstream support with its Kubernetes minor (SUSE's RKE2 support matrix may run longer
# for Rancher Prime subscribers).
KUBERNETES_END_OF_LIFE = {
    "1.29": "2025-02-28", "1.30": "2025-06-28", "1.31": "2025-10-28", "1.32": "2026-02-28",
    "1.33": "2026-06-28", "1.34": "2026-10-27", "1.35": "2027-02-28", "1.36": "2027-06-28",
}


# ---------------------------------------------------------------------------------------------------------
# Day two: the Kubernetes minors a kubeadm cluster can be upgraded through, one row per minor
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KubernetesRelease:
    """What an upgrade to one Kubernetes minor installs and expects."""

    patch: str          # the newest patch release of the minor known here
    pause: str          # kubeadm's PauseVersion for that minor: containerd's sandbox image must match
    flannel: str        # the Flannel release run with it
    rke2: str           # the RKE2 release of the same patch (an RKE2 cluster's upgrade step to this minor)

    def apt_version(self) -> str:
        """pkgs.k8s.io's package version of kubeadm/kubelet/kubectl ("1.30.14-1.1")."""
        return f"{self.patch}-1.1"

    def apt_repo(self) -> str:
        """pkgs.k8s.io has one repository per minor (kubernetes.io "Changing the package repository")."""
        minor = ".".join(self.patch.split(".")[:2])
        return f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/"


# Sources, per column:
# - patch and rke2: the newest rancher/rke2 tag of each line (`git tag` at rancher/rke2 6ce1a80, 2026-08-21,
#   the commit whose channels.yaml gives RKE2 above); each RKE2 tag vX.Y.Z+rke2rN ships upstream Kubernetes
#   X.Y.Z (its go.mod replaces k8s.io/kubernetes with k3s-io/kubernetes vX.Y.Z-k3s1). 1.29.15 is the last 1.29
#   patch (kubernetes.io/releases: 1.29 ended 2025-02-28).
# - pause: kubeadm's `PauseVersion` (kubernetes/kubernetes cmd/kubeadm/app/constants/constants.go), as each
#   released kubeadm binary prints it in `kubeadm config images list --kubernetes-version vX.Y.Z`. Read in
#   kubernetes/minikube pkg/minikube/constants/constants_kubeadm_images.go (commit eb25dbc, 2026-08-23), which
#   hack/update/kubeadm_constants/kubeadm_constants.go fills by running that command with every released kubeadm:
#   pause 3.9 for every 1.29.x and 1.30.x, 3.10 for 1.31.0 to 1.33.13, 3.10.1 for 1.34.0 to 1.35.7, and 3.10.2
#   for 1.36.0 to 1.36.3 (3.10.1 until 1.36.0-beta.0, 3.10.2 from 1.36.0-rc.0). A constants.go of a 1.32 branch
#   (kubernetes/kubernetes, stored copy 00886ac) says PauseVersion = "3.10"; the 1.35.8 copy quoted in a public
#   test of kubeadm constants says "3.10.1". The 1.36 row said 3.10.1 until 2026-11-28 (assumed, not read).
# - flannel: v0.27.4's kube-flannel.yaml uses no API removed after 1.25, and "flanneld itself should work with
#   any version of Kubernetes" (flannel-io/flannel Documentation/kubernetes.md, "Older versions of Kubernetes").
# - containerd floors: CONTAINERD_MINIMUM_BY_KUBERNETES above (containerd RELEASES.md "Kubernetes Support").
KUBERNETES_RELEASES = {
    "1.29": KubernetesRelease("1.29.15", "3.9", "v0.27.4", "v1.29.15+rke2r1"),
    "1.30": KubernetesRelease("1.30.14", "3.9", "v0.27.4", "v1.30.14+rke2r4"),
    "1.31": KubernetesRelease("1.31.14", "3.10", "v0.27.4", "v1.31.14+rke2r2"),
    "1.32": KubernetesRelease("1.32.13", "3.10", "v0.27.4", "v1.32.13+rke2r2"),
    "1.33": KubernetesRelease("1.33.13", "3.10", "v0.27.4", "v1.33.13+rke2r2"),
    "1.34": KubernetesRelease("1.34.10", "3.10.1", "v0.27.4", "v1.34.10+rke2r1"),
    "1.35": KubernetesRelease("1.35.7", "3.10.1", "v0.27.4", "v1.35.7+rke2r1"),
    "1.36": KubernetesRelease("1.36.3", "3.10.2", "v0.27.4", "v1.36.3+rke2r1"),
}


def pause_image(kubernetes_version: str) -> str:
    """containerd's sandbox image for a cluster at ``kubernetes_version``: the pause image its kubeadm expects (kubeadm
    warns about any other), so a deploy after an upgrade moves containerd to the new minor's pause with it."""
    minor = ".".join(kubernetes_version.strip().lstrip("v").split(".")[:2])
    release = KUBERNETES_RELEASES.get(minor)
    return f"registry.k8s.io/pause:{release.pause}" if release else SANDBOX_IMAGE


def as_dict() -> dict:
    """The values templates see as ``versions``."""
    return {
        "kubernetes": KUBERNETES,
        "kubernetes_apt": KUBERNETES_APT_VERSION,
        "kubernetes_apt_repo": KUBERNETES_APT_REPO,
        "rke2": RKE2,
        "cni_plugins": CNI_PLUGINS,
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
# release assets of github.com/rancher/rke2-selinux (with sha256sum-<os>-noarch.txt beside them, written by its
# .github/workflows/release.yml) and on rpm.rancher.io. No digest could be read from here, so the table starts
# empty; until a digest is pinned here, an RPM in artifacts_dir must be listed in that checksum file.
RKE2_SELINUX_RPMS: dict[str, str] = {}

# cert-manager (the architecture's "Future: TLS with cert-manager"): the release's static manifest, which carries
# its CRDs with their OpenAPI schemas. v1.14.5 is the release cert-manager.io/docs/installation names for the
# default static install (`kubectl apply -f .../releases/download/v1.14.5/cert-manager.yaml`), released
# 2024-04-25 (endoflife.date/cert-manager). Its compatibility with Kubernetes 1.29 is not verified here.
CERT_MANAGER = "v1.14.5"
CERT_MANAGER_MANIFEST_URL = (f"https://github.com/cert-manager/cert-manager/releases/download/{CERT_MANAGER}/"
                             "cert-manager.yaml")
