"""The Grafana dashboards of the homelab, provisioned from files into the folder "Homelab".

    homelab-overview  every node of both clusters: up, asleep or down; CPU, memory, disk, network,
                      temperature; the workers' sleep timeline with the idle check's decisions
    debian-cluster    nodes Ready and cordoned, pods by phase, restarts, Deployments short of replicas
    rke2-cluster      the RKE2 cluster through federation (its Prometheus and node-exporter)
    jellyfin          pod health, CPU and network while streaming, sessions playing, its logs
    homelab-logs      Loki: log volume and errors per namespace, one log panel per namespace

Each dashboard is plain data built here (Grafana's classic dashboard JSON model) and rendered
into a ConfigMap of its own by templates/apps/grafana-dashboards.yaml.j2. Written for this
homelab's series: node-exporter's job is ``node-exporter`` with a ``node`` label in both
clusters; the Debian Prometheus's own series carry no ``cluster`` label and the federated
RKE2 series carry ``cluster`` (``rke2-homelab``), so node panels name the Debian ones
"debian"; vmstation's power series come from masternode's textfile collector
(``vmstation.power.metrics``) and name workers by ``worker``.

``queries(dashboard)`` lists every expression with its datasource, for the checks in tests
(promtool, a real Prometheus, a LogQL grammar) and for the pictures of the README.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmstation.values import url_host

PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
FOLDER = "Homelab"
SCHEMA_VERSION = 39          # Grafana 11.2's dashboard schema (versions.py pins grafana 11.2.2)
DEBIAN = "debian"            # the name node panels give the series of the Debian Prometheus itself
NODE_EXPORTER = 'job="node-exporter"'
# Interfaces that are not the node's own link: loopback, pod veths, CNI bridges and overlays.
VIRTUAL_NICS = 'device!~"lo|veth.*|cni.*|flannel.*|cali.*|tunl.*|vxlan.*|docker.*|virbr.*"'
GRID_WIDTH = 24
GRAFANA_NODE_PORT = 30300    # templates/apps/grafana.yaml.j2's Service


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    source: str = "prometheus"        # the datasource's uid: "prometheus" or "loki"
    instant: bool = False

    @property
    def datasource(self) -> dict:
        return {"type": self.source, "uid": self.source}


@dataclass(frozen=True)
class Panel:
    kind: str                     # timeseries, stat, state-timeline, table, logs, bargauge
    title: str
    description: str
    queries: tuple[Query, ...]
    width: int = 12
    height: int = 8
    unit: str | None = None
    low: float | None = None
    high: float | None = None
    mappings: tuple[tuple[float, str, str], ...] = ()     # (value, text, colour)
    repeat: str | None = None


# ---------------------------------------------------------------------------------------------
# Expressions shared by several dashboards
# ---------------------------------------------------------------------------------------------


def named_cluster(expr: str) -> str:
    """``expr`` with ``cluster="debian"`` where the series has no cluster label (the Debian Prometheus's own)."""
    return f'label_replace({expr}, "cluster", "{DEBIAN}", "cluster", "")'


def node_cpu(selector: str) -> str:
    return named_cluster(f'100 * (1 - avg by (cluster, node) (rate(node_cpu_seconds_total{{{selector}, '
                         f'mode="idle"}}[$__rate_interval])))')


def node_memory(selector: str) -> str:
    return named_cluster(f"100 * (1 - max by (cluster, node) (node_memory_MemAvailable_bytes{{{selector}}}) "
                         f"/ max by (cluster, node) (node_memory_MemTotal_bytes{{{selector}}}))")


def node_root_disk(selector: str) -> str:
    root = f'{selector}, mountpoint="/"'
    return named_cluster(f"100 * (1 - max by (cluster, node) (node_filesystem_avail_bytes{{{root}}}) "
                         f"/ max by (cluster, node) (node_filesystem_size_bytes{{{root}}}))")


def node_network(selector: str, direction: str) -> str:
    return named_cluster(f"sum by (cluster, node) (rate(node_network_{direction}_bytes_total"
                         f"{{{selector}, {VIRTUAL_NICS}}}[$__rate_interval]))")


def node_temperature(selector: str) -> str:
    return named_cluster(f"max by (cluster, node) (node_hwmon_temp_celsius{{{selector}}})")


def node_state(selector: str = NODE_EXPORTER, worker: str | None = None) -> str:
    """Up (1), asleep (2: down while vmstation puts it to sleep, keeps it asleep or wakes it) or down (0)."""
    power = f'vmstation_power_state{{worker="{worker}"}}' if worker else "vmstation_power_state"
    up = f"max by (cluster, node) (up{{{selector}}})"
    sleeping = f'max by (node) (label_replace({power}, "node", "$1", "worker", "(.+)")) > 0'
    return named_cluster(f"({up} == 1) or on (node) (2 + 0 * ({sleeping})) or on (node) {up}")


STATE_MAPPINGS = ((0, "down", "red"), (1, "up", "green"), (2, "asleep", "blue"))
PERCENT = {"unit": "percent", "low": 0, "high": 100}


def node_panels(selector: str, legend: str) -> list[Panel]:
    return [
        Panel("timeseries", "CPU busy", "Share of CPU time not idle, per node.",
              (Query(node_cpu(selector), legend),), **PERCENT),
        Panel("timeseries", "Memory used", "1 - MemAvailable / MemTotal, per node.",
              (Query(node_memory(selector), legend),), **PERCENT),
        Panel("timeseries", "Root disk used", "The root filesystem of each node.",
              (Query(node_root_disk(selector), legend),), **PERCENT),
        Panel("timeseries", "Network", "Bytes per second on the physical NICs (pod and overlay links left out); "
              "transmit above the axis, receive below.",
              (Query(node_network(selector, "transmit"), f"{legend} out"),
               Query(f"-1 * {node_network(selector, 'receive')}", f"{legend} in")), unit="Bps"),
        Panel("timeseries", "Temperature", "The hottest hwmon sensor of each node, where node-exporter finds one.",
              (Query(node_temperature(selector), legend),), unit="celsius"),
    ]


# ---------------------------------------------------------------------------------------------
# The dashboards
# ---------------------------------------------------------------------------------------------


def overview() -> dict:
    power = [
        Panel("state-timeline", "Workers: awake or asleep", "What vmstation's sleep and wake recorded on masternode "
              "(textfile collector); the idle check's decisions and sleep/wake events are annotations.",
              (Query("max by (worker) (vmstation_power_state)", "{{worker}}"),), width=24, height=5,
              mappings=((0, "awake", "green"), (1, "falling asleep", "light-blue"), (2, "asleep", "blue"),
                        (3, "waking", "yellow"))),
        Panel("stat", "Last idle check", "The scheduled check's decision; its reasons are in the table beside.",
              (Query("vmstation_idle_check_sleep"),), width=4, height=5,
              mappings=((0, "stay awake", "green"), (1, "may sleep", "blue"))),
        Panel("table", "Why", "The reasons the last idle check gave, in the policy's order.",
              (Query("vmstation_idle_check_info", instant=True),), width=12, height=5),
        Panel("stat", "Quiet for / needed", "How long everything has been quiet, and the idle time needed to sleep.",
              (Query("vmstation_idle_seconds", "quiet for"), Query("vmstation_idle_needed_seconds", "needed")),
              width=8, height=5, unit="s"),
        Panel("stat", "What keeps the workers awake", "The idle check's inputs at its last run.",
              (Query("vmstation_idle_jellyfin_playing_sessions", "Jellyfin playing"),
               Query("vmstation_idle_logged_in_users", "logged in"),
               Query("vmstation_idle_running_jobs", "Jobs running"),
               Query("vmstation_idle_unobserved", "not observed")), width=12, height=5),
        Panel("timeseries", "CPU seen by the idle check", "Each host's CPU over the check's sample, "
              "against the threshold that keeps the workers awake.",
              (Query("vmstation_idle_cpu_percent", "{{host}}"),
               Query("vmstation_idle_cpu_threshold_percent", "threshold")), **PERCENT),
        Panel("stat", "Time to wake", "Magic packet to SSH answer, the last wake of each worker.",
              (Query("vmstation_power_wake_duration_seconds", "{{worker}}"),), width=6, height=5, unit="s"),
        Panel("stat", "Asleep since", "When each sleeping worker was seen down.",
              (Query("1000 * (vmstation_power_sleep_end_timestamp_seconds and on (worker) "
                     "(vmstation_power_asleep == 1))", "{{worker}}"),), width=6, height=5, unit="dateTimeFromNow"),
    ]
    nodes = [Panel("state-timeline", "Nodes: up, asleep or down", "node-exporter's scrape of every node of both "
                   "clusters; asleep is down while vmstation has put the worker to sleep.",
                   (Query(node_state(), "{{cluster}} / {{node}}"),), width=24, height=6, mappings=STATE_MAPPINGS)]
    nodes += node_panels(NODE_EXPORTER, "{{cluster}} / {{node}}")
    annotations = [
        _annotation("Idle check", "orange", "vmstation_idle_check_info and on () "
                    "(time() - vmstation_idle_check_timestamp_seconds < 120)", "idle check: {{decision}}",
                    "{{reason}}"),
        # From the event's time, not a counter's change: the first sleep's counter appears at 1, with no change.
        _annotation("Sleep", "blue", "time() - vmstation_power_sleep_end_timestamp_seconds < 120",
                    "asleep: {{worker}}", ""),
        _annotation("Wake", "green", "time() - vmstation_power_wake_end_timestamp_seconds < 120",
                    "awake: {{worker}}", "{{worker}} answered again"),
    ]
    return dashboard("homelab-overview", "Homelab overview", "Every node of both clusters, and who sleeps and why.",
                     nodes + power, annotations=annotations)


def debian_cluster() -> dict:
    ksm = 'job="kube-state-metrics"'
    panels = [
        Panel("stat", "Nodes Ready", "Nodes whose Ready condition is true, of all nodes.",
              (Query(f'sum(kube_node_status_condition{{{ksm}, condition="Ready", status="true"}})', "Ready"),
               Query(f"count(kube_node_info{{{ksm}}})", "nodes")), width=6, height=5),
        Panel("state-timeline", "Ready per node", "Ready (1) or not (0); a sleeping worker is not Ready.",
              (Query(f'max by (node) (kube_node_status_condition{{{ksm}, condition="Ready", status="true"}})',
                     "{{node}}"),), width=12, height=5, mappings=((0, "not Ready", "red"), (1, "Ready", "green"))),
        Panel("stat", "Cordoned", "Nodes marked unschedulable (sleep cordons the workers it drains).",
              (Query(f"max by (node) (kube_node_spec_unschedulable{{{ksm}}})", "{{node}}"),), width=6, height=5,
              mappings=((0, "schedulable", "green"), (1, "cordoned", "orange"))),
        Panel("timeseries", "Pods by phase", "All pods of the cluster by phase.",
              (Query(f"sum by (phase) (kube_pod_status_phase{{{ksm}}})", "{{phase}}"),)),
        Panel("table", "Pods not running", "Pods Pending, Failed or Unknown now.",
              (Query(f'sum by (namespace, pod, phase) (kube_pod_status_phase{{{ksm}, '
                     f'phase=~"Pending|Failed|Unknown"}}) > 0', instant=True),)),
        Panel("bargauge", "Restarts in the last hour", "Container restarts per pod, the ten highest.",
              (Query(f"topk(10, sum by (namespace, pod) "
                     f"(increase(kube_pod_container_status_restarts_total{{{ksm}}}[1h])))",
                     "{{namespace}}/{{pod}}", instant=True),)),
        Panel("table", "Deployments short of replicas", "Desired minus available replicas, where not zero.",
              (Query(f"sum by (namespace, deployment) (kube_deployment_spec_replicas{{{ksm}}} "
                     f"- kube_deployment_status_replicas_available{{{ksm}}}) != 0", instant=True),)),
        Panel("timeseries", "CPU by namespace", "Container CPU from the kubelets' cAdvisor, in cores.",
              (Query('sum by (namespace) (rate(container_cpu_usage_seconds_total{job="cadvisor", container!=""}'
                     '[$__rate_interval]))', "{{namespace}}"),)),
        Panel("timeseries", "Memory by namespace", "Container working sets from cAdvisor.",
              (Query('sum by (namespace) (container_memory_working_set_bytes{job="cadvisor", container!=""})',
                     "{{namespace}}"),), unit="bytes"),
        Panel("timeseries", "Scrape targets up", "Targets of the Debian Prometheus that answer, per job.",
              (Query('sum by (job) (up{cluster=""})', "{{job}}"),)),
    ]
    return dashboard("debian-cluster", "Debian cluster", "The kubeadm cluster from kube-state-metrics and cAdvisor.",
                     panels)


def rke2_cluster() -> dict:
    selected = 'cluster="$cluster"'
    panels = [
        Panel("stat", "Federation", "Does the Debian Prometheus reach the RKE2 Prometheus's /federate?",
              (Query('max(up{job="federate-rke2"})'),), width=6, height=5, mappings=((0, "down", "red"),
                                                                                       (1, "up", "green"))),
        Panel("stat", "Series federated", "Samples the last federation scrape brought.",
              (Query('sum(scrape_samples_scraped{job="federate-rke2"})'),), width=6, height=5),
        Panel("state-timeline", "RKE2 targets", "What the RKE2 Prometheus scrapes, up or down.",
              (Query(f'max by (job, node) (up{{{selected}, job!="federate-rke2"}})', "{{job}} {{node}}"),),
              height=5, mappings=((0, "down", "red"), (1, "up", "green"))),
    ]
    panels += node_panels(f'{NODE_EXPORTER}, {selected}', "{{node}}")
    panels.append(Panel("timeseries", "RKE2 Prometheus head series", "Series in the RKE2 Prometheus's head block.",
                        (Query(f"max(prometheus_tsdb_head_series{{{selected}}})", "head series"),)))
    variables = [{"name": "cluster", "label": "Cluster", "type": "query", "datasource": PROMETHEUS,
                  "definition": 'label_values(up{cluster!=""}, cluster)',
                  "query": {"query": 'label_values(up{cluster!=""}, cluster)',
                            "refId": "PrometheusVariableQueryEditor-VariableQuery"},
                  "refresh": 2, "includeAll": False, "multi": False, "current": {}}]
    return dashboard("rke2-cluster", "RKE2 cluster (federated)", "The RKE2 cluster as the Debian Prometheus "
                     "federates it: every series labelled by cluster.", panels, variables=variables)


def jellyfin(jellyfin_node: str | None) -> dict:
    pod = 'namespace="jellyfin"'
    host = f'{NODE_EXPORTER}, node="{jellyfin_node}"' if jellyfin_node else NODE_EXPORTER
    panels = [
        Panel("stat", "Pod ready", "Jellyfin's pod passes its readiness probe (/health).",
              (Query(f'max(kube_pod_status_ready{{{pod}, condition="true"}})'),), width=6, height=5,
              mappings=((0, "not ready", "red"), (1, "ready", "green"))),
        Panel("stat", "Restarts", "Container restarts of Jellyfin's pod.",
              (Query(f"sum(kube_pod_container_status_restarts_total{{{pod}}})"),), width=6, height=5),
        Panel("stat", "Sessions playing", "What the idle check saw in Jellyfin's Sessions API at its last run.",
              (Query("vmstation_idle_jellyfin_playing_sessions"),), width=6, height=5),
        Panel("stat", "Host", "node-exporter on the Jellyfin host: up, asleep or down.",
              (Query(node_state(host, jellyfin_node), "{{node}}"),),
              width=6, height=5, mappings=STATE_MAPPINGS),
        Panel("timeseries", "CPU", "Jellyfin's container CPU (transcoding shows here), in cores.",
              (Query(f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{pod}, container="jellyfin"}}'
                     f'[$__rate_interval]))', "{{pod}}"),)),
        Panel("timeseries", "Streaming out", "Bytes per second the pod sends (streams), and its host's NICs.",
              (Query(f"sum by (pod) (rate(container_network_transmit_bytes_total{{{pod}}}[$__rate_interval]))",
                     "pod {{pod}}"),
               Query(node_network(host, "transmit"), "host {{node}}")), unit="Bps"),
        Panel("logs", "Jellyfin logs", "Its container log from Loki.",
              (Query('{namespace="jellyfin"}', source="loki"),), width=24, height=10),
    ]
    return dashboard("jellyfin", "Jellyfin", "Is Jellyfin healthy, is anyone watching, what does streaming cost.",
                     panels)


