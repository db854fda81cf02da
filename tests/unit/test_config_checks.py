"""The checks of rendered files reject what the tools would let through, and pass what is right."""

from __future__ import annotations

import json

import pytest

from vmstation.config_checks import (
    KUBEADM_FIELDS_FILE,
    KUBEADM_V1BETA4_FIELDS_FILE,
    check_containerd_config,
    check_kubeadm_config,
    check_manifests,
    kubeadm_api_version,
)

INIT = """\
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
bootstrapTokens:
  - token: abcdef.0123456789abcdef
    ttl: 24h0m0s
localAPIEndpoint:
  advertiseAddress: 10.0.0.1
  bindPort: 6443
nodeRegistration:
  name: cp
  taints: []
  kubeletExtraArgs:
    node-ip: 10.0.0.1
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.29.15
controlPlaneEndpoint: 10.0.0.1:6443
networking:
  podSubnet: 10.244.0.0/16
apiServer:
  certSANs: [10.0.0.1]
  extraVolumes:
    - name: audit
      hostPath: /var/log/audit
      mountPath: /var/log/audit
etcd:
  local:
    dataDir: /var/lib/etcd
dns:
  imageTag: v1.11.1
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
authentication:
  webhook:
    enabled: true
"""

JOIN = """\
apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: 10.0.0.1:6443
    token: abcdef.0123456789abcdef
    caCertHashes: ["sha256:%s"]
nodeRegistration:
  name: worker
""" % ("ab" * 32)


# ---------------------------------------------------------------------------
# kubeadm
# ---------------------------------------------------------------------------


def test_valid_kubeadm_configs_pass():
    assert check_kubeadm_config(INIT) == []
    assert check_kubeadm_config(JOIN) == []


def test_dns_type_is_rejected_as_removed():
    problems = check_kubeadm_config(INIT.replace("dns:\n", "dns:\n  type: CoreDNS\n"))
    assert problems == ["document 2 (ClusterConfiguration): dns.type: removed in v1beta3: kubeadm installs only CoreDNS"]


def test_api_server_advertise_address_is_rejected():
    problems = check_kubeadm_config(INIT.replace("apiServer:\n", "apiServer:\n  advertiseAddress: 10.0.0.1\n"))
    assert len(problems) == 1
    assert "apiServer.advertiseAddress" in problems[0]
    assert "localAPIEndpoint.advertiseAddress" in problems[0]


def test_the_old_systems_cluster_configuration_is_rejected():
    """The template of the system vmstation replaces (findings.md) had both removed fields."""
    old = """\
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.29.15
controlPlaneEndpoint: 192.168.4.63:6443
apiServer:
  advertiseAddress: 192.168.4.63
dns:
  type: CoreDNS
"""
    problems = check_kubeadm_config(old)
    assert len(problems) == 2
    assert any("dns.type" in p for p in problems) and any("apiServer.advertiseAddress" in p for p in problems)


@pytest.mark.parametrize("broken, where", [
    (INIT.replace("podSubnet:", "podSubnets:"), "document 2 (ClusterConfiguration): networking.podSubnets: unknown field of Networking"),
    (INIT.replace("    ttl: 24h0m0s", "    tll: 24h0m0s"), "document 1 (InitConfiguration): bootstrapTokens[0].tll: unknown field of BootstrapToken"),
    (INIT.replace("      mountPath: /var/log/audit", "      mountpath: /var/log/audit"), "apiServer.extraVolumes[0].mountpath: unknown field of HostPathMount"),
    (INIT.replace("    dataDir:", "    datadir:"), "etcd.local.datadir: unknown field of LocalEtcd"),
    (INIT.replace("cgroupDriver:", "cgroupdriver:"), "document 3 (KubeletConfiguration): cgroupdriver: unknown field of KubeletConfiguration"),
    (INIT.replace("    enabled: true", "    enable: true"), "authentication.webhook.enable: unknown field of KubeletWebhookAuthentication"),
    (JOIN.replace("caCertHashes", "caCertHash"), "discovery.bootstrapToken.caCertHash: unknown field of BootstrapTokenDiscovery"),
])
def test_unknown_fields_are_found_at_any_depth(broken, where):
    problems = check_kubeadm_config(broken)
    assert len(problems) == 1
    assert problems[0].endswith(where)


def test_wrong_shapes_are_reported():
    problems = check_kubeadm_config(INIT.replace("  taints: []", "  taints: {}"))
    assert problems == ["document 1 (InitConfiguration): nodeRegistration.taints: expected a list"]


@pytest.mark.parametrize("api_version, reason", [
    ("kubeadm.k8s.io/v1beta2", "removed in Kubernetes 1.26"),
    ("kubeadm.k8s.io/v2", "unknown apiVersion"),
])
def test_other_api_versions_are_rejected(api_version, reason):
    problems = check_kubeadm_config(JOIN.replace("kubeadm.k8s.io/v1beta3", api_version))
    assert len(problems) == 1 and reason in problems[0]


