"""The homelab's metrics pipeline on loopback: Debian's real Prometheus and node-exporter, no Kubernetes.

    masternode, storagenodet3500   two node-exporters scraped by the "Debian" Prometheus as job
                                   node-exporter with the node label its relabelling gives
                                   (masternode's reads the textfile directory vmstation writes)
    homelab                        a node-exporter scraped by the "RKE2" Prometheus, whose global
                                   section (external_labels.cluster) comes from the rendered RKE2 template
    federation                     the Debian Prometheus federates the RKE2 one with the federate-rke2 job
                                   of the rendered Debian prometheus.yml, its targets pointed at loopback

All three node-exporters read this one machine: they stand in for three hosts, and a "sleeping"
worker is its node-exporter stopped (its scrape really fails). Every process listens on
127.0.0.1 only (ports the kernel hands out), is started by this module and stopped by it.
Used by tests/integration/test_dashboards_prometheus.py and docs/dashboards/render.py.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SCRAPE_SECONDS = 1
NODE_EXPORTER = "prometheus-node-exporter"     # Debian's name for the binary
PROMETHEUS = "prometheus"
READY_TIMEOUT = 30.0


def rendered_federation(inventory) -> tuple[dict, dict]:
    """The federate-rke2 job of the Debian prometheus.yml and the global section of the RKE2 one, as the
    templates render them for ``inventory`` (its first kubeadm control plane and first RKE2 server)."""
    from vmstation import versions
    from vmstation.templates import render

    master = next(h for h in inventory.hosts if h.has_role("control-plane"))
    server = next(h for h in inventory.hosts if h.has_role("server"))
    values = {"inventory": inventory, "versions": versions.as_dict()}
    debian = yaml.safe_load(render("apps/prometheus.yml.j2", host=master, cluster=inventory.cluster(master.cluster),
                                   **values))
    (federate,) = [job for job in debian["scrape_configs"] if job["job_name"] == "federate-rke2"]
    rke2_configmap = yaml.safe_load(render("rke2-monitoring/prometheus-config.yaml.j2", host=server,
                                           cluster=inventory.cluster(server.cluster), **values))
    rke2 = yaml.safe_load(rke2_configmap["data"]["prometheus.yml"])
    return federate, {"external_labels": rke2["global"]["external_labels"]}


def missing_tools() -> list[str]:
    return [tool for tool in (PROMETHEUS, NODE_EXPORTER) if shutil.which(tool) is None]


@dataclass
class Lab:
    """Handles on what runs: call ``stop_worker``/``start_worker`` to put the worker's exporter down and up."""

    directory: Path
    textfile_dir: Path
    exporter_ports: dict[str, int]
    debian_port: int = 0
    rke2_port: int = 0
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.debian_port}"

    def start_exporter(self, node: str) -> None:
        textfile = self.textfile_dir if node == "masternode" else self.directory / f"empty-{node}"
        textfile.mkdir(exist_ok=True)
        port = self.exporter_ports[node]
        self._start(f"node-exporter-{node}", [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                                                f"--collector.textfile.directory={textfile}", "--no-collector.systemd"])
        wait_for_http(f"http://127.0.0.1:{self.exporter_ports[node]}/metrics")

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at else {})
        return _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params))["result"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict]:
        """Evaluated at ``end`` and every ``step`` before it back to ``start``: the newest samples always count."""
        start = end - step * math.ceil((end - start) / step)
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return _get(f"{self.url}/api/v1/query_range?" + urllib.parse.urlencode(params))["result"]

    def wait_for(self, expr: str, what: str, timeout: float = 30.0) -> list[dict]:
        """Poll until ``expr`` returns a series; raise TimeoutError naming ``what``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.25)
        raise TimeoutError(f"{what}: {expr} returned nothing within {timeout:g} s")

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.directory / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        log.close()


def start_lab(directory: Path, debian_scrape: dict, rke2_global: dict) -> Lab:
    """Start the exporters and both Prometheus servers; return once the Debian one sees every target up.

    ``debian_scrape`` is the federate-rke2 job of the rendered Debian prometheus.yml and ``rke2_global`` the
    global section of the rendered RKE2 one; both are used as they are, with loopback targets.
    """
    directory.mkdir(parents=True, exist_ok=True)
    nodes = ("masternode", "storagenodet3500", "homelab")
    lab = Lab(directory, directory / "textfile", {node: free_port() for node in nodes})
    lab.textfile_dir.mkdir(exist_ok=True)
    lab.debian_port, lab.rke2_port = free_port(), free_port()
    try:
        for node in nodes:
            lab.start_exporter(node)
        _start_prometheus(lab, "rke2", lab.rke2_port, {
            "global": {**rke2_global, "scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": "1s"},
            "scrape_configs": [_self_job(lab.rke2_port), _exporter_job(lab, ["homelab"])]})
        federate = {**debian_scrape, "scrape_interval": f"{2 * SCRAPE_SECONDS}s", "scrape_timeout": "1s",
                    "static_configs": [{"targets": [f"127.0.0.1:{lab.rke2_port}"],
                                        "labels": debian_scrape["static_configs"][0]["labels"]}]}
        _start_prometheus(lab, "debian", lab.debian_port, {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": "1s"},
            "scrape_configs": [_self_job(lab.debian_port), _exporter_job(lab, ["masternode", "storagenodet3500"]),
                               federate]})
        lab.wait_for('count(up{job="node-exporter"} == 1) == 3', "every node-exporter up, federated one included")
    except BaseException:
        lab.stop_all()
        raise
    return lab


def _start_prometheus(lab: Lab, name: str, port: int, config: dict) -> None:
    path = lab.directory / f"{name}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    check = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=30)
    if check.returncode:
        raise RuntimeError(f"{path}: {check.stdout}{check.stderr}")
    lab._start(f"prometheus-{name}", [PROMETHEUS, f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}",
                                      f"--storage.tsdb.path={lab.directory / ('data-' + name)}"])
    wait_for_http(f"http://127.0.0.1:{port}/-/ready")


def _self_job(port: int) -> dict:
    return {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}


def _exporter_job(lab: Lab, nodes: list[str]) -> dict:
    # What the kubernetes_sd relabelling of both templates yields: address NODE_IP:9100 and a node label.
    return {"job_name": "node-exporter", "static_configs": [
        {"targets": [f"127.0.0.1:{lab.exporter_ports[node]}"], "labels": {"node": node}} for node in nodes]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g} s")
        time.sleep(0.2)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=20) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]


# ---------------------------------------------------------------------------------------------
# A sleep and wake of the worker, told through vmstation's own commands
# ---------------------------------------------------------------------------------------------


def idle_check(lab: Lab, cpu_threshold: float, idle_hours: float) -> dict:
    """The scheduled idle check as masternode runs it (python3 -m vmstation.power.idle --textfile ...), sampling
    the CPU of this machine and of the worker's node-exporter; returns its decision."""
    config = lab.directory / "idle.json"
    config.write_text(json.dumps({
        "idle_hours": idle_hours, "cpu_threshold_percent": cpu_threshold, "cpu_sample_seconds": 1,
        "cpu": {"masternode": "local",
                "storagenodet3500": f"http://127.0.0.1:{lab.exporter_ports['storagenodet3500']}/metrics"}}))
    done = _vmstation("idle", "--config", str(config), "--state", str(lab.directory / "idle-state.json"),
                      "--textfile", str(lab.textfile_dir / "vmstation_idle.prom"))
    return json.loads(done.stdout.strip().splitlines()[-1])


