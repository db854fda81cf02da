"""The second workload: the whole `vmstation deploy-debian` as a no-op on the two demo boxes, next to a floor.

    python -m bench.deploy_debian [--runs 5]      (bench.run calls ``measure_boxes``)

The boxes (``vmstation.testing.boxes.BoxSet``: Debian 12 with systemd, sshd, apt) are the demo's masternode
and storagenodet3500, on the benchmark's own prefix, subnet and bridge (``vmsbd``, 10.77.33.0/24, ``vmsbd0``).
One untimed first run installs what deploy-debian installs here; then, alternating, the installed
``vmstation`` console script (a whole process: imports, preflight, the run) and the paramiko floor to the same
boxes (``bench.floor``: connect, authenticate, one ``true`` per box). This machine cannot have the Kubernetes
binaries, so the run stops at debian.kube-binaries (exit 3) with the phases after it blocked, as in the tests;
every other phase runs. ``proxy_mode = "iptables"``: this machine's nf_tables module comes and goes with other
work, and its check is not what is measured. Commands per host are the run's own count (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench import measure
from bench.tools import REPO
from vmstation.inventory import load
from vmstation.testing.boxes import BoxSet
from vmstation.transport import SshOptions, connect

PREFIX, SUBNET, BRIDGE = "vmsbd", "10.77.33.0/24", "vmsbd0"
BOXES = ["masternode", "storagenodet3500"]
NOOP_EXIT = 3          # stopped at debian.kube-binaries, which this machine cannot have


def measure_boxes(runs: int) -> list[dict]:
    """Records of the deploy-debian no-op ("deploy-debian", kind "noop") and of its floor ("floor-boxes")."""
    with tempfile.TemporaryDirectory(prefix="vmsbd-work-") as scratch, \
            BoxSet(names=BOXES, prefix=PREFIX, subnet=SUBNET, bridge=BRIDGE) as boxes:
        work = Path(scratch)
        inventory, hosts_json = _describe(boxes, work)
        env = {**os.environ, "VMSTATION_VAULT_PASSWORD": "", "VMSTATION_ALLOWED_NETWORKS": SUBNET}
        script = shutil.which("vmstation", path=str(Path(sys.executable).parent)) or "vmstation"
        deploy = [script, "deploy-debian", "--json", "-i", str(inventory)]
        floor = [sys.executable, "-m", "bench.floor", str(hosts_json)]
        first = measure.run_process(deploy, env, work, timeout=1200)
        records = [_record("deploy-debian", "first", 0, first, _problems(first, changed_ok=True))]
        for rep in range(runs):
            for name, argv in (("deploy-debian", deploy), ("floor-boxes", floor))[::1 if rep % 2 == 0 else -1]:
                measured = measure.run_process(argv, {**env, "PYTHONPATH": str(REPO)}, work)
                kind = "noop" if name == "deploy-debian" else "floor"
                problems = _problems(measured) if name == "deploy-debian" else \
                    ([] if measured.exit_code == 0 else [f"exit code {measured.exit_code}"])
                records.append(_record(name, kind, rep, measured, problems))
                print(f"{name:13} boxes {kind:5} run {rep + 1}: {measured.wall:6.2f} s", file=sys.stderr)
    return records


def _describe(boxes: BoxSet, work: Path) -> tuple[Path, Path]:
    (work / "artifacts" / "kubernetes").mkdir(parents=True)
    inventory = boxes.write_inventory(
        work / "hosts.toml", host_extra={"masternode": {"always_on": True},
                                          "storagenodet3500": {"media_path": "/srv/media"}},
        cluster_extra={"debian": {"artifacts_dir": str(work / "artifacts"), "proxy_mode": "iptables"}})
    loaded = load(str(inventory))
    connection = connect(loaded.host("storagenodet3500"), SshOptions(known_hosts=loaded.known_hosts))
    try:
        connection.run("mkdir -p /srv/media\n")
    finally:
        connection.close()
    hosts_json = work / "boxes.json"
    hosts_json.write_text(json.dumps({
        "known_hosts": loaded.known_hosts, "client_key": str(boxes.client_key),
        "hosts": [{"name": h.name, "address": h.address, "port": h.ssh_port} for h in loaded.hosts]}))
    return inventory, hosts_json


def _problems(measured: measure.Measured, changed_ok: bool = False) -> list[str]:
    problems = [] if measured.exit_code == NOOP_EXIT else [f"exit code {measured.exit_code} (want {NOOP_EXIT})"]
    report = _report(measured.output)
    if report is None:
        return problems + ["no --json report"]
    if not changed_ok and report["changed"]:
        problems.append(f"a no-op changed {report['changed']} things")
    return problems


def _report(output: str) -> dict | None:
    start = output.find("{")
    try:
        return json.JSONDecoder().raw_decode(output[start:])[0] if start >= 0 else None
    except ValueError:
        return None


def _record(tool: str, kind: str, rep: int, measured: measure.Measured, problems: list[str]) -> dict:
    report = _report(measured.output) if tool == "deploy-debian" else None
    commands: dict[str, int] = {}
    if report and report.get("journal"):      # the journal counts the commands each pair sent
        for line in Path(report["journal"]).read_text().splitlines():
            entry = json.loads(line)
            if "host" in entry and "phase" in entry:
                commands[entry["host"]] = commands.get(entry["host"], 0) + int(entry.get("commands", 0) or 0)
    record = {"tool": tool, "n": len(BOXES), "kind": kind, "rep": rep, "wall": round(measured.wall, 4),
              "cpu": round(measured.cpu, 4), "exit_code": measured.exit_code, "ok": not problems,
              "problems": problems, "sessions": [], "commands_per_host": commands}
    if problems:
        record["output_tail"] = measured.output[-4000:]
        print(f"bench: {tool} boxes {kind} run {rep + 1}: {'; '.join(problems)}", file=sys.stderr)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deploy_debian", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    measure.become_subreaper()
    from bench.run import compile_project

    compile_project()
    records = measure_boxes(args.runs)
    print(json.dumps(records, indent=1))
    return 0 if all(r["ok"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
