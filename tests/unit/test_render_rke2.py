"""Every file deploy-rke2 writes, rendered for the homelab and checked; the RHEL command builders."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from vmstation import rhel, versions
from vmstation.errors import InputError
from vmstation.rke2_checks import DOCUMENTED_SERVER_KEYS, check_rke2_config
from vmstation.templates import render

DATA = Path(__file__).parent / "data"
NM_CANAL_CONF = (
    "[keyfile]\n"
    "unmanaged-devices=interface-name:flannel*;interface-name:cali*;interface-name:tunl*;"
    "interface-name:vxlan.calico;interface-name:vxlan-v6.calico;interface-name:wireguard.cali;"
    "interface-name:wg-v6.cali\n"
)
HOSTILE = "x'; touch {tmp}/pwned; echo \"$(touch {tmp}/pwned2)\" `touch {tmp}/pwned3` \\ *"


def rke2_values(inventory, **extra) -> dict:
    host = inventory.host("homelab")
    return dict(host=host, cluster=inventory.cluster(host.cluster), inventory=inventory,
                versions=versions.as_dict(), **extra)


def rendered_config(inventory, **extra) -> dict:
    return yaml.safe_load(render("rke2/config.yaml.j2", **rke2_values(inventory, **extra)))


def os_release(name: str) -> dict[str, str]:
    return rhel.parse_os_release((DATA / f"rke2_os_release_{name}").read_text())


# ---------------------------------------------------------------------------
# /etc/rancher/rke2/config.yaml
# ---------------------------------------------------------------------------


def test_config_yaml_for_the_homelab_holds_the_inventory_values(homelab):
    text = render("rke2/config.yaml.j2", **rke2_values(homelab))
    config = yaml.safe_load(text)
    assert check_rke2_config(text) == []
    assert config == {
        "cni": "canal",
        "write-kubeconfig-mode": "0600",
        "node-name": "homelab",
        "node-ip": "192.168.4.62",
        "tls-san": ["192.168.4.62", "homelab"],
        "cluster-cidr": "10.42.0.0/16",
        "service-cidr": "10.43.0.0/16",
        "cluster-domain": "cluster.local",
        "disable": ["rke2-ingress-nginx"],
        "selinux": True,
    }


def test_config_yaml_has_no_token_unless_it_joins(homelab):
    assert "token" not in rendered_config(homelab) and "server" not in rendered_config(homelab)
    joining = render("rke2/config.yaml.j2", **rke2_values(homelab, server_url="https://192.168.4.62:9345",
                                                          token="K10abc::server:def"))
    assert yaml.safe_load(joining)["token"] == "K10abc::server:def"
    assert yaml.safe_load(joining)["server"] == "https://192.168.4.62:9345"
    assert check_rke2_config(joining, joining=True) == []
    assert check_rke2_config(joining) == ["config.yaml: the first server must not name a 'server' to join"]


def test_an_agent_config_holds_agent_keys_only(homelab):
    text = render("rke2/config.yaml.j2", **rke2_values(homelab, role="agent", server_url="https://192.168.4.62:9345",
                                                       token="K10abc::server:def", selinux=True))
    assert yaml.safe_load(text) == {"server": "https://192.168.4.62:9345", "token": "K10abc::server:def",
                                    "node-name": "homelab", "node-ip": "192.168.4.62", "selinux": True}
    assert check_rke2_config(text, role="agent", joining=True) == []
    server_text = render("rke2/config.yaml.j2", **rke2_values(homelab))
    assert "config.yaml: key 'cni' is not an RKE2 agent flag (docs.rke2.io/reference/linux_agent_config)" in \
        check_rke2_config(server_text, role="agent")
    assert check_rke2_config(text.replace("token:", "# token:"), role="agent", joining=True) == [
        "config.yaml: a joining node needs both 'server' (https://FIRST:9345) and 'token'"]


def test_selinux_false_leaves_the_key_out(homelab):
    assert "selinux" not in rendered_config(homelab, selinux=False)


def test_config_yaml_is_written_0600_because_it_may_hold_the_token():
    # rke2 writes /etc/rancher/rke2/rke2.yaml itself, with write-kubeconfig-mode "0600" from config.yaml.
    files = {f.path: f for f in rhel.RKE2_HOST_FILES}
    assert files["/etc/rancher/rke2/config.yaml"].mode == "0600"
    assert files["/etc/rancher/rke2/config.yaml"].template == "rke2/config.yaml.j2"
    # The other files hold nothing secret.
    assert {f.mode for f in rhel.RKE2_HOST_FILES if f.template != "rke2/config.yaml.j2"} == {"0644"}


def test_selinux_only_on_the_rhel_family(homelab):
    debian_host = dataclasses.replace(homelab.host("homelab"), os_family=None)
    values = rke2_values(homelab) | {"host": debian_host}
    assert "selinux" not in yaml.safe_load(render("rke2/config.yaml.j2", **values, os_family="debian"))
    assert yaml.safe_load(render("rke2/config.yaml.j2", **values, os_family="rhel"))["selinux"] is True


def test_api_endpoint_host_joins_the_tls_sans_when_it_differs(homelab):
    cluster = dataclasses.replace(homelab.cluster("rke2"), api_endpoint="rke2.lan:6443")
    values = rke2_values(homelab) | {"cluster": cluster}
    sans = yaml.safe_load(render("rke2/config.yaml.j2", **values))["tls-san"]
    assert sans == ["192.168.4.62", "homelab", "rke2.lan"]


def test_a_hostile_value_cannot_break_out_of_its_yaml_string(homelab):
    evil = 'homelab"\nselinux: false\n# '
    host = dataclasses.replace(homelab.host("homelab"), name=evil)
    config = yaml.safe_load(render("rke2/config.yaml.j2", **(rke2_values(homelab) | {"host": host})))
    assert config["node-name"] == evil
    assert config["selinux"] is True


# ---------------------------------------------------------------------------
# check_rke2_config
# ---------------------------------------------------------------------------


def test_the_documented_key_list_covers_what_findings_names():
    assert {"cni", "write-kubeconfig-mode", "tls-san", "node-name", "token", "cluster-cidr",
            "service-cidr", "selinux", "disable", "kubelet-arg", "node-ip"} <= DOCUMENTED_SERVER_KEYS


@pytest.mark.parametrize("text, fragment", [
    ("cni: canal\nflannel-backend: vxlan\n", "'flannel-backend' is not an RKE2 server flag"),
    ("tls-san: 192.168.4.62\n", "'tls-san' must be a list of strings"),
    ("disable: rke2-ingress-nginx\n", "'disable' must be a list of strings"),
    ("cni: weave\n", "'cni' is 'weave'"),
    ("cni: canal,calico\n", "'cni' is 'canal,calico'"),
    ("write-kubeconfig-mode: 0600\n", "quoted octal string"),
    ("write-kubeconfig-mode: 644\n", "quoted octal string"),
    ("selinux: \"true\"\n", "'selinux' must be true or false"),
    ("cluster-cidr: 10.42.0.0/33\n", "'cluster-cidr': '10.42.0.0/33' is not a network CIDR"),
    ("node-ip: homelab\n", "'node-ip': 'homelab' is not an IP address"),
    ("cni: [canal\n", "not YAML"),
    ("- cni\n", "top level must be a mapping"),
])
def test_check_rke2_config_names_each_problem(text, fragment):
    problems = check_rke2_config(text)
    assert len(problems) == 1 and fragment in problems[0], problems


@pytest.mark.parametrize("cni", ["canal", "calico", "cilium", "flannel", "none", "multus,canal", "[multus, cilium]"])
def test_check_rke2_config_takes_every_cni_rke2_takes(cni):
    assert check_rke2_config(f"cni: {cni}\n") == []


def test_check_rke2_config_takes_append_keys_and_dual_stack_values():
    text = ('kube-apiserver-arg+:\n  - "audit-log-maxage=30"\n'
            'cluster-cidr: "10.42.0.0/16,2001:cafe:42::/56"\nnode-ip: "192.168.4.62,fd00::62"\n')
    assert check_rke2_config(text) == []


def test_check_rke2_config_never_repeats_the_token():
    problems = check_rke2_config("token: 12345678\nbogus: 1\n") + check_rke2_config('token: "s3cret"\nbogus: 1\n')
    assert problems and not any("12345678" in p or "s3cret" in p for p in problems)


# ---------------------------------------------------------------------------
# RHEL host files
# ---------------------------------------------------------------------------


def test_networkmanager_conf_is_byte_exact(homelab):
    assert render("rhel/rke2-canal.conf.j2", **rke2_values(homelab)) == NM_CANAL_CONF


def test_sysctl_file_sets_what_rke2_and_canal_need(homelab):
    text = render("rhel/90-rke2.conf.j2", **rke2_values(homelab))
    settings = dict(tuple(part.strip() for part in line.split("=", 1))
                    for line in text.splitlines() if line and not line.startswith("#"))
    assert settings["net.ipv4.ip_forward"] == "1"
    assert settings["net.bridge.bridge-nf-call-iptables"] == "1"
    assert settings["net.bridge.bridge-nf-call-ip6tables"] == "1"
    assert int(settings["fs.inotify.max_user_instances"]) >= 512


def test_br_netfilter_loads_at_boot_so_the_bridge_sysctls_exist(homelab):
    text = render("rhel/modules-load-rke2.conf.j2", **rke2_values(homelab))
    modules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert modules == ["overlay", "br_netfilter"]


def test_every_host_file_and_manifest_renders_from_the_documented_values(homelab):
    for managed in rhel.RKE2_HOST_FILES:
        assert managed.path.startswith("/etc/") and managed.mode in ("0600", "0644")
        assert render(managed.template, **rke2_values(homelab)).endswith("\n")
    for template in rhel.RKE2_MONITORING_MANIFESTS:
        assert render(template, **rke2_values(homelab)).strip()


# ---------------------------------------------------------------------------
# Monitoring manifests
# ---------------------------------------------------------------------------


def monitoring_objects(inventory, **extra) -> list[dict]:
    objects = []
    for template in rhel.RKE2_MONITORING_MANIFESTS:
        objects += [doc for doc in yaml.safe_load_all(render(template, **rke2_values(inventory, **extra))) if doc]
    return objects


def find(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def test_monitoring_manifests_pass_strict_kubernetes_1_29_validation(homelab):
    objects = monitoring_objects(homelab)
    assert len(objects) == 8
    for obj in objects:
        kubernetes_validate.validate(obj, "1.29.0", strict=True)


def test_node_exporter_runs_on_the_host_network_on_9100(homelab):
    daemonset = find(monitoring_objects(homelab), "DaemonSet", "node-exporter")
    pod = daemonset["spec"]["template"]["spec"]
    assert daemonset["metadata"]["namespace"] == "monitoring"
    assert pod["hostNetwork"] is True
    container = pod["containers"][0]
    assert container["image"] == versions.IMAGES["node_exporter"]
    assert container["ports"][0]["containerPort"] == 9100 and container["ports"][0]["hostPort"] == 9100


def test_prometheus_is_a_nodeport_30090_to_9090(homelab):
    objects = monitoring_objects(homelab)
    service = find(objects, "Service", "prometheus")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [{"name": "web", "port": 9090, "targetPort": 9090,
                                         "nodePort": 30090, "protocol": "TCP"}]
    deployment = find(objects, "Deployment", "prometheus")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == versions.IMAGES["prometheus"]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]


def test_prometheus_labels_its_series_for_federation_and_scrapes_both_jobs(homelab):
    config_map = find(monitoring_objects(homelab), "ConfigMap", "prometheus-config")
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    assert config["global"]["external_labels"] == {"cluster": "rke2-homelab"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["localhost:9090"]}]
    assert jobs["node-exporter"]["kubernetes_sd_configs"] == [{"role": "node"}]
    assert jobs["node-exporter"]["relabel_configs"][0]["replacement"] == "${1}:9100"


def test_prometheus_may_list_the_nodes_its_service_discovery_reads(homelab):
    objects = monitoring_objects(homelab)
    role = find(objects, "ClusterRole", "vmstation-prometheus")
    assert {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]} in role["rules"]
    binding = find(objects, "ClusterRoleBinding", "vmstation-prometheus")
    deployment = find(objects, "Deployment", "prometheus")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "prometheus"


def test_cluster_label_and_node_port_are_documented_extras(homelab):
    objects = monitoring_objects(homelab, rke2_cluster_label="lab-b", rke2_prometheus_node_port=30190)
    config = yaml.safe_load(find(objects, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    assert config["global"]["external_labels"]["cluster"] == "lab-b"
    assert find(objects, "Service", "prometheus")["spec"]["ports"][0]["nodePort"] == 30190


# ---------------------------------------------------------------------------
# os-release, families, preflight
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, family, major, pretty", [
    ("rhel10", "rhel", 10, "Red Hat Enterprise Linux 10.0 (Coughlan)"),
    ("almalinux10", "rhel", 10, "AlmaLinux 10.0 (Purple Lion)"),
    ("rocky10", "rhel", 10, "Rocky Linux 10.0 (Red Quartz)"),
    ("centos_stream10", "rhel", 10, "CentOS Stream 10 (Coughlan)"),
    ("debian12", "debian", 12, "Debian GNU/Linux 12 (bookworm)"),
])
def test_os_release_of_real_systems(name, family, major, pretty):
    fields = os_release(name)
    assert rhel.os_family(fields) == family
    assert rhel.major_version(fields) == major
    assert fields["PRETTY_NAME"] == pretty


def test_os_release_parsing_follows_shell_quoting():
    fields = rhel.parse_os_release("# comment\nID=ubuntu\nID_LIKE=debian\nNAME='Single Quoted'\n"
                                   'VARIANT="with \\"escaped\\" quotes"\nBROKEN="unterminated\nnot a line\n')
    assert fields == {"ID": "ubuntu", "ID_LIKE": "debian", "NAME": "Single Quoted",
                      "VARIANT": 'with "escaped" quotes', "BROKEN": "unterminated"}
    assert rhel.os_family(fields) == "debian"
    assert rhel.os_family({"ID": "fedora", "VERSION_ID": "42"}) == "other"
    assert rhel.os_family({}) == "other"


def test_rke2_1_29_on_every_el10_installs_from_the_tarball_and_has_no_selinux_policy():
    for name in ("rhel10", "almalinux10", "rocky10", "centos_stream10"):
        warnings = rhel.preflight_warnings(os_release(name), "v1.29.15+rke2r1", selinux=False)
        assert len(warnings) == 1
        assert "publishes no RPMs for RHEL 10" in warnings[0] and "INSTALL_RKE2_METHOD=tar" in warnings[0]
    problem = rhel.selinux_policy_problem("v1.29.15+rke2r1", "rhel", 10, selinux=True)
    assert "no SELinux policy (rke2-selinux) for RHEL 10" in problem
    assert "v1.32.11+rke2r1, v1.33.7+rke2r1, v1.34.3+rke2r1, v1.35.0+rke2r1 or later" in problem
    assert "selinux = false" in problem
    assert rhel.selinux_policy_problem("v1.29.15+rke2r1", "rhel", 10, selinux=False) is None
    assert rhel.selinux_policy_problem("v1.29.15+rke2r1", "debian", 0, selinux=True) is None


@pytest.mark.parametrize("version, major, published", [
    ("v1.29.15+rke2r1", 10, False), ("v1.30.14+rke2r2", 10, False), ("v1.31.14+rke2r1", 10, False),
    ("v1.32.10+rke2r1", 10, False), ("v1.32.11+rke2r1", 10, True), ("v1.33.6+rke2r1", 10, False),
    ("v1.33.7+rke2r1", 10, True), ("v1.34.3+rke2r1", 10, True), ("v1.35.0+rke2r1", 10, True),
    ("v1.36.0+rke2r1", 10, True), ("v1.29.15+rke2r1", 9, True), ("v1.29.15+rke2r1", 8, True)])
def test_which_releases_publish_rpms_for_a_rhel_major(version, major, published):
    # rancher/rke2-packaging: rpm/centos10 first in tags v1.32.11, v1.33.7, v1.34.3, v1.35.0 (versions.py)
    assert rhel.rpms_published(version, major) is published
    assert rhel.install_method(version, "rhel", major) == ("rpm" if published else "tar")
    assert rhel.install_method(version, "rhel", major, airgapped=True) == "tar"


def test_preflight_is_quiet_where_the_version_has_rpms():
    assert rhel.preflight_warnings(os_release("rhel10"), "v1.35.7+rke2r1") == []
    assert rhel.preflight_warnings(os_release("debian12"), "v1.29.15+rke2r1") == []
    rhel9 = rhel.parse_os_release('ID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.6"\n')
    assert rhel.preflight_warnings(rhel9, "v1.29.15+rke2r1") == []


def test_preflight_refuses_what_is_not_an_rke2_version():
    with pytest.raises(InputError, match="not of the form"):
        rhel.preflight_warnings(os_release("rhel10"), "latest; reboot")


def test_packages_for_rhel10_pin_modules_extra_to_the_running_kernel():
    assert rhel.rhel_packages(os_release("rhel10")) == ("container-selinux", "kernel-modules-extra")
    assert rhel.rhel_packages(os_release("rocky10"), "6.12.0-55.el10.x86_64") == (
        "container-selinux", "kernel-modules-extra-6.12.0-55.el10.x86_64")
    rhel9 = rhel.parse_os_release('ID="rhel"\nVERSION_ID="9.6"\n')
    assert rhel.rhel_packages(rhel9) == ("container-selinux",)


# ---------------------------------------------------------------------------
# Command builders, run by a real shell against recording stand-ins for the tools
# ---------------------------------------------------------------------------


@pytest.fixture
def shell(tmp_path):
    """Run a command line with sh; nmcli, ethtool, firewall-cmd, dnf, systemctl only record their argv."""
    bin_dir, log = tmp_path / "bin", tmp_path / "argv.log"
    bin_dir.mkdir()
    for tool in ("nmcli", "ethtool", "firewall-cmd", "dnf", "systemctl"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@" "--" >> {shlex.quote(str(log))}\n'
                          'case "$1" in cat) exit 1;; esac\n')
        script.chmod(0o755)

    def run(command: str) -> list[list[str]]:
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
        subprocess.run(["sh", "-c", command], env=env, cwd=tmp_path, check=True, timeout=10)
        calls = log.read_text().split("\n--\n")[:-1] if log.exists() else []
        log.unlink(missing_ok=True)
        return [call.split("\n") for call in calls]

    run.tmp = tmp_path
    return run


def assert_untouched(tmp: Path):
    assert not any(tmp.glob("pwned*")), "a hostile value was executed by the shell"


def test_nmcli_and_ethtool_commands_pass_hostile_names_as_one_argument(shell):
    evil = HOSTILE.format(tmp=shell.tmp)
    assert shell(rhel.nm_connection_query(evil)) == [["nmcli", "-g", "GENERAL.CONNECTION", "device", "show", evil]]
    assert shell(rhel.wol_query(evil)) == [["nmcli", "-g", "802-3-ethernet.wake-on-lan", "connection", "show", evil]]
    assert shell(rhel.wol_persist_command(evil)) == [
        ["nmcli", "connection", "modify", evil, "802-3-ethernet.wake-on-lan", "magic"]]
    assert shell(rhel.wol_arm_now_command(evil)) == [["ethtool", "-s", evil, "wol", "g"]]
    assert_untouched(shell.tmp)


def test_firewall_commands_open_every_port_and_trust_the_cluster_networks(shell, homelab):
    cluster = homelab.cluster("rke2")
    evil = HOSTILE.format(tmp=shell.tmp)
    commands = rhel.firewall_commands("open-ports", cluster.pod_cidr, cluster.service_cidr, zone=evil)
    calls = shell(" && ".join(commands))
    assert calls[0] == ["firewall-cmd", "--permanent", f"--zone={evil}",
                        *(f"--add-port={port}" for port in rhel.FIREWALLD_PORTS)]
    assert calls[1] == ["firewall-cmd", "--permanent", "--zone=trusted",
                        "--add-source=10.42.0.0/16", "--add-source=10.43.0.0/16"]
    assert calls[2] == ["firewall-cmd", "--reload"]
    assert {"6443/tcp", "9345/tcp", "10250/tcp", "2379-2380/tcp", "8472/udp", "9099/tcp",
            "30000-32767/tcp", "9100/tcp"} == set(rhel.FIREWALLD_PORTS)
    assert_untouched(shell.tmp)


def test_firewall_facts_say_what_is_missing():
    assert rhel.missing_firewall_ports(" ".join(rhel.FIREWALLD_PORTS)) == ()
    assert rhel.missing_firewall_ports("6443/tcp 9345/tcp\n") == rhel.FIREWALLD_PORTS[2:]
    assert rhel.firewall_ports_query() == "firewall-cmd --permanent --list-ports"


def test_disabled_firewall_and_nm_cloud_setup_skip_units_that_are_not_installed(shell):
    # The stand-in systemctl answers `cat UNIT` with "no such unit": nothing else may run.
    commands = [rhel.firewall_commands("disabled", "10.42.0.0/16", "10.43.0.0/16")[0],
                *rhel.nm_cloud_setup_disable_commands(), rhel.networkmanager_reload_command()]
    calls = shell(" && ".join(commands))
    assert [call[1] for call in calls] == ["cat"] * 4
    assert [call[2] for call in calls] == ["firewalld.service", "nm-cloud-setup.service",
                                           "nm-cloud-setup.timer", "NetworkManager.service"]
    with pytest.raises(InputError, match="'open-ports', 'disabled'"):
        rhel.firewall_commands("iptables", "10.42.0.0/16", "10.43.0.0/16")


def test_dnf_commands_quote_package_names_and_paths(shell):
    evil = HOSTILE.format(tmp=shell.tmp)
    assert shell(rhel.dnf_install_command(["container-selinux", evil])) == [
        ["dnf", "install", "-y", "container-selinux", evil]]
    assert shell(rhel.local_rpm_install_command(evil)) == [["dnf", "install", "-y", evil]]
    assert_untouched(shell.tmp)


def test_airgapped_install_runs_the_script_from_a_hostile_directory_with_the_right_environment(shell):
    artifacts = shell.tmp / "art $(touch pwned) ; `touch pwned2` 'q"
    artifacts.mkdir()
    (artifacts / "install.sh").write_text(
        'printf "%s|%s|%s|%s\\n" "$INSTALL_RKE2_VERSION" "$INSTALL_RKE2_METHOD" "$INSTALL_RKE2_TYPE" '
        '"$INSTALL_RKE2_ARTIFACT_PATH" > "$HOME/installed"\n')
    shell(rhel.install_command("v1.29.15+rke2r1", "rhel", artifact_path=str(artifacts)))
    assert (shell.tmp / "installed").read_text() == f"v1.29.15+rke2r1|tar|server|{artifacts}\n"
    assert_untouched(shell.tmp)


def fake_curl(tmp: Path, script_body: str | None) -> dict:
    """An environment whose curl writes ``script_body`` to its -o file (None: fails like a 404 with -f)."""
    bin_dir = tmp / "curl-bin"
    bin_dir.mkdir(exist_ok=True)
    curl = bin_dir / "curl"
    action = f"printf '%s' {shlex.quote(script_body)} > \"$out\"" if script_body is not None else "exit 22"
    curl.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done\n'
                    f'printf "%s\\n" "$out" > "$HOME/script-path"\n{action}\n')
    curl.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp), "TMPDIR": str(tmp)}


def test_online_install_downloads_the_script_then_runs_it_as_rpm_on_rhel(tmp_path):
    report = 'printf "%s|%s|%s\\n" "$INSTALL_RKE2_VERSION" "$INSTALL_RKE2_METHOD" "$INSTALL_RKE2_TYPE"'
    body = report + ' > "$HOME/installed"\n'
    env = fake_curl(tmp_path, body)
    digest = hashlib.sha256(body.encode()).hexdigest()      # this test's script is the pinned one
    for version, family, method, kind in (("v1.35.7+rke2r1", "rhel", "rpm", "server"),
                                          ("v1.29.15+rke2r1", "rhel", "tar", "agent"),
                                          ("v1.29.15+rke2r1", "debian", "", "server")):
        command = rhel.install_command(version, family, rhel_major=10, node_type=kind, script_sha256=digest)
        subprocess.run(["sh", "-c", command], env=env, check=True, timeout=10)
        assert (tmp_path / "installed").read_text() == f"{version}|{method}|{kind}\n"
        script = Path((tmp_path / "script-path").read_text().strip())
        assert script.parent == tmp_path and not script.exists()     # a fresh mktemp file, removed after
    with pytest.raises(InputError):
        rhel.install_command("v1.29.15+rke2r1; reboot", "rhel")


def test_online_install_never_runs_a_script_whose_sha256_is_not_the_pinned_one(tmp_path):
    env = fake_curl(tmp_path, 'touch "$HOME/ran"\n')
    result = subprocess.run(["sh", "-c", rhel.install_command("v1.29.15+rke2r1", "rhel")], env=env,
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 1 and "sha256 differs from the pinned one" in result.stderr
    assert not (tmp_path / "ran").exists()
    assert not Path((tmp_path / "script-path").read_text().strip()).exists()
    assert versions.RKE2_INSTALL_SCRIPT_COMMIT in rhel.INSTALL_SCRIPT_URL


def test_online_install_fails_when_the_download_fails(tmp_path):
    result = subprocess.run(["sh", "-c", rhel.install_command("v1.29.15+rke2r1", "rhel")],
                            env=fake_curl(tmp_path, None), timeout=10)
    assert result.returncode == 22
    assert not Path((tmp_path / "script-path").read_text().strip()).exists()


def test_installed_paths_follow_the_install_method():
    assert rhel.rke2_installed_paths("rhel")[0] == "/usr/bin/rke2"
    assert "/usr/local/bin/rke2" in rhel.rke2_installed_paths("rhel")
    assert rhel.rke2_installed_paths("debian")[0] == "/usr/local/bin/rke2"
    assert "/usr/bin/rke2" not in rhel.rke2_installed_paths("debian")
    assert rhel.uninstall_script_paths() == (
        "/usr/bin/rke2-uninstall.sh", "/usr/local/bin/rke2-uninstall.sh", "/opt/rke2/bin/rke2-uninstall.sh")


def test_installed_version_fact_on_a_machine_without_rke2():
    if any(os.path.exists(p) for p in rhel.rke2_installed_paths("rhel")):
        pytest.skip("rke2 is installed on this machine")
    result = subprocess.run(["sh", "-c", rhel.installed_version_query("rhel")], capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (1, "")
    assert subprocess.run(["sh", "-c", rhel.uninstall_command()]).returncode == 0
    assert rhel.parse_installed_version(result.stdout) is None
    version_output = "rke2 version v1.29.15+rke2r1 (5ab1a3c)\ngo version go1.22\n"
    assert rhel.parse_installed_version(version_output) == "v1.29.15+rke2r1"


def test_default_interface_from_the_routing_table():
    routes = "default via 192.0.2.1 dev enp3s0 proto dhcp src 192.0.2.62 metric 100 \n"
    assert rhel.default_interface_query() == "ip -o -4 route show default"
    assert rhel.parse_default_interface(routes) == "enp3s0"
    assert rhel.parse_default_interface("") is None


# ---------------------------------------------------------------------------
# The kubeconfig fetched from the server
# ---------------------------------------------------------------------------


def test_rewrite_kubeconfig_points_at_the_host_and_keeps_the_rest():
    original = (DATA / "rke2_kubeconfig.yaml").read_text()
    rewritten = rhel.rewrite_kubeconfig(original, "192.168.4.62")
    before, after = yaml.safe_load(original), yaml.safe_load(rewritten)
    assert after["clusters"][0]["cluster"]["server"] == "https://192.168.4.62:6443"
    after["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:6443"
    assert after == before
    assert list(yaml.safe_load(rewritten)) == list(before)   # key order kept
    assert rhel.rewrite_kubeconfig(rewritten, "192.168.4.62") == rewritten


def test_rewrite_kubeconfig_brackets_ipv6_and_refuses_bad_input():
    original = (DATA / "rke2_kubeconfig.yaml").read_text()
    server = yaml.safe_load(rhel.rewrite_kubeconfig(original, "fd00::62"))["clusters"][0]["cluster"]["server"]
    assert server == "https://[fd00::62]:6443"
    with pytest.raises(InputError, match="neither an IP address nor a host name"):
        rhel.rewrite_kubeconfig(original, "evil/host:1@x")
    with pytest.raises(InputError, match="not a kubeconfig"):
        rhel.rewrite_kubeconfig("- just\n- a list\n", "192.168.4.62")
    with pytest.raises(InputError, match="not YAML") as caught:
        rhel.rewrite_kubeconfig("client-key-data: [SECRETKEY\n", "192.168.4.62")
    assert "SECRETKEY" not in str(caught.value)
