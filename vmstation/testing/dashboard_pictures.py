"""Pictures of the Grafana dashboards, drawn from a real Prometheus with matplotlib (Grafana cannot run here).

    python -m vmstation.testing.dashboard_pictures docs/dashboards

starts the loopback lab of vmstation.testing.prometheus_lab (Debian's Prometheus and node-exporter, the
federation of the rendered templates), lets it record a few minutes: a busy idle check, a quiet one, the
worker put to sleep (its node-exporter stopped) and woken, then draws each dashboard's panels at their grid
positions from the panels' own queries (query_range over the run; instant queries for stats and tables).
A panel whose source does not run here (kube-state-metrics, cAdvisor, Loki) is drawn grey with that
reason, never with made-up data. Only loopback is used; every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from vmstation import dashboards
from vmstation.testing import prometheus_lab

ABSENT_HERE = {"kube_": "kube-state-metrics\n(needs a cluster)", "container_": "cAdvisor\n(needs a cluster)",
               "node_hwmon": "hwmon sensors\n(none on this machine)"}
PICTURES = ("homelab-overview", "rke2-cluster", "jellyfin")     # the others draw only from a cluster or Loki
VARIABLES = {"cluster": "rke2-homelab", "__rate_interval": "30s"}
STEP = 5     # seconds between the points of a time series
ROW_INCHES, COLUMN_INCHES, DPI = 0.33, 0.62, 64
COLOURS = {"green": "#56a64b", "red": "#e02f44", "blue": "#3274d9", "light-blue": "#8ab8ff", "yellow": "#f2cc0c",
           "orange": "#ff9830"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmstation.testing.dashboard_pictures",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for the PNG files")
    parser.add_argument("--inventory", default="hosts.toml", help="the homelab whose dashboards are drawn")
    parser.add_argument("--awake-scrapes", type=int, default=60, help="scrapes before and after the sleep")
    parser.add_argument("--asleep-scrapes", type=int, default=45, help="failed scrapes while the worker sleeps")
    args = parser.parse_args(argv)
    missing = prometheus_lab.missing_tools()
    if missing:
        print(f"not installed: {', '.join(missing)} (make deps)", file=sys.stderr)
        return 2
    from vmstation.inventory import load

    inventory = load(args.inventory)     # read only: nothing here connects to its hosts
    boards = {b["uid"]: b for b in dashboards.build(inventory, inventory.cluster("debian"))}
    with tempfile.TemporaryDirectory(prefix="vmstation-pictures-") as scratch:
        lab = prometheus_lab.start_lab(Path(scratch), *prometheus_lab.rendered_federation(inventory))
        try:
            started = time.time()
            _wait_scrapes(lab, args.awake_scrapes)
            prometheus_lab.sleep_and_wake(lab, asleep_scrapes=args.asleep_scrapes)
            _wait_scrapes(lab, args.awake_scrapes // 2)
            window = (started, time.time())
            args.out.mkdir(parents=True, exist_ok=True)
            for uid in PICTURES:
                path = args.out / f"{uid}.png"
                draw(lab, boards[uid], window, path)
                print(f"{path}: {path.stat().st_size // 1024} KB")
        finally:
            lab.stop_all()
    return 0


def _wait_scrapes(lab, count: int) -> None:
    """Let the Debian Prometheus record ``count`` more scrapes of masternode (polled, bounded)."""
    scrapes = 'count_over_time(up{job="node-exporter", node="masternode"}[1h])'
    (now,) = lab.query(scrapes)
    lab.wait_for(f"{scrapes} >= {int(now['value'][1]) + count}", f"{count} more scrapes", timeout=count * 2 + 30)


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------


def draw(lab, board: dict, window: tuple[float, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    height = rows * ROW_INCHES + 0.8
    figure = plt.figure(figsize=(24 * COLUMN_INCHES, height), dpi=DPI)
    figure.suptitle(f"{board['title']}  (Prometheus data of the loopback lab, "
                    f"{datetime.fromtimestamp(window[0]).strftime('%Y-%m-%d %H:%M')}, "
                    f"{(window[1] - window[0]) / 60:.0f} min; three node-exporters of one machine stand in for "
                    "the hosts)",
                    fontsize=12, x=0.01, y=1 - 0.15 / height, ha="left")
    grid = figure.add_gridspec(rows, 24, hspace=1.6, wspace=1.2, top=1 - 0.75 / height, bottom=0.25 / height,
                               left=0.08, right=0.99)
    marks = _annotation_marks(lab, board, window)
    for panel in board["panels"]:
        g = panel["gridPos"]
        axes = figure.add_subplot(grid[g["y"]:g["y"] + g["h"], g["x"]:g["x"] + g["w"]])
        axes.set_title(panel["title"], fontsize=9, loc="left")
        _draw_panel(lab, axes, panel, window, marks)
    figure.savefig(path, dpi=DPI, pil_kwargs={"optimize": True})
    plt.close(figure)


def _draw_panel(lab, axes, panel: dict, window, marks) -> None:
    exprs = [dashboards.expand(t["expr"], VARIABLES) for t in panel["targets"]]
    absent = next((why for prefix, why in ABSENT_HERE.items() if any(prefix in e for e in exprs)), None)
    if panel["type"] == "logs" or panel["targets"][0]["datasource"]["uid"] == "loki":
        absent = "Loki\n(not on this machine)"
    if absent and all(any(prefix in e for prefix in ABSENT_HERE) for e in exprs) or panel["type"] == "logs":
        _placeholder(axes, f"no data here:\n{absent}")
        return
    kind = panel["type"]
    if kind in ("timeseries",):
        _timeseries(lab, axes, panel, exprs, window, marks)
    elif kind == "state-timeline":
        _state_timeline(lab, axes, panel, exprs[0], window, marks)
    elif kind == "table":
        _table(lab, axes, exprs[0], window)
    else:
        _stats(lab, axes, panel, exprs, window)


def _timeseries(lab, axes, panel, exprs, window, marks) -> None:
    drawn = 0
    for target, expr in zip(panel["targets"], exprs, strict=True):
        if any(prefix in expr for prefix in ABSENT_HERE):
            continue
        for series in lab.query_range(expr, *window, step=STEP):
            minutes, values = _with_gaps(series["values"], window[0])
            axes.plot(minutes, values, linewidth=1.2, label=_legend(target, series["metric"]))
            drawn += 1
    _marks(axes, marks, window, labels=False)
    defaults = panel["fieldConfig"]["defaults"]
    axes.set_ylim(defaults.get("min"), defaults.get("max"))      # as Grafana draws it: 0 to 100 for percentages
    axes.set_xlim(0, (window[1] - window[0]) / 60)
    unit = defaults.get("unit", "")
    axes.set_ylabel({"percent": "%", "Bps": "bytes/s", "celsius": "°C"}.get(unit, unit), fontsize=8)
    axes.set_xlabel("minutes", fontsize=8)
    axes.tick_params(labelsize=7)
    if drawn:
        axes.legend(fontsize=7, loc="upper left", ncols=3, frameon=False)
    else:
        _placeholder(axes, "no series")


def _state_timeline(lab, axes, panel, expr, window, marks) -> None:
    mappings = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
    target = panel["targets"][0]
    series_list = sorted(lab.query_range(expr, *window, step=1), key=lambda s: _legend(target, s["metric"]))
    for row, series in enumerate(series_list):
        points = [(float(t) - window[0], str(int(float(v)))) for t, v in series["values"]]
        for (start, value), (end, _) in zip(points, points[1:] + [(window[1] - window[0], None)], strict=True):
            colour = COLOURS.get(mappings.get(value, {}).get("color"), "#999999")
            axes.barh(row, (end - start) / 60, left=start / 60, color=colour, height=0.7)
    axes.set_yticks(range(len(series_list)), [_legend(panel["targets"][0], s["metric"]) for s in series_list],
                    fontsize=8)
    axes.set_xlim(0, (window[1] - window[0]) / 60)
    axes.tick_params(labelsize=7)
    handles = [_patch(COLOURS.get(m["color"], "#999999"), m["text"]) for m in mappings.values()]
    axes.legend(handles=handles, fontsize=7, loc="upper right", ncols=len(handles), frameon=False,
                bbox_to_anchor=(1, 1.28))
    _marks(axes, marks, window)


def _stats(lab, axes, panel, exprs, window) -> None:
    lines = []
    unit = panel["fieldConfig"]["defaults"].get("unit")
    mappings = (panel["fieldConfig"]["defaults"].get("mappings") or [{"options": {}}])[0]["options"]
    for target, expr in zip(panel["targets"], exprs, strict=True):
        for series in lab.query(expr, at=window[1]):
            value = float(series["value"][1])
            text = mappings.get(str(int(value)), {}).get("text") if value.is_integer() else None
            lines.append(f"{_legend(target, series['metric'])}: {text or _format(value, unit)}")
    _text(axes, "\n".join(lines) or "no value")


def _table(lab, axes, expr, window) -> None:
    rows = []
    for series in lab.query(expr, at=window[1]):
        labels = {k: v for k, v in series["metric"].items() if k not in ("__name__", "instance", "job", "node")}
        rows.append("  ".join(f"{k}: {v}" for k, v in sorted(labels.items())))
    _text(axes, "\n".join(rows) or "no rows", size=8)


def _annotation_marks(lab, board, window) -> list[tuple[float, str]]:
    marks = []
    for annotation in board["annotations"]["list"]:
        seen = set()
        for series in lab.query_range(annotation["expr"], *window, step=1):
            first = float(series["values"][0][0])
            title = re.sub(r"\{\{(\w+)\}\}", lambda m, s=series: s["metric"].get(m.group(1), ""),
                           annotation["titleFormat"])
            if (title, round(first)) not in seen:
                seen.add((title, round(first)))
                marks.append((first, title))
    return sorted(marks)


def _with_gaps(values: list, start: float) -> tuple[list[float], list[float]]:
    """Minutes and values, with a break where samples are missing (a sleeping node), as Grafana leaves a gap."""
    minutes, numbers, previous = [], [], None
    for moment, value in values:
        moment = float(moment)
        if previous is not None and moment - previous > 1.5 * STEP:
            minutes.append((previous + STEP - start) / 60)
            numbers.append(float("nan"))
        minutes.append((moment - start) / 60)
        numbers.append(float(value))
        previous = moment
    return minutes, numbers


def _marks(axes, marks, window, labels: bool = True) -> None:
    for moment, title in marks:
        axes.axvline((moment - window[0]) / 60, color="#ff9830", linewidth=0.8, linestyle="--")
        if not labels:
            continue
        axes.annotate(title, ((moment - window[0]) / 60, 1), xycoords=("data", "axes fraction"), fontsize=6,
                      rotation=90, va="top", ha="right", color="#b35c00")


def _legend(target: dict, metric: dict) -> str:
    legend = target.get("legendFormat") or "__auto"
    if legend == "__auto":
        return ", ".join(f"{k}={v}" for k, v in sorted(metric.items())
                         if k not in ("__name__", "instance", "job")) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), legend)


def _format(value: float, unit: str | None) -> str:
    if unit == "s":
        return f"{value / 3600:.1f} h" if value >= 3600 else f"{value:.1f} s"
    if unit == "dateTimeFromNow":
        return f"{max(0.0, time.time() - value / 1000):.0f} s ago"
    return f"{value:g}"


def _placeholder(axes, text: str) -> None:
    axes.set_facecolor("#eeeeee")
    _text(axes, text, colour="#777777")


def _text(axes, text: str, size: int = 10, colour: str = "#222222") -> None:
    axes.text(0.02, 0.9, text, transform=axes.transAxes, fontsize=size, va="top", ha="left", color=colour,
              family="monospace", wrap=True)
    axes.set_xticks([])
    axes.set_yticks([])


def _patch(colour: str, label: str):
    from matplotlib.patches import Patch

    return Patch(color=colour, label=label)


if __name__ == "__main__":
    sys.exit(main())