def logs() -> dict:
    selected = 'namespace=~"$namespace", pod=~"$pod"'
    search = '|~ "(?i)$search"'
    panels = [
        Panel("timeseries", "Log lines", "Lines per interval by namespace that match the search.",
              (Query(f"sum by (namespace) (count_over_time({{{selected}}} {search} [$__interval]))", "{{namespace}}",
                     source="loki"),)),
        Panel("timeseries", "Errors and warnings", "Lines that say error, warn, fail or panic, by namespace.",
              (Query(f'sum by (namespace) (count_over_time({{{selected}}} |~ "(?i)(error|warn|fail|panic)" '
                     f'[$__interval]))', "{{namespace}}", source="loki"),)),
        Panel("logs", "$namespace", "The namespace's pod logs (Promtail to Loki), filtered by the search.",
              (Query(f'{{namespace="$namespace", pod=~"$pod"}} {search}', source="loki"),), width=24, height=10,
              repeat="namespace"),
    ]
    variables = [
        {"name": "namespace", "label": "Namespace", "type": "query", "datasource": LOKI,
         "definition": "label_values(namespace)",
         "query": {"type": 1, "label": "namespace", "refId": "LokiVariableQueryEditor-VariableQuery"},
         "refresh": 2, "includeAll": True, "multi": True, "allValue": ".+", "current": {}},
        {"name": "pod", "label": "Pod", "type": "query", "datasource": LOKI,
         "definition": 'label_values({namespace=~"$namespace"}, pod)',
         "query": {"type": 1, "label": "pod", "stream": '{namespace=~"$namespace"}',
                   "refId": "LokiVariableQueryEditor-VariableQuery"},
         "refresh": 2, "includeAll": True, "multi": True, "allValue": ".+", "current": {}},
        {"name": "search", "label": "Search (regular expression)", "type": "textbox", "query": "",
         "current": {"text": "", "value": ""}},
    ]
    return dashboard("homelab-logs", "Logs", "Pod logs of every namespace, by pod, with a search.", panels,
                     variables=variables)