def power_event(lab: Lab, event: str, *extra: str) -> None:
    _vmstation("metrics", event, "--nodes", "storagenodet3500", "--state", str(lab.directory / "power.json"),
               "--textfile", str(lab.textfile_dir / "vmstation_power.prom"), *extra)


def sleep_and_wake(lab: Lab, asleep_scrapes: int) -> dict[str, float]:
    """Busy check, quiet check, sleep (the worker's exporter stopped and seen down), wake once Prometheus has
    recorded ``asleep_scrapes`` failed scrapes of the sleeping worker; event times returned."""
    times = {"busy_check": time.time()}
    idle_check(lab, cpu_threshold=0, idle_hours=0)             # any CPU keeps the workers awake
    times["quiet_check"] = time.time()
    decision = idle_check(lab, cpu_threshold=101, idle_hours=0)     # no CPU reading reaches 101 %
    if not decision["sleep"]:
        raise RuntimeError(f"the idle check did not decide to sleep: {decision}")
    times["sleep_start"] = time.time()
    power_event(lab, "sleep-start")
    # On the homelab the drain takes minutes before the worker powers off; here, one scrape of it.
    lab.wait_for('vmstation_power_state{worker="storagenodet3500"} == 1', "falling asleep scraped")
    lab.stop("node-exporter-storagenodet3500")
    power_event(lab, "asleep", "--down", f"127.0.0.1:{lab.exporter_ports['storagenodet3500']}", "--timeout", "30")
    lab.wait_for('vmstation_power_asleep{worker="storagenodet3500"} == 1', "asleep scraped from the textfile")
    lab.wait_for('up{job="node-exporter", node="storagenodet3500"} == 0', "the sleeping worker's scrape failing")
    lab.wait_for(f'count_over_time((up{{job="node-exporter", node="storagenodet3500"}} == 0)[10m:1s]) '
                 f'>= {asleep_scrapes}', f"{asleep_scrapes} failed scrapes of the sleeping worker",
                 timeout=asleep_scrapes * SCRAPE_SECONDS + 30)
    times["wake_start"] = time.time()
    power_event(lab, "wake-start")
    lab.start_exporter("storagenodet3500")
    woke_after = time.time() - times["wake_start"]
    power_event(lab, "awake", "--seconds", f"{woke_after:.2f}")
    lab.wait_for('vmstation_power_wakes_total{worker="storagenodet3500"} >= 1', "awake scraped from the textfile")
    lab.wait_for('up{job="node-exporter", node="storagenodet3500"} == 1', "the woken worker scraped again")
    times["awake"] = time.time()
    return times


def _vmstation(module: str, *args: str) -> subprocess.CompletedProcess:
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", f"vmstation.power.{module}", *args], capture_output=True, text=True,
                          timeout=120, cwd=root, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})
    if done.returncode:
        raise RuntimeError(f"vmstation.power.{module} {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done
