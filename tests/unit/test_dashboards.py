"""The Grafana dashboards, checked without Grafana (it cannot be installed here: not in Debian 12).

What Grafana's file provisioning reads, from its source (grafana/grafana, pkg/services/provisioning/dashboards):
- the provider file (types.go, ``configs``): apiVersion 1, ``providers`` with a unique ``name``, ``type: file``,
  ``orgId``, ``folder``/``folderUid``, ``disableDeletion``, ``updateIntervalSeconds``, ``allowUiUpdates`` and
  ``options.path`` (file_reader.go refuses a provider whose path is not a string, and ``folder`` together with
  ``foldersFromFilesStructure``);
- the dashboards (file_reader.go): files ending in ``.json`` under ``path`` (hidden directories skipped, as the
  ``..data`` links of a ConfigMap volume are); ``createDashboardJSON`` refuses an empty ``title``; a uid is
  at most 40 characters of ``[A-Za-z0-9_-]`` (dashboards.ErrDashboardUidTooLong, util.IsValidShortUID).
The panels' datasource uids must be those grafana-datasources provisions. PromQL parses with promtool
(Debian's prometheus package); LogQL with the small grammar of tests/unit/logql_grammar.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.unit.conftest import homelab_inventory
from tests.unit.logql_grammar import LogQLError, parse
from vmstation import dashboards, versions
from vmstation.templates import render

UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# What a check fills the dashboards' own variables with (Grafana's come from dashboards.BUILTINS).
VARIABLES = {"cluster": "rke2-homelab", "namespace": "jellyfin", "pod": ".+", "search": "error"}


def rendered(name: str) -> list[dict]:
    inventory = homelab_inventory()
    cluster = inventory.cluster("debian")
    text = render(name, host=inventory.host("masternode"), cluster=cluster, inventory=inventory,
                  versions=versions.as_dict(), dashboards=dashboards.provisioned(inventory, cluster))
    return [d for d in yaml.safe_load_all(text) if d]


def boards() -> list[dict]:
    inventory = homelab_inventory()
    return dashboards.build(inventory, inventory.cluster("debian"))


def all_queries() -> list[tuple[str, str, str, str]]:
    """(dashboard uid, where, datasource uid, expression with variables filled in) of every query."""
    return [(board["uid"], where, source["uid"], dashboards.expand(expr, VARIABLES))
            for board in boards() for where, source, expr in dashboards.queries(board)]


def by_name(documents: list[dict], kind: str, name: str) -> dict:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


# ---------------------------------------------------------------------------------------------
# Provisioning: the provider, the ConfigMaps, the mounts
# ---------------------------------------------------------------------------------------------


def test_the_provider_loads_json_files_from_where_grafana_mounts_them_into_the_folder_homelab():
    documents = rendered("apps/grafana-dashboards.yaml.j2")
    providers = by_name(documents, "ConfigMap", "grafana-dashboard-providers")
    provider_file = yaml.safe_load(providers["data"]["homelab.yaml"])
    assert provider_file["apiVersion"] == 1
    (provider,) = provider_file["providers"]
    assert provider["type"] == "file" and provider["folder"] == "Homelab" and provider["orgId"] == 1
    assert isinstance(provider["options"]["path"], str) and provider["options"]["foldersFromFilesStructure"] is False
    grafana = by_name(rendered("apps/grafana.yaml.j2"), "Deployment", "grafana")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in grafana["containers"][0]["volumeMounts"]}
    assert mounts["dashboards"] == provider["options"]["path"]
    assert mounts["dashboard-providers"] == "/etc/grafana/provisioning/dashboards"
    volumes = {v["name"]: v for v in grafana["volumes"]}
    projected = [s["configMap"]["name"] for s in volumes["dashboards"]["projected"]["sources"]]
    maps = [d for d in documents if d["metadata"]["name"].startswith("grafana-dashboard-") and "providers" not in
            d["metadata"]["name"]]
    assert projected == [d["metadata"]["name"] for d in maps] and len(maps) == len(boards())
    files = [key for d in maps for key in d["data"]]
    assert all(key.endswith(".json") for key in files) and len(set(files)) == len(files)
    env = {e["name"]: e.get("value") for e in grafana["containers"][0]["env"]}
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/homelab-overview.json" and "homelab-overview.json" in files


def test_each_configmap_holds_the_dashboard_json_grafana_will_read():
    documents = rendered("apps/grafana-dashboards.yaml.j2")
    for board in boards():
        (text,) = by_name(documents, "ConfigMap", f"grafana-dashboard-{board['uid']}")["data"].values()
        assert json.loads(text) == board


# ---------------------------------------------------------------------------------------------
# The dashboards' JSON model
# ---------------------------------------------------------------------------------------------


def test_uids_and_titles_are_what_grafana_accepts_and_unique():
    uids = [b["uid"] for b in boards()]
    assert all(UID.match(uid) for uid in uids) and len(set(uids)) == len(uids)
    titles = [b["title"] for b in boards()]
    assert all(titles) and len(set(titles)) == len(titles)
    assert {b["schemaVersion"] for b in boards()} == {dashboards.SCHEMA_VERSION}


def test_every_panel_and_query_names_a_datasource_grafana_provisions():
    documents = rendered("apps/grafana.yaml.j2")
    provisioned = yaml.safe_load(by_name(documents, "ConfigMap", "grafana-datasources")["data"]["datasources.yaml"])
    known = {(d["type"], d["uid"]) for d in provisioned["datasources"]}
    for board in boards():
        for panel in board["panels"]:
            sources = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
            assert all((s["type"], s["uid"]) in known for s in sources), (board["uid"], panel["title"])
        for item in board["annotations"]["list"] + board["templating"]["list"]:
            if "datasource" in item:
                assert (item["datasource"]["type"], item["datasource"]["uid"]) in known


def test_panels_have_unique_ids_refids_and_do_not_overlap_on_the_grid():
    for board in boards():
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids)
        cells = set()
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and panel["targets"], (board["uid"], panel["title"])
            refs = [t["refId"] for t in panel["targets"]]
            assert len(set(refs)) == len(refs)
            mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                    for y in range(grid["y"], grid["y"] + grid["h"])}
            assert not mine & cells, f"{board['uid']}: {panel['title']} overlaps"
            cells |= mine


def test_every_variable_a_query_uses_is_defined_by_its_dashboard_or_grafana():
    for board in boards():
        defined = {v["name"] for v in board["templating"]["list"]} | set(dashboards.BUILTINS)
        for where, _, expr in dashboards.queries(board):
            assert dashboards.variables_in(expr) <= defined, (board["uid"], where)
        for panel in board["panels"]:
            assert panel.get("repeat") in defined | {None}


def test_the_overview_draws_every_node_the_sleep_timeline_and_the_decisions():
    overview = boards()[0]
    titles = [p["title"] for p in overview["panels"]]
    for wanted in ("Nodes: up, asleep or down", "CPU busy", "Memory used", "Root disk used", "Network",
                   "Temperature", "Workers: awake or asleep", "Why", "Time to wake"):
        assert wanted in titles
    annotations = {a["name"]: a for a in overview["annotations"]["list"]}
    assert "vmstation_idle_check_info" in annotations["Idle check"]["expr"]
    assert annotations["Idle check"]["textFormat"] == "{{reason}}"


# ---------------------------------------------------------------------------------------------
# Every query parses: PromQL with promtool, LogQL with the grammar
# ---------------------------------------------------------------------------------------------


def test_every_promql_expression_parses_with_promtool(tmp_path):
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian package prometheus; make deps)")
    promql = [(uid, where, expr) for uid, where, source, expr in all_queries() if source == "prometheus"]
    # Each expression as a recording rule: `promtool check rules` parses every expr with Prometheus's parser.
    rules = {"groups": [{"name": f"{uid}-{index}", "rules": [{"record": f"dashboard:query_{index}", "expr": expr}]}
                        for index, (uid, _, expr) in enumerate(promql)]}
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(promql)} rules found" in done.stdout
    assert len(promql) > 40


def test_promtool_would_catch_a_broken_expression(tmp_path):
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed")
    path = tmp_path / "broken.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "r", "expr": 'sum by (node (up{job="node-exporter"})'}]}]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "parse error" in done.stdout + done.stderr


def test_every_logql_expression_parses():
    logql = [(uid, where, expr) for uid, where, source, expr in all_queries() if source == "loki"]
    assert len(logql) >= 4
    for uid, where, expr in logql:
        try:
            parse(expr)
        except LogQLError as exc:
            raise AssertionError(f"{uid}: {where}: {expr}") from exc


@pytest.mark.parametrize("broken", [
    '{namespace="jellyfin"',                                   # unclosed selector
    '{namespace=jellyfin}',                                    # value not quoted
    'sum by (namespace) (count_over_time({namespace="x"}))',   # range missing
    '{namespace=~"("}',                                        # regular expression that does not compile
    '{namespace="x"} |~ "(?i)error" |',                        # dangling pipe
    'sum(counts_over_time({namespace="x"} [5m]))',             # no such function
])
def test_the_logql_grammar_rejects_broken_queries(broken):
    with pytest.raises(LogQLError):
        parse(broken)


def test_the_demo_names_the_grafana_address_of_the_homelab_and_how_to_log_in():
    service = by_name(rendered("apps/grafana.yaml.j2"), "Service", "grafana")
    assert service["spec"]["ports"][0]["nodePort"] == dashboards.GRAFANA_NODE_PORT
    hint = dashboards.grafana_hint(homelab_inventory())
    assert f"http://192.168.4.63:{dashboards.GRAFANA_NODE_PORT}/" in hint
    assert "get secret grafana-admin" in hint and "admin.conf" in hint


def test_node_exporter_reads_the_textfile_directory_vmstation_writes_through_the_hosts_root():
    from vmstation.power import metrics

    (daemonset,) = rendered("apps/node-exporter.yaml.j2")
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    root = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--path.rootfs="))
    assert f"--collector.textfile.directory={root}{metrics.TEXTFILE_DIR}" in container["args"]
    assert {"name": "root", "mountPath": root, "readOnly": True,
            "mountPropagation": "HostToContainer"} in container["volumeMounts"]
    assert metrics.IDLE_TEXTFILE.startswith(metrics.TEXTFILE_DIR + "/")
    assert metrics.POWER_TEXTFILE.startswith(metrics.TEXTFILE_DIR + "/")
