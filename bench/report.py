"""Figures -> medians, ranges, ratios against the targets, and the Markdown table.

A record is one measured process run (a tool's first or no-op run at one N, the
paramiko floor, or ``vmstation --help``). Ratios are taken between medians of
the same batch: figures drift between batches on shared machines.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

KINDS = ("first", "noop")
TOOL_NAMES = ("vmstation", "pyinfra", "fabric", "ansible")
README_BEGIN = "<!-- bench:begin: written by `make bench` (bench/report.py), from its own run; do not edit -->"
README_END = "<!-- bench:end -->"


@dataclass(frozen=True)
class Stats:
    runs: int
    median: float
    low: float
    high: float
    cpu_per_host_ms: float
    per_host: tuple[float, float, float]   # connections, commands, sftp sessions per host (median run)
    failures: int
    sshd_cpu_per_host_ms: float | None = None   # CPU the hosts' sshd (and what it started) spent, per host
    commands_per_host: float | None = None      # deploy-debian: the run's own count, per host (median run)


def summarise(records: list[dict]) -> dict[tuple[str, int, str], Stats]:
    """(tool, N, kind) -> Stats over the runs of that cell."""
    cells: dict[tuple[str, int, str], list[dict]] = {}
    for record in records:
        cells.setdefault((record["tool"], record["n"], record["kind"]), []).append(record)
    return {key: _stats(rows) for key, rows in cells.items()}


def targets(summary: dict, n: int = 30, large: int = 100) -> list[dict]:
    """Each goal of issues 9 and 16: what was measured, the goal, met or not."""
    def median(tool: str, kind: str, at: int = n) -> float | None:
        cell = summary.get((tool, at, kind))
        return cell.median if cell and not cell.failures else None

    vm_noop, vm_first = median("vmstation", "noop"), median("vmstation", "first")
    rows = [
        _ratio(f"no-op N={n}: vmstation / paramiko floor", vm_noop, median("floor", "floor"), "<=", 1.3),
        _ratio(f"no-op N={n}: plain Fabric / vmstation", median("fabric", "noop"), vm_noop, ">=", 1.8),
        _ratio(f"no-op N={n}: pyinfra / vmstation", median("pyinfra", "noop"), vm_noop, ">=", 3.0),
        _ratio(f"first run N={n}: plain Fabric / vmstation", median("fabric", "first"), vm_first, ">=", 1.8),
        _ratio(f"first run N={n}: pyinfra / vmstation", median("pyinfra", "first"), vm_first, ">=", 3.0),
        _least_sshd_cpu(summary, n),
        _ratio("deploy-debian no-op on 2 boxes: vmstation / paramiko floor to them",
               median("deploy-debian", "noop", 2), median("floor-boxes", "floor", 2), "<=", 2.0),
        _value("deploy-debian no-op on 2 boxes: commands per host", _commands(summary), "<=", 1, digits=1),
        _value("`vmstation --help` seconds", median("help", "help", 0), "<", 0.25),
    ]
    if large > n:
        rows.insert(-1, _ratio(f"no-op N={large} / no-op N={n} (vmstation)", median("vmstation", "noop", large),
                               vm_noop, "<", 3.0))
    for kind, want in (("noop", (1, 1, 0)), ("first", (1, 2, 1))):
        cells = [cell for (tool, _, k), cell in summary.items() if tool == "vmstation" and k == kind]
        seen = sorted({cell.per_host for cell in cells})
        rows.append({"target": f"W, vmstation {kind} per host: connections, commands, SFTP sessions = {want}",
                     "measured": ", ".join(str(tuple(round(v, 2) for v in s)) for s in seen) or "n/a",
                     "met": bool(seen) and all(s == tuple(float(v) for v in want) for s in seen)})
    return rows


def _least_sshd_cpu(summary: dict, n: int) -> dict:
    cpu = {tool: cell.sshd_cpu_per_host_ms for (tool, at, kind), cell in summary.items()
           if at == n and kind == "first" and cell.sshd_cpu_per_host_ms is not None and tool in TOOL_NAMES}
    name = f"first run N={n}: least sshd-side CPU per host of the tools measured there"
    if "vmstation" not in cpu:
        return {"target": name, "measured": "not measured", "met": False}
    measured = ", ".join(f"{tool} {ms:.0f} ms" for tool, ms in sorted(cpu.items(), key=lambda item: item[1]))
    return {"target": name, "measured": measured, "met": cpu["vmstation"] <= min(cpu.values())}


def _commands(summary: dict) -> float | None:
    cell = summary.get(("deploy-debian", 2, "noop"))
    return cell.commands_per_host if cell and not cell.failures else None


def markdown(summary: dict, tools: list[str], sizes: list[int], rows: list[dict], context: list[str]) -> str:
    """The results as Markdown: context lines, wall-time table, per-host table, targets."""
    out = ["# Benchmark results", "", *context, "",
           "## Whole-process wall seconds: median (min-max), first run / no-op run", "",
           "| tool | " + " | ".join(f"N={n}" for n in sizes) + " |",
           "|---|" + "---|" * len(sizes)]
    for tool in tools:
        out.append(f"| {tool} | " + " | ".join(_both(summary, tool, n) for n in sizes) + " |")
    out.append("| paramiko floor (connect + auth + `true`) | "
               + " | ".join(_cell(summary.get(("floor", n, "floor"))) for n in sizes) + " |")
    out += ["", "## Per host: controller CPU ms, sshd-side CPU ms, and connections / commands / SFTP sessions "
            "(sshd's log)", "",
            "| tool | " + " | ".join(f"N={n} first" for n in sizes) + " | "
            + " | ".join(f"N={n} no-op" for n in sizes) + " |",
            "|---|" + "---|" * (2 * len(sizes))]
    for tool in tools:
        cells = [_per_host(summary.get((tool, n, kind))) for kind in KINDS for n in sizes]
        out.append(f"| {tool} | " + " | ".join(cells) + " |")
    out += ["", "## deploy-debian no-op on the two demo boxes (`bench/deploy_debian.py`)", "", *_boxes_table(summary)]
    out += ["", "## Targets (ratios of medians from this one run)", "", *_targets_table(rows)]
    return "\n".join(out) + "\n"


def readme_section(summary: dict, sizes: list[int], rows: list[dict], when: str, machine: str, runs: int,
                   command: str = "make bench", commit: str = "") -> str:
    """The README's speed figures, between its markers: written by the run, never by hand."""
    out = [README_BEGIN,
           f"One run of `{command}` on {when}{f' (commit {commit})' if commit else ''}; {machine}; {runs} "
           "alternating runs per cell, medians (all figures in `bench/RESULTS.md`).", "",
           "| whole-process wall seconds, first run / no-op | " + " | ".join(f"N={n}" for n in sizes) + " |",
           "|---|" + "---|" * len(sizes)]
    for tool, label in (("vmstation", "vmstation"), ("fabric", "plain Fabric script"), ("pyinfra", "pyinfra"),
                        ("ansible", "ansible-core")):
        out.append(f"| {label} | " + " | ".join(_both_median(summary, tool, n) for n in sizes) + " |")
    out.append("| paramiko floor (connect + auth + `true`) | "
               + " | ".join(_median(summary.get(("floor", n, "floor"))) for n in sizes) + " |")
    out += ["", *_boxes_table(summary), "", *_targets_table(rows), README_END]
    return "\n".join(out) + "\n"


