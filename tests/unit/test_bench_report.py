"""`make bench` writes the README's figures itself (issue 16, item 6): pure parts of bench/report.py."""

from __future__ import annotations

import pytest

from bench import report


def records() -> list[dict]:
    def record(tool, kind, wall, n=30, **extra):
        return {"tool": tool, "n": n, "kind": kind, "rep": 0, "wall": wall, "cpu": 0.3, "exit_code": 0, "ok": True,
                "problems": [], "sessions": [[1, 1, 0]] * n, "sshd_cpu": 0.6, **extra}
    return [record("vmstation", "noop", 0.6), record("vmstation", "first", 1.0), record("floor", "floor", 0.5),
            record("fabric", "noop", 1.2), record("fabric", "first", 2.5),
            record("deploy-debian", "noop", 0.4, n=2, commands_per_host={"a": 1, "b": 1}),
            record("floor-boxes", "floor", 0.25, n=2)]


def test_the_readme_section_is_the_runs_figures_between_the_markers_and_the_rest_is_kept():
    summary = report.summarise(records())
    rows = report.targets(summary, n=30, large=30)
    section = report.readme_section(summary, [30], rows, "2026-11-28", "2 CPUs", 5, "make bench", "abc1234")
    readme = f"# title\n\nbefore\n{report.README_BEGIN}\nold figures\n{report.README_END}\nafter\n"
    written = report.replace_readme_section(readme, section)
    assert written.startswith("# title\n\nbefore\n") and written.endswith(f"{report.README_END}\nafter\n")
    assert "old figures" not in written and "(commit abc1234)" in written
    assert "| vmstation | 1.00 / 0.60 |" in written
    assert "| no-op N=30: vmstation / paramiko floor <= 1.3 | 1.20 (0.60 s / 0.50 s) | yes |" in written
    assert "| no-op N=30: plain Fabric / vmstation >= 1.8 | 2.00 (1.20 s / 0.60 s) | yes |" in written
    assert "commands per host <= 1 | 1.0 | yes |" in written
    assert "paramiko floor to them <= 2.0 | 1.60 (0.40 s / 0.25 s) | yes |" in written
    with pytest.raises(ValueError):
        report.replace_readme_section("no markers\n", section)