# -- v1beta4 (kubeadm 1.31 and later), and which API each cluster version reads ----------------------------

INIT_V1BETA4 = """\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.0.0.1
  bindPort: 6443
nodeRegistration:
  name: cp
  taints: []
  kubeletExtraArgs:
    - name: node-ip
      value: 10.0.0.1
  imagePullSerial: true
timeouts:
  controlPlaneComponentHealthCheck: 4m0s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.31.14
encryptionAlgorithm: ECDSA-P256
apiServer:
  certSANs: [10.0.0.1]
  extraArgs:
    - name: audit-log-maxage
      value: "30"
  extraEnvs:
    - name: HTTPS_PROXY
      value: http://proxy:3128
proxy:
  disabled: false
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
"""


def test_a_v1beta4_config_passes_against_the_v1beta4_field_set():
    assert check_kubeadm_config(INIT_V1BETA4) == []
    assert check_kubeadm_config(INIT_V1BETA4, "1.31.14") == []
    assert check_kubeadm_config(INIT_V1BETA4, "1.36.3") == []


def test_v1beta4_shapes_are_checked_extra_args_are_lists_and_v1beta3_fields_are_gone():
    problems = check_kubeadm_config(INIT_V1BETA4.replace(
        "    - name: node-ip\n      value: 10.0.0.1\n", "    node-ip: 10.0.0.1\n"))
    assert problems == ["document 1 (InitConfiguration): nodeRegistration.kubeletExtraArgs: expected a list"]
    problems = check_kubeadm_config(INIT_V1BETA4.replace("      value: \"30\"", "      val: \"30\""))
    assert problems == ["document 2 (ClusterConfiguration): apiServer.extraArgs[0].val: unknown field of Arg"]
    problems = check_kubeadm_config(INIT_V1BETA4.replace("  certSANs:", "  timeoutForControlPlane: 4m0s\n  certSANs:"))
    assert problems == ["document 2 (ClusterConfiguration): apiServer.timeoutForControlPlane: removed in v1beta4: "
                        "use {Init|Join}Configuration.timeouts.controlPlaneComponentHealthCheck"]


def test_a_v1beta3_only_field_is_unknown_in_v1beta4_and_a_v1beta4_one_in_v1beta3():
    assert check_kubeadm_config(INIT.replace("kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4")) == [
        "document 1 (InitConfiguration): nodeRegistration.kubeletExtraArgs: expected a list"]
    problems = check_kubeadm_config(INIT_V1BETA4.replace("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3"))
    assert "document 1 (InitConfiguration): timeouts: unknown field of InitConfiguration" in problems
    assert "document 2 (ClusterConfiguration): encryptionAlgorithm: unknown field of ClusterConfiguration" in problems


@pytest.mark.parametrize("version, api", [
    ("1.29.15", "kubeadm.k8s.io/v1beta3"), ("v1.30.14", "kubeadm.k8s.io/v1beta3"), ("1.31.0", "kubeadm.k8s.io/v1beta4"),
    ("1.35.7", "kubeadm.k8s.io/v1beta4"), ("1.36.3", "kubeadm.k8s.io/v1beta4"),
])
def test_deploy_debian_renders_v1beta3_before_1_31_and_v1beta4_from_1_31(version, api):
    assert kubeadm_api_version(version) == api


def test_an_api_version_the_clusters_kubeadm_does_not_read_is_refused():
    assert check_kubeadm_config(INIT_V1BETA4, "1.30.14")[0] == (
        "document 1 (InitConfiguration): apiVersion kubeadm.k8s.io/v1beta4 needs Kubernetes 1.31 or later (the cluster "
        "is 1.30); use kubeadm.k8s.io/v1beta3")
    assert check_kubeadm_config(JOIN, "1.36.3") == [
        "document 1 (JoinConfiguration): apiVersion kubeadm.k8s.io/v1beta3 was removed in Kubernetes 1.36 (the "
        "cluster is 1.36); use kubeadm.k8s.io/v1beta4"]
    assert check_kubeadm_config(JOIN, "1.35.7") == []          # deprecated from 1.31, still read until 1.36


def test_unknown_kind_is_rejected():
    problems = check_kubeadm_config(JOIN.replace("kind: JoinConfiguration", "kind: ResetConfiguration"))
    assert problems == ["document 1 (ResetConfiguration): kind 'ResetConfiguration' is not one of "
                        "kubeadm.k8s.io/v1beta3: InitConfiguration, ClusterConfiguration, JoinConfiguration"]


def test_bad_token_is_reported_without_repeating_it():
    secret = "NOT-A-TOKEN-s3cr3t"
    problems = check_kubeadm_config(JOIN.replace("abcdef.0123456789abcdef", secret))
    assert len(problems) == 1 and "discovery.bootstrapToken.token" in problems[0]
    assert secret not in problems[0]