def replace_readme_section(readme: str, section: str) -> str:
    """``readme`` with the text between the markers (markers included) replaced by ``section``."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise ValueError("README.md has no bench markers")
    return readme[:start] + section + readme[end + len(README_END) + 1:]


def _boxes_table(summary: dict) -> list[str]:
    deploy, floor = summary.get(("deploy-debian", 2, "noop")), summary.get(("floor-boxes", 2, "floor"))
    commands = f"{deploy.commands_per_host:g}" if deploy and deploy.commands_per_host is not None else "-"
    return ["| whole process, wall seconds | median (min-max) |", "|---|---|",
            f"| `vmstation deploy-debian`, nothing to change (commands per host: {commands}) | {_cell(deploy)} |",
            f"| paramiko floor to the same boxes (connect + auth + `true`) | {_cell(floor)} |"]


def _targets_table(rows: list[dict]) -> list[str]:
    return ["| goal | measured | met |", "|---|---|---|",
            *[f"| {r['target']} | {r['measured']} | {'yes' if r['met'] else '**no**'} |" for r in rows]]


def _median(stats: Stats | None) -> str:
    return "-" if stats is None else f"{stats.median:.2f}" + (" (FAILED)" if stats.failures else "")


def _both_median(summary: dict, tool: str, n: int) -> str:
    first, noop = summary.get((tool, n, "first")), summary.get((tool, n, "noop"))
    return "not run" if first is None and noop is None else f"{_median(first)} / {_median(noop)}"


def _stats(rows: list[dict]) -> Stats:
    good = [r for r in rows if r["ok"]] or rows
    walls = [r["wall"] for r in good]
    middle = sorted(good, key=lambda r: r["wall"])[len(good) // 2]
    sessions = middle.get("sessions") or []
    per_host = tuple(statistics.fmean(s[i] for s in sessions) if sessions else 0.0 for i in range(3))
    hosts = max(1, middle["n"])
    sshd = [r["sshd_cpu"] for r in good if r.get("sshd_cpu") is not None]
    commands = middle.get("commands_per_host")
    return Stats(len(rows), statistics.median(walls), min(walls), max(walls),
                 1000 * statistics.median(r["cpu"] for r in good) / hosts, per_host,
                 sum(not r["ok"] for r in rows),
                 1000 * statistics.median(sshd) / hosts if sshd else None,
                 statistics.fmean(commands.values()) if commands else None)


def _ratio(name: str, top: float | None, bottom: float | None, op: str, goal: float) -> dict:
    if top is None or bottom is None:
        return {"target": f"{name} {op} {goal}", "measured": "not measured", "met": False}
    value = top / bottom
    return {"target": f"{name} {op} {goal}", "measured": f"{value:.2f} ({top:.2f} s / {bottom:.2f} s)",
            "met": value <= goal if op == "<=" else value < goal if op == "<" else value >= goal}


def _value(name: str, value: float | None, op: str, goal: float, digits: int = 3) -> dict:
    if value is None:
        return {"target": f"{name} {op} {goal}", "measured": "not measured", "met": False}
    return {"target": f"{name} {op} {goal}", "measured": f"{value:.{digits}f}",
            "met": value < goal if op == "<" else value <= goal}


def _both(summary: dict, tool: str, n: int) -> str:
    first, noop = summary.get((tool, n, "first")), summary.get((tool, n, "noop"))
    if first is None and noop is None:
        return "not run"
    return f"{_cell(first)} / {_cell(noop)}"


def _cell(stats: Stats | None) -> str:
    if stats is None:
        return "-"
    failed = f" ({stats.failures} FAILED)" if stats.failures else ""
    return f"{stats.median:.2f} ({stats.low:.2f}-{stats.high:.2f}){failed}"


def _per_host(stats: Stats | None) -> str:
    if stats is None:
        return "-"
    connections, commands, sftp = stats.per_host
    sshd = f", sshd {stats.sshd_cpu_per_host_ms:.0f} ms" if stats.sshd_cpu_per_host_ms is not None else ""
    return f"{stats.cpu_per_host_ms:.0f} ms{sshd}, {connections:g}/{commands:g}/{sftp:g}"