def build(inventory, cluster) -> list[dict]:
    """Every dashboard, for the kubeadm cluster ``cluster`` of ``inventory``."""
    jellyfin_host = next((h.name for h in inventory.hosts_of(cluster.name) if h.has_role("jellyfin")), None)
    return [overview(), debian_cluster(), rke2_cluster(), jellyfin(jellyfin_host), logs()]


# ---------------------------------------------------------------------------------------------
# Grafana's JSON model
# ---------------------------------------------------------------------------------------------


def dashboard(uid: str, title: str, description: str, panels: list[Panel], variables=(), annotations=()) -> dict:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["homelab", "vmstation"],
        "editable": False, "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"}, "timezone": "browser", "graphTooltip": 1,
        "templating": {"list": list(variables)}, "annotations": {"list": list(annotations)},
        "panels": _laid_out(panels), "links": [{"type": "dashboards", "tags": ["homelab"], "asDropdown": True,
                                                "title": "Homelab"}],
    }


def queries(board: dict) -> list[tuple[str, dict, str]]:
    """(panel or annotation title, datasource, expression) of every query of a dashboard."""
    found = [(panel["title"], target["datasource"], target["expr"])
             for panel in board["panels"] for target in panel["targets"]]
    found += [(f"annotation {a['name']}", a["datasource"], a["expr"]) for a in board["annotations"]["list"]]
    return found


