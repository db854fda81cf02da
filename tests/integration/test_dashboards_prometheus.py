"""Every dashboard query over node-exporter, federation and vmstation's textfile metrics returns series from
Debian's real Prometheus (2.42) and node-exporter (1.5), run on loopback (vmstation.testing.prometheus_lab).

The textfile metrics are written by vmstation's own commands as masternode runs them: the idle check
(``python3 -m vmstation.power.idle --textfile``) sampling real CPU, and the sleep/wake events
(``python3 -m vmstation.power.metrics``), with the worker's node-exporter really stopped while it "sleeps".
Queries over kube-state-metrics, cAdvisor and Loki cannot return anything here (no cluster, no Loki):
they are parse-checked in tests/unit/test_dashboards.py and listed, not counted, here.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.unit.conftest import homelab_inventory
from vmstation import dashboards
from vmstation.testing import prometheus_lab

# Sources that do not exist on this machine: a query naming one of them is not expected to return series.
ABSENT_HERE = re.compile(r"\b(kube_\w+|container_\w+|kubelet_\w+)")
VARIABLES = {"cluster": "rke2-homelab"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    missing = prometheus_lab.missing_tools()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (Debian packages prometheus, prometheus-node-exporter)")
    federate, rke2_global = prometheus_lab.rendered_federation(homelab_inventory())
    running = prometheus_lab.start_lab(tmp_path_factory.mktemp("prometheus-lab"), federate, rke2_global)
    try:
        started = time.time()
        times = prometheus_lab.sleep_and_wake(running, asleep_scrapes=4)
        yield running, started, times
    finally:
        running.stop_all()


def node_queries() -> list[tuple[str, str, str]]:
    inventory = homelab_inventory()
    found = []
    for board in dashboards.build(inventory, inventory.cluster("debian")):
        for where, source, expr in dashboards.queries(board):
            if source["uid"] == "prometheus" and not ABSENT_HERE.search(expr):
                found.append((board["uid"], where, dashboards.expand(expr, VARIABLES)))
    return found


def hwmon_sensors() -> bool:
    return any(Path("/sys/class/hwmon").glob("hwmon*/temp*_input"))


@pytest.mark.parametrize("uid,where,expr", node_queries(), ids=lambda value: str(value)[:40])
def test_dashboard_query_returns_series(lab, uid, where, expr):
    running, started, _ = lab
    result = running.query_range(expr, started, time.time())
    if "node_hwmon_temp_celsius" in expr and not hwmon_sensors():
        assert result == [], "a temperature where this machine has no hwmon sensor"
        pytest.skip("this machine has no hwmon temperature sensor (/sys/class/hwmon), so node-exporter has none")
    assert result, f"{uid}: {where}: no series for {expr}"


def test_the_sleep_shows_on_the_node_state_as_asleep_then_up(lab):
    running, started, times = lab
    (series,) = [s for s in running.query_range(dashboards.node_state(), started, time.time())
                 if s["metric"]["node"] == "storagenodet3500"]
    states = [value for _, value in series["values"]]
    # up, then asleep (2) while its exporter is stopped, then up again; never "down" (0) with a sleep recorded
    collapsed = [state for index, state in enumerate(states) if index == 0 or states[index - 1] != state]
    assert collapsed == ["1", "2", "1"], collapsed
    cluster = {s["metric"]["node"]: s["metric"]["cluster"] for s in running.query(dashboards.node_state())}
    assert cluster == {"masternode": "debian", "storagenodet3500": "debian", "homelab": "rke2-homelab"}


def test_the_idle_checks_decisions_reach_prometheus_with_their_reasons(lab):
    running, started, times = lab
    decisions = running.query_range("vmstation_idle_check_info", started, time.time())
    seen = {(s["metric"]["decision"], s["metric"]["reason"].split(":")[0]) for s in decisions}
    assert ("stay-awake", "masternode") in seen or ("stay-awake", "storagenodet3500") in seen
    assert any(decision == "sleep" for decision, _ in seen)
    (wake,) = running.query('vmstation_power_wake_duration_seconds{worker="storagenodet3500"}')
    assert 0 < float(wake["value"][1]) < 30


def test_annotations_mark_each_check_sleep_and_wake(lab):
    running, started, _ = lab
    overview = dashboards.overview()
    for annotation in overview["annotations"]["list"]:
        assert running.query_range(annotation["expr"], started, time.time(), step=1), annotation["name"]
