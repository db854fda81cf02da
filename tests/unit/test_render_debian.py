"""Every file deploy-debian writes, rendered for the real homelab and checked for what it must say.

Templates live under templates/{system,containerd,kubernetes,kubeadm,flannel,apps}. Each test
renders with the contract values (host, cluster, inventory, versions) plus the documented
extras, parses the result in its own format and asserts the inventory's values arrive.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.unit.conftest import homelab_inventory
from vmstation import dashboards, versions
from vmstation.config_checks import check_containerd_config, check_kubeadm_config, check_manifests
from vmstation.errors import TemplateError
from vmstation.templates import TEMPLATE_DIR, render

DEBIAN_DIRS = ("system", "containerd", "kubernetes", "kubeadm", "flannel", "apps")
JOIN = {"token": "abcdef.0123456789abcdef", "ca_cert_hash": "sha256:" + "0f" * 32}
BOARDS = dashboards.provisioned(homelab_inventory(), homelab_inventory().cluster("debian"))

# template -> (host it is rendered for, extras). The control plane stands in for cluster-wide files.
TEMPLATES = {
    "system/99-kubernetes.conf.j2": ("storagenodet3500", {}),
    "system/modules-kubernetes.conf.j2": ("storagenodet3500", {}),
    "system/50-vmstation-wol.link.j2": ("storagenodet3500", {}),
    "system/90vmstation-proxy.j2": ("proxied", {}),
    "containerd/config.toml.j2": ("masternode", {"containerd_config_version": 2}),
    "containerd/containerd.service.j2": ("masternode", {}),
    "kubernetes/kubernetes.list.j2": ("masternode", {}),
    "kubernetes/kubelet.default.j2": ("storagenodet3500", {}),
    "kubernetes/kubelet.service.j2": ("storagenodet3500", {}),
    "kubernetes/10-kubeadm.conf.j2": ("storagenodet3500", {}),
    "kubeadm/init.yaml.j2": ("masternode", {}),
    "kubeadm/join.yaml.j2": ("storagenodet3500", {"join": JOIN}),
    "flannel/kube-flannel.yaml.j2": ("masternode", {}),
    "apps/namespaces.yaml.j2": ("masternode", {}),
    "apps/prometheus.yml.j2": ("masternode", {}),
    "apps/prometheus.yaml.j2": ("masternode", {}),
    "apps/grafana.yaml.j2": ("masternode", {"dashboards": BOARDS}),
    "apps/grafana-dashboards.yaml.j2": ("masternode", {"dashboards": BOARDS}),
    "apps/loki.yml.j2": ("masternode", {}),
    "apps/loki.yaml.j2": ("masternode", {}),
    "apps/promtail.yml.j2": ("masternode", {}),
    "apps/promtail.yaml.j2": ("masternode", {}),
    "apps/node-exporter.yaml.j2": ("masternode", {}),
    "apps/kube-state-metrics.yaml.j2": ("masternode", {}),
    "apps/jellyfin.yaml.j2": ("masternode", {}),
}
MANIFESTS = [name for name in TEMPLATES if name.endswith(".yaml.j2") and name.split("/")[0] in ("flannel", "apps")]


def render_for(inventory, name: str, host_name: str, **extra) -> str:
    host = inventory.host(host_name)
    cluster = inventory.cluster(host.cluster)
    return render(name, host=host, cluster=cluster, inventory=inventory, versions=versions.as_dict(), **extra)


def with_host(inventory, name: str, **changes):
    """The inventory with one host changed (or added as a copy of storagenodet3500 when new)."""
    if any(h.name == name for h in inventory.hosts):
        hosts = tuple(dataclasses.replace(h, **changes) if h.name == name else h for h in inventory.hosts)
    else:
        template = inventory.host("storagenodet3500")
        hosts = inventory.hosts + (dataclasses.replace(template, name=name, roles=("worker",), **changes),)
    return dataclasses.replace(inventory, hosts=hosts)


@pytest.fixture
def lab(homelab):
    """The homelab plus a worker that uses an apt proxy (the only template that needs one)."""
    return with_host(homelab, "proxied", address="10.0.0.9", apt_proxy="http://10.0.0.1:3142")


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def find(documents: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_spec(document: dict) -> dict:
    return document["spec"]["template"]["spec"]


# ---------------------------------------------------------------------------
# Every template
# ---------------------------------------------------------------------------


def test_every_debian_template_is_covered_here():
    on_disk = {
        str(p.relative_to(TEMPLATE_DIR)) for d in DEBIAN_DIRS for p in (Path(TEMPLATE_DIR) / d).glob("*.j2")
    }
    assert on_disk == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_renders_with_managed_header(lab, name):
    host_name, extra = TEMPLATES[name]
    text = render_for(lab, name, host_name, **extra)
    assert "Managed by vmstation" in text.splitlines()[0]
    assert "None" not in text, "a missing inventory value was rendered as None"
    assert text.endswith("\n")


def test_missing_value_is_a_template_error_naming_it(homelab):
    host = homelab.host("masternode")
    with pytest.raises(TemplateError, match=r"kubeadm/init\.yaml\.j2.*'cluster' is undefined"):
        render("kubeadm/init.yaml.j2", host=host, inventory=homelab, versions=versions.as_dict())


def test_join_without_credentials_names_join(homelab):
    with pytest.raises(TemplateError, match=r"'join' is undefined"):
        render_for(homelab, "kubeadm/join.yaml.j2", "storagenodet3500")


# ---------------------------------------------------------------------------
# system
# ---------------------------------------------------------------------------


def test_sysctl_sets_bridge_and_forwarding(homelab):
    text = render_for(homelab, "system/99-kubernetes.conf.j2", "storagenodet3500")
    settings = dict(
        (k.strip(), v.strip()) for k, v in (line.split("=", 1) for line in text.splitlines() if "=" in line)
    )
    assert settings == {
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.bridge.bridge-nf-call-ip6tables": "1",
        "net.ipv4.ip_forward": "1",
    }


def test_modules_load_overlay_and_br_netfilter(homelab):
    text = render_for(homelab, "system/modules-kubernetes.conf.j2", "storagenodet3500")
    modules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert modules == ["overlay", "br_netfilter"]


def test_wake_on_lan_link_matches_the_worker_mac(homelab):
    text = render_for(homelab, "system/50-vmstation-wol.link.j2", "storagenodet3500")
    lines = text.splitlines()
    assert "MACAddress=00:e0:4c:68:cb:bf" in lines
    assert "WakeOnLan=magic" in lines
    # Replacing 99-default.link must not change how the NIC is named.
    assert "NamePolicy=keep kernel database onboard slot path" in lines
    assert lines.index("[Match]") < lines.index("MACAddress=00:e0:4c:68:cb:bf") < lines.index("[Link]")


def test_wake_on_lan_link_without_mac_is_an_error(homelab):
    lab = with_host(homelab, "storagenodet3500", mac=None)
    with pytest.raises(TemplateError, match="wake_on_lan_needs_host_mac"):
        render_for(lab, "system/50-vmstation-wol.link.j2", "storagenodet3500")


def test_apt_proxy_drop_in(lab):
    text = render_for(lab, "system/90vmstation-proxy.j2", "proxied")
    assert 'Acquire::http::Proxy "http://10.0.0.1:3142";' in text.splitlines()
    assert 'Acquire::https::Proxy "http://10.0.0.1:3142";' in text.splitlines()


def test_apt_proxy_drop_in_without_proxy_is_an_error(homelab):
    with pytest.raises(TemplateError, match="apt_proxy"):
        render_for(homelab, "system/90vmstation-proxy.j2", "storagenodet3500")


# ---------------------------------------------------------------------------
# kubernetes packages and kubelet
# ---------------------------------------------------------------------------


def test_apt_source_is_pkgs_k8s_io_with_keyring(homelab):
    text = render_for(homelab, "kubernetes/kubernetes.list.j2", "masternode")
    assert text.splitlines()[-1] == (
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.29/deb/ /"
    )


def test_kubelet_default_pins_node_ip(homelab):
    text = render_for(homelab, "kubernetes/kubelet.default.j2", "storagenodet3500")
    assert "KUBELET_EXTRA_ARGS=--node-ip=192.168.4.61" in text.splitlines()


def test_kubelet_unit_and_drop_in_run_the_tarball_binary(homelab):
    unit = render_for(homelab, "kubernetes/kubelet.service.j2", "storagenodet3500")
    drop_in = render_for(homelab, "kubernetes/10-kubeadm.conf.j2", "storagenodet3500")
    assert "ExecStart=/usr/local/bin/kubelet" in unit.splitlines()
    exec_lines = [line for line in drop_in.splitlines() if line.startswith("ExecStart=")]
    # An empty ExecStart= first: a drop-in must reset the unit's command before replacing it.
    assert exec_lines[0] == "ExecStart="
    assert exec_lines[1].startswith("ExecStart=/usr/local/bin/kubelet ")
    for variable in ("KUBELET_KUBECONFIG_ARGS", "KUBELET_CONFIG_ARGS", "KUBELET_KUBEADM_ARGS", "KUBELET_EXTRA_ARGS"):
        assert f"${variable}" in exec_lines[1]
    assert "EnvironmentFile=-/etc/default/kubelet" in drop_in.splitlines()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (package systemd)")
def test_kubelet_unit_with_its_drop_in_passes_systemd_analyze(homelab, tmp_path):
    """systemd's own parser: unknown keys or sections would be reported. The unit and its
    drop-in are joined into one file (what systemd does when it loads them); the only
    complaint allowed is the kubelet binary, which is not installed here."""
    unit = render_for(homelab, "kubernetes/kubelet.service.j2", "storagenodet3500")
    drop_in = render_for(homelab, "kubernetes/10-kubeadm.conf.j2", "storagenodet3500")
    path = tmp_path / "kubelet.service"
    path.write_text(unit + "\n" + drop_in)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                            capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if line and "/usr/local/bin/kubelet is not executable" not in line]
    assert complaints == []


# ---------------------------------------------------------------------------
# kubeadm
# ---------------------------------------------------------------------------


def test_kubeadm_init_passes_the_checker_and_carries_the_inventory(homelab):
    text = render_for(homelab, "kubeadm/init.yaml.j2", "masternode")
    assert check_kubeadm_config(text) == []
    init, cluster, proxy, kubelet = docs(text)
    assert (init["kind"], cluster["kind"], proxy["kind"], kubelet["kind"]) == (
        "InitConfiguration", "ClusterConfiguration", "KubeProxyConfiguration", "KubeletConfiguration")
    assert proxy == {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
                     "mode": "nftables", "featureGates": {"NFTablesProxyMode": True}}
    assert init["localAPIEndpoint"] == {"advertiseAddress": "192.168.4.63", "bindPort": 6443}
    assert init["nodeRegistration"] == {
        "name": "masternode",
        "criSocket": "unix:///var/run/containerd/containerd.sock",
        "kubeletExtraArgs": {"node-ip": "192.168.4.63"},
    }
    assert cluster["kubernetesVersion"] == "v1.29.15"
    assert cluster["controlPlaneEndpoint"] == "192.168.4.63:6443"
    assert cluster["networking"]["podSubnet"] == "10.244.0.0/16"
    assert cluster["networking"]["serviceSubnet"] == "10.96.0.0/12"
    assert cluster["apiServer"] == {"certSANs": ["192.168.4.63", "masternode"]}
    assert "dns" not in cluster
    assert kubelet["cgroupDriver"] == "systemd"


@pytest.mark.parametrize("mode, nftables", [("nftables", True), ("iptables", False)])
def test_kube_proxy_and_flannel_follow_one_proxy_mode(homelab, mode, nftables):
    cluster = dataclasses.replace(homelab.cluster("debian"), proxy_mode=mode)
    inventory = dataclasses.replace(homelab, clusters=(cluster, homelab.cluster("rke2")))
    proxy = docs(render_for(inventory, "kubeadm/init.yaml.j2", "masternode"))[2]
    assert proxy["mode"] == mode and ("featureGates" in proxy) is nftables
    flannel = docs(render_for(inventory, "flannel/kube-flannel.yaml.j2", "masternode"))
    net_conf = next(d for d in flannel if d["kind"] == "ConfigMap")["data"]["net-conf.json"]
    assert json.loads(net_conf)["EnableNFTables"] is nftables


def at_version(inventory, version: str):
    """The homelab with its Debian cluster at ``version`` (hosts.toml's ``version`` after an upgrade)."""
    cluster = dataclasses.replace(inventory.cluster("debian"), version=version)
    return dataclasses.replace(inventory, clusters=(cluster, inventory.cluster("rke2")))


@pytest.mark.parametrize("version, api", [("1.29.15", "v1beta3"), ("1.30.14", "v1beta3"), ("1.31.14", "v1beta4"),
                                          ("1.35.7", "v1beta4"), ("1.36.3", "v1beta4")])
def test_kubeadm_configs_are_rendered_in_the_api_the_clusters_kubeadm_reads(homelab, version, api):
    inventory = at_version(homelab, version)
    init_text = render_for(inventory, "kubeadm/init.yaml.j2", "masternode")
    join_text = render_for(inventory, "kubeadm/join.yaml.j2", "storagenodet3500", join=JOIN)
    assert check_kubeadm_config(init_text, version) == [] and check_kubeadm_config(join_text, version) == []
    init, cluster, _proxy, _kubelet = docs(init_text)
    (join,) = docs(join_text)
    assert {init["apiVersion"], cluster["apiVersion"], join["apiVersion"]} == {f"kubeadm.k8s.io/{api}"}
    assert cluster["kubernetesVersion"] == f"v{version}"
    node_ip = ({"node-ip": "192.168.4.63"} if api == "v1beta3" else [{"name": "node-ip", "value": "192.168.4.63"}])
    assert init["nodeRegistration"]["kubeletExtraArgs"] == node_ip
    worker_ip = ({"node-ip": "192.168.4.61"} if api == "v1beta3" else [{"name": "node-ip", "value": "192.168.4.61"}])
    assert join["nodeRegistration"]["kubeletExtraArgs"] == worker_ip
    assert init["localAPIEndpoint"] == {"advertiseAddress": "192.168.4.63", "bindPort": 6443}


def test_kubeadm_join_passes_the_checker_and_carries_the_inventory(homelab):
    text = render_for(homelab, "kubeadm/join.yaml.j2", "storagenodet3500", join=JOIN)
    assert check_kubeadm_config(text) == []
    (join,) = docs(text)
    assert join["kind"] == "JoinConfiguration"
    assert join["discovery"]["bootstrapToken"] == {
        "apiServerEndpoint": "192.168.4.63:6443",
        "token": JOIN["token"],
        "caCertHashes": [JOIN["ca_cert_hash"]],
    }
    assert join["nodeRegistration"]["name"] == "storagenodet3500"
    assert join["nodeRegistration"]["kubeletExtraArgs"] == {"node-ip": "192.168.4.61"}


# ---------------------------------------------------------------------------
# containerd
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("version, runtime_plugin", [
    (2, "io.containerd.grpc.v1.cri"),
    (3, "io.containerd.cri.v1.runtime"),
])
def test_containerd_config_has_systemd_cgroup_in_its_own_section(homelab, version, runtime_plugin):
    text = render_for(homelab, "containerd/config.toml.j2", "masternode", containerd_config_version=version)
    assert check_containerd_config(text, version) == []
    config = tomllib.loads(text)
    assert config["version"] == version
    assert config["disabled_plugins"] == []
    runtime = config["plugins"][runtime_plugin]
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert runtime["cni"] == {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc/cni/net.d"}
    assert "registry.k8s.io/pause:3.9" in text


def test_containerd_v3_pins_the_sandbox_image(homelab):
    text = render_for(homelab, "containerd/config.toml.j2", "masternode", containerd_config_version=3)
    images = tomllib.loads(text)["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.9"


@pytest.mark.parametrize("version, pause", [("1.29.15", "3.9"), ("1.30.14", "3.9"), ("1.31.14", "3.10"),
                                            ("1.34.10", "3.10.1"), ("1.36.3", "3.10.2"), ("1.28.15", "3.9")])
@pytest.mark.parametrize("config_version", [2, 3])
def test_containerd_sandbox_image_is_the_pause_the_clusters_kubeadm_expects(homelab, version, pause, config_version):
    lab = dataclasses.replace(homelab, clusters=tuple(
        dataclasses.replace(c, version=version) if c.kind == "kubeadm" else c for c in homelab.clusters))
    text = render_for(lab, "containerd/config.toml.j2", "masternode", containerd_config_version=config_version)
    assert text.count(f'"registry.k8s.io/pause:{pause}"') == 1 and text.count("registry.k8s.io/pause:") == 1


def test_containerd_config_of_the_other_version_fails_the_check(homelab):
    text = render_for(homelab, "containerd/config.toml.j2", "masternode", containerd_config_version=2)
    assert check_containerd_config(text, 3) != []


def test_containerd_config_version_must_be_2_or_3(homelab):
    with pytest.raises(TemplateError, match="containerd_config_version_must_be_2_or_3"):
        render_for(homelab, "containerd/config.toml.j2", "masternode", containerd_config_version=4)


@pytest.mark.skipif(shutil.which("containerd") is None, reason="containerd not installed (Debian package containerd)")
def test_containerd_1x_reads_systemd_cgroup_from_the_v2_config(homelab, tmp_path):
    """containerd itself merges the v2 file into its configuration: SystemdCgroup lands on runc."""
    path = tmp_path / "config.toml"
    path.write_text(render_for(homelab, "containerd/config.toml.j2", "masternode", containerd_config_version=2))
    dump = subprocess.run(["containerd", "--config", str(path), "config", "dump"],
                          capture_output=True, text=True, check=True, timeout=30).stdout
    cri = tomllib.loads(dump)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert cri["cni"]["bin_dir"] == "/opt/cni/bin"


# ---------------------------------------------------------------------------
# manifests: schema and common rules
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_passes_kubernetes_1_29_strict_schema(homelab, name):
    assert check_manifests(render_for(homelab, name, "masternode", **TEMPLATES[name][1]), "1.29.0") == []


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_server_side_apply_friendly(homelab, name):
    """Named, namespaced where it must be, ports with an explicit protocol (SSA merge keys)."""
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for document in docs(render_for(homelab, name, "masternode", **TEMPLATES[name][1])):
        assert document["metadata"].get("name")
        assert ("namespace" in document["metadata"]) == (document["kind"] not in cluster_scoped)
        assert "status" not in document
        for port in _ports(document):
            assert port.get("protocol") == "TCP", f"{document['kind']}/{document['metadata']['name']}: {port}"


@pytest.mark.parametrize("name", MANIFESTS)
def test_containers_use_pinned_images_and_have_requests_and_limits(homelab, name):
    pinned = {versions.FLANNEL_IMAGE, versions.FLANNEL_CNI_PLUGIN_IMAGE, *versions.IMAGES.values()}
    for document in docs(render_for(homelab, name, "masternode", **TEMPLATES[name][1])):
        for container in _containers(document):
            assert container["image"] in pinned
            assert container["resources"]["requests"] and container["resources"]["limits"]


def _containers(document: dict) -> list[dict]:
    if "template" not in document.get("spec", {}):
        return []
    spec = pod_spec(document)
    return spec.get("initContainers", []) + spec["containers"]


def _ports(document: dict) -> list[dict]:
    if document["kind"] == "Service":
        return document["spec"]["ports"]
    return [port for c in _containers(document) for port in c.get("ports", [])]


# ---------------------------------------------------------------------------
# flannel
# ---------------------------------------------------------------------------


def test_flannel_net_conf_and_cni_conf(homelab):
    documents = docs(render_for(homelab, "flannel/kube-flannel.yaml.j2", "masternode"))
    namespace = find(documents, "Namespace", "kube-flannel")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    config = find(documents, "ConfigMap", "kube-flannel-cfg")["data"]
    assert json.loads(config["net-conf.json"]) == {
        "Network": "10.244.0.0/16", "EnableNFTables": True, "Backend": {"Type": "vxlan"}}
    assert [p["type"] for p in json.loads(config["cni-conf.json"])["plugins"]] == ["flannel", "portmap"]
    daemonset = find(documents, "DaemonSet", "kube-flannel-ds")
    spec = pod_spec(daemonset)
    assert [c["name"] for c in spec["initContainers"]] == ["install-cni-plugin", "install-cni"]
    assert spec["initContainers"][0]["image"] == "ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1"
    assert spec["containers"][0]["image"] == "ghcr.io/flannel-io/flannel:v0.27.4"
    assert spec["hostNetwork"] is True
    assert find(documents, "ServiceAccount", "flannel")["metadata"]["namespace"] == "kube-flannel"
    assert find(documents, "ClusterRoleBinding", "flannel")["subjects"][0]["namespace"] == "kube-flannel"


def _flannel_args(inventory) -> list[str]:
    documents = docs(render_for(inventory, "flannel/kube-flannel.yaml.j2", "masternode"))
    return pod_spec(find(documents, "DaemonSet", "kube-flannel-ds"))["containers"][0]["args"]


def test_flannel_lists_each_nodes_interface(homelab):
    assert _flannel_args(homelab) == ["--ip-masq", "--kube-subnet-mgr", "--iface=eno1", "--iface=enp2s0"]


def test_flannel_without_interfaces_has_no_iface(homelab):
    lab = with_host(with_host(homelab, "masternode", interface=None), "storagenodet3500", interface=None)
    assert _flannel_args(lab) == ["--ip-masq", "--kube-subnet-mgr"]


def test_flannel_names_a_host_without_interface_by_its_address(homelab):
    lab = with_host(homelab, "storagenodet3500", interface=None)
    assert _flannel_args(lab) == ["--ip-masq", "--kube-subnet-mgr", "--iface=eno1", "--iface=192.168.4.61"]


def test_flannel_pod_network_follows_the_inventory(homelab):
    debian = dataclasses.replace(homelab.cluster("debian"), pod_cidr="10.250.0.0/16")
    lab = dataclasses.replace(homelab, clusters=(debian, homelab.cluster("rke2")))
    documents = docs(render_for(lab, "flannel/kube-flannel.yaml.j2", "masternode"))
    net_conf = json.loads(find(documents, "ConfigMap", "kube-flannel-cfg")["data"]["net-conf.json"])
    assert net_conf["Network"] == "10.250.0.0/16"


# ---------------------------------------------------------------------------
# monitoring
# ---------------------------------------------------------------------------


def _prometheus_config(inventory) -> dict:
    documents = docs(render_for(inventory, "apps/prometheus.yaml.j2", "masternode"))
    return yaml.safe_load(find(documents, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"])


def test_prometheus_configmap_holds_the_rendered_config(homelab):
    assert _prometheus_config(homelab) == yaml.safe_load(render_for(homelab, "apps/prometheus.yml.j2", "masternode"))


def test_prometheus_federates_the_rke2_prometheus(homelab):
    jobs = {job["job_name"]: job for job in _prometheus_config(homelab)["scrape_configs"]}
    federation = jobs["federate-rke2"]
    assert federation["honor_labels"] is True
    assert federation["metrics_path"] == "/federate"
    assert federation["params"] == {"match[]": ['{job=~".+"}']}
    assert federation["static_configs"] == [
        {"targets": ["192.168.4.62:30090"], "labels": {"cluster": "rke2-homelab"}}]
    assert {"node-exporter", "kube-state-metrics", "kubelet", "cadvisor"} <= set(jobs)


def test_prometheus_without_rke2_cluster_has_no_federation(homelab):
    lab = dataclasses.replace(homelab, clusters=(homelab.cluster("debian"),),
                              hosts=homelab.hosts_of("debian"))
    jobs = [job["job_name"] for job in _prometheus_config(lab)["scrape_configs"]]
    assert "federate-rke2" not in jobs


def test_prometheus_scrapes_kubelets_through_the_api_server(homelab):
    jobs = {job["job_name"]: job for job in _prometheus_config(homelab)["scrape_configs"]}
    for name, path in (("kubelet", "/api/v1/nodes/${1}/proxy/metrics"),
                       ("cadvisor", "/api/v1/nodes/${1}/proxy/metrics/cadvisor")):
        job = jobs[name]
        assert job["scheme"] == "https"
        assert job["kubernetes_sd_configs"] == [{"role": "node"}]
        rewrite = [r for r in job["relabel_configs"] if r.get("target_label") == "__metrics_path__"]
        assert rewrite[0]["replacement"] == path
    documents = docs(render_for(homelab, "apps/prometheus.yaml.j2", "masternode"))
    rules = find(documents, "ClusterRole", "vmstation-prometheus")["rules"]
    assert any("nodes/proxy" in rule.get("resources", []) for rule in rules)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_prometheus_config_passes_promtool(homelab, tmp_path):
    config = _prometheus_config(homelab)
    # Debian builds Prometheus without Kubernetes service discovery, so its promtool rejects
    # kubernetes_sd_configs. Those jobs get a placeholder static target instead; everything
    # else (relabelling, TLS, authorization, federation params) is checked as written.
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["node.invalid:9100"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(["promtool", "check", "config", "--syntax-only", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_runs_on_the_control_plane_behind_nodeport_30090(homelab):
    documents = docs(render_for(homelab, "apps/prometheus.yaml.j2", "masternode"))
    spec = pod_spec(find(documents, "Deployment", "prometheus"))
    assert spec["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
            "effect": "NoSchedule"} in spec["tolerations"]
    service = find(documents, "Service", "prometheus")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["nodePort"] == 30090


def test_grafana_provisions_datasources_and_reads_the_admin_secret(homelab):
    text = render_for(homelab, "apps/grafana.yaml.j2", "masternode", dashboards=BOARDS)
    documents = docs(text)
    provisioning = yaml.safe_load(find(documents, "ConfigMap", "grafana-datasources")["data"]["datasources.yaml"])
    urls = {d["type"]: d["url"] for d in provisioning["datasources"]}
    assert urls == {"prometheus": "http://prometheus.monitoring.svc.cluster.local:9090",
                    "loki": "http://loki.monitoring.svc.cluster.local:3100"}
    env = {e["name"]: e for e in pod_spec(find(documents, "Deployment", "grafana"))["containers"][0]["env"]}
    for variable, key in (("GF_SECURITY_ADMIN_USER", "admin-user"), ("GF_SECURITY_ADMIN_PASSWORD", "admin-password")):
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": "grafana-admin", "key": key}
        assert "value" not in env[variable]


def test_loki_is_a_single_binary_on_the_filesystem(homelab):
    documents = docs(render_for(homelab, "apps/loki.yaml.j2", "masternode"))
    config = yaml.safe_load(find(documents, "ConfigMap", "loki-config")["data"]["loki.yaml"])
    assert config["auth_enabled"] is False
    assert config["common"]["ring"]["kvstore"]["store"] == "inmemory"
    assert config["common"]["replication_factor"] == 1
    schema = config["schema_config"]["configs"][0]
    assert (schema["store"], schema["object_store"], schema["schema"]) == ("tsdb", "filesystem", "v13")
    # Loki 3 refuses retention without a store for delete requests.
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"
    container = pod_spec(find(documents, "Deployment", "loki"))["containers"][0]
    assert container["args"] == ["-config.file=/etc/loki/loki.yaml"]


def test_promtail_ships_pod_logs_of_its_node_to_loki(homelab):
    documents = docs(render_for(homelab, "apps/promtail.yaml.j2", "masternode"))
    config = yaml.safe_load(find(documents, "ConfigMap", "promtail-config")["data"]["promtail.yaml"])
    assert config["clients"] == [{"url": "http://loki.monitoring.svc.cluster.local:3100/loki/api/v1/push"}]
    job = config["scrape_configs"][0]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    assert {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "__host__"} in job["relabel_configs"]
    spec = pod_spec(find(documents, "DaemonSet", "promtail"))
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["HOSTNAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/var/log/pods"]["readOnly"] is True
    find(documents, "ClusterRoleBinding", "vmstation-promtail")


def test_node_exporter_runs_on_every_node_on_the_host_network(homelab):
    (daemonset,) = docs(render_for(homelab, "apps/node-exporter.yaml.j2", "masternode"))
    spec = pod_spec(daemonset)
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    assert {"operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["containers"][0]["ports"][0]["containerPort"] == 9100


def test_kube_state_metrics_has_rbac_and_service(homelab):
    documents = docs(render_for(homelab, "apps/kube-state-metrics.yaml.j2", "masternode"))
    binding = find(documents, "ClusterRoleBinding", "vmstation-kube-state-metrics")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kube-state-metrics", "namespace": "monitoring"}]
    rules = find(documents, "ClusterRole", "vmstation-kube-state-metrics")["rules"]
    assert any(r["apiGroups"] == ["apps"] and "deployments" in r["resources"] for r in rules)
    service = find(documents, "Service", "kube-state-metrics")
    assert {p["port"] for p in service["spec"]["ports"]} == {8080, 8081}


# ---------------------------------------------------------------------------
# Jellyfin
# ---------------------------------------------------------------------------


def test_jellyfin_is_a_deployment_pinned_to_the_storage_node(homelab):
    documents = docs(render_for(homelab, "apps/jellyfin.yaml.j2", "masternode"))
    deployment = find(documents, "Deployment", "jellyfin")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec(deployment)
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "storagenodet3500"}
    volumes = {v["name"]: v["hostPath"] for v in spec["volumes"]}
    assert volumes["media"] == {"path": "/srv/media", "type": "Directory"}
    assert volumes["config"]["path"] == "/var/lib/jellyfin/config"
    assert volumes["cache"]["path"] == "/var/lib/jellyfin/cache"
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["media"] == {"name": "media", "mountPath": "/media", "readOnly": True}
    service = find(documents, "Service", "jellyfin")
    assert service["spec"]["type"] == "NodePort"
    assert {(p["port"], p["nodePort"]) for p in service["spec"]["ports"]} == {(8096, 30096)}   # no certificate
    assert [p["containerPort"] for p in spec["containers"][0]["ports"]] == [8096]


def test_jellyfin_publishes_https_only_with_a_certificate(homelab):
    lab = with_host(homelab, "storagenodet3500", jellyfin_certificate="/etc/jellyfin/jellyfin.pfx")
    documents = docs(render_for(lab, "apps/jellyfin.yaml.j2", "masternode"))
    assert check_manifests("---\n".join(yaml.safe_dump(d) for d in documents)) == []
    spec = pod_spec(find(documents, "Deployment", "jellyfin"))
    assert {v["name"]: v["hostPath"] for v in spec["volumes"]}["certificate"] == {
        "path": "/etc/jellyfin/jellyfin.pfx", "type": "File"}
    assert {"name": "certificate", "mountPath": "/certs/jellyfin.pfx", "readOnly": True} in \
        spec["containers"][0]["volumeMounts"]
    service = find(documents, "Service", "jellyfin")
    assert {(p["port"], p["nodePort"]) for p in service["spec"]["ports"]} == {(8096, 30096), (8920, 30920)}


def test_node_exporter_runs_as_spc_t_and_kube_state_metrics_probes_match_upstream(homelab):
    exporter = pod_spec(find(docs(render_for(homelab, "apps/node-exporter.yaml.j2", "masternode")), "DaemonSet",
                             "node-exporter"))
    assert exporter["securityContext"]["seLinuxOptions"] == {"type": "spc_t"}
    rke2_exporter = pod_spec(find(docs(render_for(homelab, "rke2-monitoring/node-exporter.yaml.j2", "homelab")),
                                  "DaemonSet", "node-exporter"))
    assert rke2_exporter["securityContext"]["seLinuxOptions"] == {"type": "spc_t"}
    ksm = pod_spec(find(docs(render_for(homelab, "apps/kube-state-metrics.yaml.j2", "masternode")), "Deployment",
                        "kube-state-metrics"))["containers"][0]
    for probe, path, port in (("livenessProbe", "/livez", "http-metrics"), ("readinessProbe", "/readyz", "telemetry")):
        assert ksm[probe] == {"httpGet": {"path": path, "port": port}, "initialDelaySeconds": 5, "timeoutSeconds": 5}


def test_every_rke2_manifest_with_host_paths_runs_as_spc_t(homelab):
    from vmstation import rhel

    for template in rhel.RKE2_MONITORING_MANIFESTS:
        for document in docs(render_for(homelab, template, "homelab")):
            spec = pod_spec(document) if document["kind"] in ("DaemonSet", "Deployment", "StatefulSet") else None
            if spec and any("hostPath" in v for v in spec.get("volumes", [])):
                assert spec["securityContext"]["seLinuxOptions"] == {"type": "spc_t"}, template


def test_jellyfin_without_a_jellyfin_host_is_an_error(homelab):
    lab = with_host(homelab, "storagenodet3500", roles=("worker",))
    with pytest.raises(TemplateError, match="jellyfin_needs_a_host_with_role_jellyfin"):
        render_for(lab, "apps/jellyfin.yaml.j2", "masternode")


def test_jellyfin_host_without_media_path_is_an_error(homelab):
    lab = with_host(homelab, "storagenodet3500", media_path=None)
    with pytest.raises(TemplateError, match="jellyfin_host_needs_media_path"):
        render_for(lab, "apps/jellyfin.yaml.j2", "masternode")


def test_every_image_in_the_manifests_comes_from_versions(homelab):
    rendered = "".join(render_for(homelab, name, "masternode", **TEMPLATES[name][1]) for name in MANIFESTS)
    images = set(re.findall(r'image: "([^"]+)"', rendered))
    assert images == {versions.FLANNEL_IMAGE, versions.FLANNEL_CNI_PLUGIN_IMAGE, *versions.IMAGES.values()}