# Grafana's own variables, as a check or a picture fills them in (Grafana computes them from the time range).
BUILTINS = {"__rate_interval": "2m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$(\{)?([A-Za-z_]\w*)(?(1)\})")     # $name or ${name}; never label_replace's $1


def variables_in(expr: str) -> set[str]:
    return {match.group(2) for match in _VARIABLE.finditer(expr)}


def expand(expr: str, values: dict[str, str]) -> str:
    """``expr`` with its dashboard variables replaced, as Grafana does before it sends a query."""
    return _VARIABLE.sub(lambda match: {**BUILTINS, **values}[match.group(2)], expr)


def _laid_out(panels: list[Panel]) -> list[dict]:
    result, x, y, row_height = [], 0, 0, 0
    for number, panel in enumerate(panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        result.append(_panel_json(number, panel, {"x": x, "y": y, "w": panel.width, "h": panel.height}))
        x, row_height = x + panel.width, max(row_height, panel.height)
    return result


def _panel_json(number: int, panel: Panel, grid: dict) -> dict:
    datasource = panel.queries[0].datasource
    defaults: dict = {}
    if panel.unit:
        defaults["unit"] = panel.unit
    if panel.low is not None:
        defaults["min"] = panel.low
    if panel.high is not None:
        defaults["max"] = panel.high
    if panel.mappings:
        defaults["mappings"] = [{"type": "value", "options": {
            str(int(value)): {"text": text, "color": colour, "index": index}
            for index, (value, text, colour) in enumerate(panel.mappings)}}]
        defaults["color"] = {"mode": "thresholds"}
    result = {
        "id": number, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": datasource, "gridPos": grid,
        "targets": [_target(chr(ord("A") + index), query) for index, query in enumerate(panel.queries)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": _options(panel.kind),
    }
    if panel.repeat:
        result.update(repeat=panel.repeat, repeatDirection="v")
    return result


def _target(ref: str, query: Query) -> dict:
    target = {"refId": ref, "datasource": query.datasource, "expr": query.expr}
    if query.source == "loki":
        target["queryType"] = "range"
    else:
        target.update(legendFormat=query.legend or "__auto", instant=query.instant, range=not query.instant)
        if query.instant:
            target["format"] = "table"
    return target


def _options(kind: str) -> dict:
    if kind == "logs":
        return {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending", "enableLogDetails": True}
    if kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value",
                "graphMode": "none", "textMode": "value_and_name"}
    if kind == "state-timeline":
        return {"showValue": "auto", "mergeValues": True, "rowHeight": 0.8}
    if kind == "timeseries":
        return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"}}
    return {}


def _annotation(name: str, colour: str, expr: str, title: str, text: str) -> dict:
    return {"name": name, "datasource": PROMETHEUS, "enable": True, "iconColor": colour, "expr": expr,
            "step": "60s", "titleFormat": title, "textFormat": text, "tagKeys": "", "useValueForTime": False}


def provisioned(inventory, cluster) -> list[dict]:
    """What templates/apps/grafana-*.yaml.j2 render: per dashboard its uid, title, ConfigMap and JSON text."""
    import json

    return [{"uid": board["uid"], "title": board["title"], "configmap": f"grafana-dashboard-{board['uid']}",
             "json": json.dumps(board, indent=2, sort_keys=True)} for board in build(inventory, cluster)]


def grafana_hint(inventory) -> str:
    """Where Grafana answers on the homelab ``inventory`` describes, and how to read its admin password."""
    from pathlib import Path

    lines = []
    for cluster in inventory.clusters_of_kind("kubeadm"):
        master = next((h for h in inventory.hosts_of(cluster.name) if h.has_role("control-plane")), None)
        if master is None:
            continue
        host = url_host(master.address)
        admin = Path(inventory.path).resolve().parent / ".vmstation" / "artifacts" / cluster.name / "admin.conf"
        lines += [f"Grafana of {cluster.name}: http://{host}:{GRAFANA_NODE_PORT}/  (user admin; dashboards in the "
                  f"folder {FOLDER}, the homelab overview is the home page)",
                  f"  password: kubectl --kubeconfig {admin} -n monitoring get secret grafana-admin "
                  "-o jsonpath='{.data.admin-password}' | base64 -d"]
    return "\n".join(lines)