def test_bad_ca_cert_hash_and_version_are_reported():
    assert "caCertHashes" in check_kubeadm_config(JOIN.replace("sha256:", "md5:"))[0]
    assert "kubernetesVersion" in check_kubeadm_config(INIT.replace("v1.29.15", "1.29"))[0]


@pytest.mark.parametrize("text, problem", [
    ("a: [", "not YAML"),
    ("", "no YAML document"),
    ("- 1\n- 2\n", "document 1 is not a mapping"),
])
def test_unparseable_configs_are_reported(text, problem):
    assert check_kubeadm_config(text)[0].startswith(problem)


@pytest.mark.parametrize("fields_file", [KUBEADM_FIELDS_FILE, KUBEADM_V1BETA4_FIELDS_FILE])
def test_field_set_data_is_consistent(fields_file):
    """Every type a field points to is described, and every kind has a type."""
    data = json.loads(fields_file.read_text())
    types = data["types"]
    for type_name, fields in types.items():
        for field, field_type in fields.items():
            if field_type is not None:
                assert field_type.removeprefix("[]") in types, f"{type_name}.{field} -> {field_type}"
    for kinds in data["kinds"].values():
        for kind in kinds:
            assert {"apiVersion", "kind"} <= set(types[kind])
    assert "type" not in types["DNS"] and "advertiseAddress" not in types["APIServer"]


# ---------------------------------------------------------------------------
# containerd
# ---------------------------------------------------------------------------

CONTAINERD_V2 = """\
version = 2
disabled_plugins = []
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
"""
CONTAINERD_V3 = """\
version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = true
"""


def test_valid_containerd_configs_pass():
    assert check_containerd_config(CONTAINERD_V2, 2) == []
    assert check_containerd_config(CONTAINERD_V3, 3) == []


def test_systemd_cgroup_false_is_reported():
    problems = check_containerd_config(CONTAINERD_V2.replace("true", "false"), 2)
    assert problems == ['SystemdCgroup is not true in '
                        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]']


def test_disabled_cri_is_reported():
    """Debian's and Docker's packaged config.toml ship with disabled_plugins = ["cri"]."""
    problems = check_containerd_config(CONTAINERD_V2.replace("[]", '["cri"]'), 2)
    assert problems == ["disabled_plugins disables the CRI: cri"]


def test_version_2_section_in_a_version_3_config_is_reported():
    text = CONTAINERD_V2.replace("version = 2", "version = 3")
    problems = check_containerd_config(text, 3)
    assert any("is not true in [plugins.\"io.containerd.cri.v1.runtime\"" in p for p in problems)
    assert any("is ignored by config version 3" in p for p in problems)


@pytest.mark.parametrize("text, version, problem", [
    (CONTAINERD_V2, 3, "version = 2, expected 3"),
    ("version = [", 2, "not TOML"),
    (CONTAINERD_V2, 4, "containerd config version 4 is not 2 or 3"),
])
def test_wrong_containerd_input_is_reported(text, version, problem):
    assert check_containerd_config(text, version)[0].startswith(problem)


# ---------------------------------------------------------------------------
# manifests
# ---------------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: example.invalid/web:1
"""


def test_valid_manifest_passes():
    assert check_manifests(DEPLOYMENT) == []


def test_unknown_field_is_an_error_in_strict_mode():
    problems = check_manifests(DEPLOYMENT.replace("replicas:", "replica:"))
    assert len(problems) == 1
    assert problems[0].startswith("document 1 (Deployment demo/web): spec: ")
    assert "replica" in problems[0]


def test_wrong_type_is_an_error():
    problems = check_manifests(DEPLOYMENT.replace("replicas: 1", "replicas: one"))
    assert len(problems) == 1 and problems[0].startswith("document 1 (Deployment demo/web): spec.replicas: ")


def test_kind_without_schema_is_an_error():
    problems = check_manifests("apiVersion: example.invalid/v1\nkind: Widget\nmetadata: {name: w}\n")
    assert len(problems) == 1 and "Widget" in problems[0]


def test_api_removed_before_1_29_is_an_error():
    problems = check_manifests(DEPLOYMENT.replace("apps/v1", "extensions/v1beta1"))
    assert len(problems) == 1


def test_duplicate_object_is_an_error():
    problems = check_manifests(DEPLOYMENT + "---\n" + DEPLOYMENT)
    assert problems == ["document 2 (Deployment demo/web): defined twice in this file"]


def test_document_that_is_no_object_is_an_error():
    assert check_manifests("just: data\n") == ["document 1: not a Kubernetes object (no apiVersion/kind)"]


def test_secret_values_never_appear_in_problems():
    secret = "hunter2-very-secret"
    text = f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: demo}}\nstringData: [\"{secret}\"]\n"
    problems = check_manifests(text)
    assert len(problems) == 1
    assert secret not in problems[0]
