"""status: the parsers and the judgement, from outputs in the documented formats (no host)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from vmstation import certs
from vmstation import homelab_status as status
from vmstation.inventory import load
from vmstation.testing.inventory_file import InventoryHost, write_inventory

NOW = datetime(2026, 11, 28, 11, 0, tzinfo=timezone.utc)

# kubernetes.io "Certificate Management with kubeadm", "Check certificate expiration" (dates changed).
CHECK_EXPIRATION = """\
[check-expiration] Reading configuration from the cluster...

CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED
admin.conf                 Dec 20, 2026 23:36 UTC   22d             ca                      no
apiserver                  Nov 27, 2027 23:36 UTC   364d            ca                      no
etcd-server                Nov 27, 2027 23:36 UTC   364d            etcd-ca                 no

CERTIFICATE AUTHORITY   EXPIRES                  RESIDUAL TIME   EXTERNALLY MANAGED
ca                      Dec 28, 2035 23:36 UTC   9y              no
"""


def node(name: str, ready: str = "True", unschedulable: bool = False) -> dict:
    return {"kind": "Node", "metadata": {"name": name}, "spec": {"unschedulable": unschedulable},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": ready}],
                       "nodeInfo": {"kubeletVersion": "v1.29.15", "containerRuntimeVersion": "containerd://1.7.22",
                                    "kernelVersion": "6.1.0-27-amd64", "osImage": "Debian GNU/Linux 12 (bookworm)"}}}


def nodes_json(*items) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})


def inventory(tmp_path: Path):
    hosts = [InventoryHost("masternode", "10.77.99.2", 22, ("control-plane",), "debian", mac="02:00:00:00:00:02",
                           extra=(("always_on", True),)),
             InventoryHost("storagenodet3500", "10.77.99.3", 22, ("worker", "jellyfin"), "debian",
                           mac="02:00:00:00:00:03", extra=(("media_path", "/srv/media"),)),
             InventoryHost("homelab", "10.77.99.4", 22, ("server",), "rke2", mac="02:00:00:00:00:04")]
    return load(str(write_inventory(tmp_path / "hosts.toml", hosts, client_key=tmp_path / "key",
                                    known_hosts=tmp_path / "known_hosts")))


def answered(inv, name: str, **sections) -> status.Look:
    base = {"os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n', "kernel": "6.1.0-27-amd64\n",
            "kubelet": "Kubernetes v1.29.15\n", "containerd": "containerd containerd.io 1.7.22 7f7fdf5\n",
            "reboot": "no\n", "services": "kubelet active\ncontainerd active\nrke2-server inactive\n"}
    return status.Look(inv.host(name), True, {**base, **sections}, seconds=0.05)


def silent(inv, name: str) -> status.Look:
    return status.Look(inv.host(name), False, error="no SSH banner", seconds=0.8)


def test_kubeadm_check_expiration_rows_and_the_soonest_verdict():
    found = certs.parse_check_expiration(CHECK_EXPIRATION)
    assert [c.name for c in found] == ["admin.conf", "apiserver", "etcd-server", "ca"]
    assert certs.verdict(found, NOW, kind="kubeadm") == (
        "warn", "admin.conf expires on 2026-12-20 (23 days): run `vmstation certs renew debian`")
    assert certs.verdict(found, datetime(2026, 12, 21, tzinfo=timezone.utc), kind="kubeadm")[0] == "expired"
    assert certs.verdict(found[1:], NOW, kind="kubeadm")[0] == "ok"
    assert certs.verdict([], NOW, kind="kubeadm")[0] == "unknown"
    assert certs.verdict(found, NOW, kind="rke2")[1].endswith("run `vmstation certs renew rke2`")


def test_rke2_enddates_as_openssl_prints_them():
    text = ("/var/lib/rancher/rke2/server/tls/serving-kube-apiserver.crt notAfter=Nov 28 10:00:00 2027 GMT\n"
            "/var/lib/rancher/rke2/server/tls/client-admin.crt notAfter=Jan  3 09:05:01 2027 GMT\n")
    found = certs.parse_enddates(text)
    assert [(c.name, c.expires.date().isoformat()) for c in found] == [
        ("serving-kube-apiserver.crt", "2027-11-28"), ("client-admin.crt", "2027-01-03")]


def test_nodes_as_the_api_lists_them():
    parsed = status.parse_nodes(nodes_json(node("a"), node("b", "Unknown", True)))
    assert parsed["a"].ready == "True" and parsed["a"].containerd == "1.7.22" and parsed["a"].kubelet == "v1.29.15"
    assert parsed["b"].ready == "Unknown" and parsed["b"].unschedulable
    assert status.parse_nodes("error: the server doesn't have a resource type") == {}


def test_a_silent_worker_in_the_sleep_record_is_asleep_and_the_homelab_healthy(tmp_path):
    inv = inventory(tmp_path)
    record = json.dumps({"slept_at": "2026-11-28T01:00:00Z", "cordoned": ["storagenodet3500"], "workloads": []})
    looks = {"masternode": answered(inv, "masternode", nodes=nodes_json(node("masternode"),
                                                                         node("storagenodet3500", "Unknown", True)),
                                    **{"sleep-record": record, "certs": CHECK_EXPIRATION.replace("Dec 20, 2026",
                                                                                                "Nov 27, 2027")}),
             "storagenodet3500": silent(inv, "storagenodet3500"),
             "homelab": answered(inv, "homelab", nodes=nodes_json(node("homelab")), certs="")}
    result = status.judge(inv, looks, NOW)
    debian = result.clusters[0]
    assert [(h.name, h.state) for h in debian.hosts] == [("masternode", "Ready"), ("storagenodet3500", "asleep")]
    assert debian.hosts[1].reason == "the sleep record lists it" and debian.hosts[1].kubelet == "v1.29.15"
    assert debian.certificates == "ok"
    assert result.healthy, result.problems
    assert any("1.29 line left upstream support" in w for w in result.warnings)


def test_a_silent_worker_without_a_record_is_down_and_the_homelab_not_healthy(tmp_path):
    inv = inventory(tmp_path)
    looks = {"masternode": answered(inv, "masternode", nodes=nodes_json(node("masternode"),
                                                                         node("storagenodet3500", "Unknown")),
                                    certs=CHECK_EXPIRATION),
             "storagenodet3500": silent(inv, "storagenodet3500"),
             "homelab": answered(inv, "homelab", nodes=nodes_json(node("homelab", "False")))}
    result = status.judge(inv, looks, NOW)
    states = {h.name: h.state for c in result.clusters for h in c.hosts}
    assert states == {"masternode": "Ready", "storagenodet3500": "down", "homelab": "NotReady"}
    assert not result.healthy
    assert any(p.startswith("storagenodet3500: down: no SSH banner within 0.8 s") for p in result.problems)
    assert any(w.startswith("debian: certificates: admin.conf expires on 2026-12-20") for w in result.warnings)
    assert result.clusters[1].certificates == "unknown"


def test_a_cordoned_not_ready_worker_is_asleep_even_without_the_record(tmp_path):
    inv = inventory(tmp_path)
    looks = {"masternode": answered(inv, "masternode", nodes=nodes_json(node("masternode"),
                                                                         node("storagenodet3500", "Unknown", True))),
             "storagenodet3500": silent(inv, "storagenodet3500"),
             "homelab": answered(inv, "homelab")}
    host = status.judge(inv, looks, NOW).clusters[0].hosts[1]
    assert (host.state, host.reason) == ("asleep", "cordoned and not Ready, as sleep leaves it")


def test_pending_reboot_and_old_containerd_are_warnings(tmp_path):
    inv = inventory(tmp_path)
    looks = {"masternode": answered(inv, "masternode", reboot="yes\n", containerd="containerd 1.6.20~ds1\n",
                                    nodes=nodes_json(node("masternode"), node("storagenodet3500"))),
             "storagenodet3500": answered(inv, "storagenodet3500"), "homelab": answered(inv, "homelab")}
    result = status.judge(inv, looks, NOW)
    assert "masternode: a reboot is pending" in result.warnings
    assert any(w.startswith("masternode: containerd 1.6.20 is older than 1.6.27") for w in result.warnings)
    assert result.clusters[0].hosts[0].containerd == "1.6.20"


def test_idle_check_line():
    timer = "ActiveState=active\nNextElapseUSecRealtime=Sat 2026-11-28 12:00:00 UTC\nLastTriggerUSec=n/a\n"
    assert status.idle_check(timer, '{"idle_since": "2026-11-28T09:00:00Z"}\n') == \
        "timer active, next run Sat 2026-11-28 12:00:00 UTC, idle since 2026-11-28T09:00:00Z"
    assert status.idle_check("", "") == "timer not installed, not idle"


def test_the_last_run_of_each_target_from_the_journals(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "20261127-090000.000001-11-deploy-debian.jsonl").write_text(
        '{"run": "start"}\n{"run": "end", "status": "failed", "exit_code": 1}\n')
    (runs / "20261128-100000.000001-12-deploy-debian.jsonl").write_text(
        '{"run": "start"}\n{"run": "end", "status": "done", "exit_code": 0}\n')
    (runs / "20261128-100500.000001-13-deploy-debian.plan.jsonl").write_text('{"run": "start"}\n')
    (runs / "20261128-101000.000001-14-upgrade-debian.jsonl").write_text('{"run": "start"}\n')
    got = [(r.target, r.started, r.status, r.exit_code) for r in status.last_runs(runs)]
    assert got == [("deploy-debian", "2026-11-28 10:00:00", "done", 0),
                   ("upgrade-debian", "2026-11-28 10:10:00", "running or died", None)]


def test_the_screen_shows_host_text_inert(tmp_path):
    inv = inventory(tmp_path)
    looks = {"masternode": answered(inv, "masternode", kernel="6.1\x1b[2J\n",
                                    nodes=nodes_json(node("masternode"), node("storagenodet3500"))),
             "storagenodet3500": answered(inv, "storagenodet3500"), "homelab": answered(inv, "homelab")}
    screen = status.format_status(status.judge(inv, looks, NOW))
    assert "\x1b" not in screen and "6.1\\x1b[2J" in screen
    assert json.loads(status.judge(inv, looks, NOW).as_json())["healthy"] is True


def test_kubelets_at_another_version_than_the_inventory_says_are_a_warning(tmp_path):
    inv = inventory(tmp_path)
    looks = {"masternode": answered(inv, "masternode", kubelet="Kubernetes v1.30.14\n",
                                    nodes=nodes_json(node("masternode"), node("storagenodet3500"))),
             "storagenodet3500": answered(inv, "storagenodet3500"), "homelab": answered(inv, "homelab")}
    result = status.judge(inv, looks, NOW)
    assert 'debian: kubelets run 1.29.15, 1.30.14 but hosts.toml says version = "1.29.15" (after an upgrade, set it ' \
        'to what runs: a deploy installs that version)' in result.warnings
    assert result.healthy


def with_kubelet(item: dict, version: str) -> dict:
    item["status"]["nodeInfo"]["kubeletVersion"] = version
    return item


def test_a_kubelet_outside_the_version_skew_policy_is_a_problem(tmp_path):
    inv = inventory(tmp_path)
    api_server = json.dumps({"major": "1", "minor": "33", "gitVersion": "v1.33.13", "platform": "linux/amd64"})
    looks = {"masternode": answered(inv, "masternode", **{"api-version": api_server}, nodes=nodes_json(
                 with_kubelet(node("masternode"), "v1.33.13"), with_kubelet(node("storagenodet3500"), "v1.29.15"))),
             "storagenodet3500": answered(inv, "storagenodet3500"), "homelab": answered(inv, "homelab")}
    result = status.judge(inv, looks, NOW)
    assert "debian: node storagenodet3500: kubelet v1.29.15 is 4 minors behind the API server (v1.33.13); the " \
        "Version Skew Policy allows 3" in result.problems
    assert not result.healthy


def test_a_kubelet_newer_than_the_api_server_is_a_problem_and_three_minors_behind_is_not(tmp_path):
    inv = inventory(tmp_path)
    api_server = json.dumps({"gitVersion": "v1.32.13"})
    looks = {"masternode": answered(inv, "masternode", **{"api-version": api_server}, nodes=nodes_json(
                 with_kubelet(node("masternode"), "v1.33.1"), with_kubelet(node("storagenodet3500"), "v1.29.15"))),
             "storagenodet3500": answered(inv, "storagenodet3500"), "homelab": answered(inv, "homelab")}
    problems = status.judge(inv, looks, NOW).problems
    assert "debian: node masternode: kubelet v1.33.1 is newer than the API server (v1.32.13), which the Version " \
        "Skew Policy forbids" in problems
    assert not any("storagenodet3500" in p for p in problems)


def test_an_api_server_version_that_cannot_be_read_judges_no_skew(tmp_path):
    assert status.api_server_version("error: You must be logged in to the server (Unauthorized)") == ""
    assert status.api_server_version('{"gitVersion": 7}') == ""
    assert status.api_server_version('{"gitVersion": "v1.30.14"}') == "v1.30.14"
