"""`python -m bench.run` (`make bench`): W with vmstation, pyinfra, a plain Fabric script and ansible-core.

    python -m bench.run            N = 1, 10, 30, 100; 5 runs; ansible at N <= 10
    python -m bench.run --quick    N = 1, 10; 3 runs

For each N the first N hosts of one set of sshd hosts are used. Each repetition
runs every tool once, in an order that rotates from one repetition to the next:
roots emptied, first run (timed, files checked byte for byte), no-op run (timed,
files checked untouched). Then the paramiko floor. Last, ``vmstation --help``.
Results: ``bench/results/<time>/results.json`` and ``RESULTS.md`` (and, for a
full run, ``bench/RESULTS.md``). Needs root (network namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import measure, report, verify
from bench.hosts import BenchHostSet, SessionLog, SshdCpu, write_host_files
from bench.tools import REPO, TOOLS, Tool, ensure_venvs, tools_for
from vmstation.testing.known_hosts import KnownHost, generate_ed25519, write_known_hosts

BENCH = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces, sshd)", file=sys.stderr)
        return 2
    measure.become_subreaper()
    commit = _commit()          # before this run writes anything into the worktree
    compile_project()
    versions = ensure_venvs(tuple(args.tools))
    out = args.out or BENCH / "results" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="vmsbn-work-") as scratch:
        leftovers = _measure_all(args, Path(scratch), records)
    if args.boxes:
        from bench.deploy_debian import measure_boxes

        records += measure_boxes(args.runs)
    records += _measure_help(args.runs)
    summary = report.summarise(records)
    rows = report.targets(summary, n=30 if 30 in args.sizes else max(args.sizes), large=max(args.sizes))
    context = _context(args, versions, leftovers, records, commit)
    text = report.markdown(summary, list(args.tools), args.sizes, rows, context)
    (out / "results.json").write_text(json.dumps({"context": context, "records": records, "targets": rows}, indent=1))
    (out / "RESULTS.md").write_text(text)
    if args.publish:      # the figures the project shows: bench/RESULTS.md and the README's, from this run only
        (BENCH / "RESULTS.md").write_text(text)
        readme = REPO / "README.md"
        command = "make bench" if not argv and not sys.argv[1:] else \
            "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
        section = report.readme_section(summary, args.sizes, rows, time.strftime("%Y-%m-%d"), _machine(),
                                        args.runs, command, commit)
        readme.write_text(report.replace_readme_section(readme.read_text(), section))
    print(text)
    print(f"raw figures: {out / 'results.json'}")
    failed = [r for r in records if not r["ok"]]
    return 1 if failed or leftovers else 0


def compile_project() -> None:
    """Byte-compile vmstation (and bench) as installing a wheel does: with PYTHONDONTWRITEBYTECODE set (as
    on this machine) every measured process would otherwise compile the project's modules again."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "vmstation"), str(BENCH)], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 10 and 3 runs: a fast check")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], help="host counts, e.g. 1,10,30")
    parser.add_argument("--runs", type=int, help="runs per tool and N (default 5, --quick 3)")
    parser.add_argument("--tools", type=lambda s: s.split(","), default=list(TOOLS), help="comma-separated subset")
    parser.add_argument("--ansible-max", type=int, default=10, help="largest N ansible runs at (slow)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results/<time>)")
    parser.add_argument("--no-boxes", dest="boxes", action="store_false",
                        help="leave out the deploy-debian no-op on the demo boxes (bench/deploy_debian.py)")
    parser.add_argument("--publish", action="store_true",
                        help="write bench/RESULTS.md and the README's figures (a full run always does)")
    args = parser.parse_args(argv)
    args.publish = args.publish or not (args.quick or args.sizes or args.runs or args.tools != list(TOOLS))
    args.sizes = args.sizes or ([1, 10] if args.quick else [1, 10, 30, 100])
    args.runs = args.runs or (3 if args.quick else 5)
    unknown = set(args.tools) - set(TOOLS)
    if unknown or max(args.sizes) > 100 or min(args.sizes) < 1:
        parser.error(f"tools from {', '.join(TOOLS)}; sizes 1 to 100 (unknown: {', '.join(sorted(unknown))})")
    return args


def _measure_all(args: argparse.Namespace, scratch: Path, records: list[dict]) -> list[str]:
    """Every tool at every N, plus the floor; return what the hosts left behind after tear-down."""
    host_set = BenchHostSet(max(args.sizes))
    with host_set:
        for n in args.sizes:
            hosts_json, hosts_toml = write_host_files(host_set, n, scratch / f"n{n}")
            described = json.loads(hosts_json.read_text())
            expected = verify.expected_files(described)
            names = tuple(t for t in args.tools if t != "ansible" or n <= args.ansible_max)
            tools = tools_for(names, hosts_json, hosts_toml, scratch / f"n{n}")
            log = SessionLog([host_set.log_of(h) for h in host_set.hosts[:n]],
                             SshdCpu([host_set.sshd_pid(h) for h in host_set.hosts[:n]]))
            floor = Tool("floor", (sys.executable, "-m", "bench.floor", str(hosts_json)),
                         {**os.environ, "PYTHONPATH": str(REPO)})
            if n == args.sizes[0]:
                records += _host_key_refusals(names, hosts_json, hosts_toml, expected, scratch / "wrong-keys")
                _warm_up(tools + [floor], expected, scratch)
            for rep in range(args.runs):
                for tool in tools[rep % len(tools):] + tools[:rep % len(tools)]:
                    records += _first_and_noop(tool, n, rep, expected, log, scratch)
                records.append(_timed(floor, n, "floor", rep, log, scratch, []))
            verify.clear_roots(expected)
    leftovers = host_set.leftovers()
    leftovers += [f"process {pid} ({name})" for pid, name in measure.reap_zombies()]
    return leftovers


def _host_key_refusals(names: tuple[str, ...], hosts_json: Path, hosts_toml: Path, expected: dict,
                       scratch: Path) -> list[dict]:
    """Every tool, given a known_hosts whose keys are not the hosts' keys, must refuse and write nothing."""
    scratch.mkdir(parents=True, exist_ok=True)
    described = json.loads(hosts_json.read_text())
    wrong = write_known_hosts(scratch / "known_hosts", [
        KnownHost((h["address"],), h["port"], generate_ed25519(scratch / f"key{i}", "wrong").public_line)
        for i, h in enumerate(described["hosts"])])
    bad_json = scratch / "hosts.json"
    bad_json.write_text(json.dumps({**described, "known_hosts": str(wrong)}))
    bad_toml = scratch / "hosts.toml"
    bad_toml.write_text(hosts_toml.read_text().replace(json.dumps(described["known_hosts"]), json.dumps(str(wrong))))
    records = []
    for tool in tools_for(names, bad_json, bad_toml, scratch):
        verify.clear_roots(expected)
        measured = measure.run_process(list(tool.argv), tool.env, scratch)
        written = sorted(str(p) for root in expected for p in Path(root).rglob("*") if p.is_file())
        problems = ([] if measured.exit_code != 0 else ["exit code 0 with wrong host keys"]) + \
            [f"wrote {path} despite wrong host keys" for path in written]
        records.append({"tool": tool.name, "n": len(described["hosts"]), "kind": "wrong-host-key", "rep": 0,
                        "wall": round(measured.wall, 4), "cpu": round(measured.cpu, 4),
                        "exit_code": measured.exit_code, "ok": not problems, "problems": problems, "sessions": []})
        print(f"{tool.name:9} wrong host keys: exit {measured.exit_code}, "
              f"{'refused' if not problems else 'NOT refused'}", file=sys.stderr)
    return records


def _warm_up(tools: list[Tool], expected: dict, scratch: Path) -> None:
    """One untimed first and no-op run of each tool, so every tool starts from a warm page cache."""
    for tool in tools:
        verify.clear_roots(expected)
        for _ in range(2):
            measure.run_process(list(tool.argv), tool.env, scratch)


def _first_and_noop(tool: Tool, n: int, rep: int, expected: dict, log: SessionLog, scratch: Path) -> list[dict]:
    verify.clear_roots(expected)
    first = _timed(tool, n, "first", rep, log, scratch, [])
    first_problems = verify.check_first_run(expected)
    first["problems"] += first_problems
    first["ok"] = first["ok"] and not first_problems
    if first_problems:
        return [first]
    before = verify.snapshot(expected)
    noop = _timed(tool, n, "noop", rep, log, scratch, [])
    noop["problems"] += verify.unchanged(before, verify.snapshot(expected))
    noop["ok"] = noop["ok"] and not noop["problems"]
    return [first, noop]


def _timed(tool: Tool, n: int, kind: str, rep: int, log: SessionLog, scratch: Path, problems: list[str]) -> dict:
    log.mark()
    log.cpu.mark()
    measured = measure.run_process(list(tool.argv), tool.env, scratch)
    counts = log.since_mark()
    sshd_cpu = log.cpu.since_mark()
    if measured.exit_code != 0:
        problems = problems + [f"exit code {measured.exit_code}"]
    record = {"tool": tool.name, "n": n, "kind": kind, "rep": rep, "wall": round(measured.wall, 4),
              "cpu": round(measured.cpu, 4), "exit_code": measured.exit_code, "ok": not problems,
              "problems": problems, "sessions": [[c.connections, c.commands, c.sftp] for c in counts],
              "sshd_cpu": round(sum(sshd_cpu), 4)}
    if problems:
        record["output_tail"] = measured.output[-4000:]
        print(f"bench: {tool.name} N={n} {kind} run {rep + 1}: {'; '.join(problems)}", file=sys.stderr)
    print(f"{tool.name:9} N={n:<3} {kind:5} run {rep + 1}: {measured.wall:6.2f} s", file=sys.stderr)
    return record


def _measure_help(runs: int) -> list[dict]:
    """`vmstation --help`: the installed console script, a whole process."""
    script = shutil.which("vmstation", path=str(Path(sys.executable).parent)) or "vmstation"
    tool = Tool("help", (script, "--help"), dict(os.environ))
    records = []
    for rep in range(runs + 1):
        measured = measure.run_process(list(tool.argv), tool.env, REPO)
        if rep:  # the first one only warms the page cache
            records.append({"tool": "help", "n": 0, "kind": "help", "rep": rep - 1, "wall": round(measured.wall, 4),
                            "cpu": round(measured.cpu, 4), "exit_code": measured.exit_code,
                            "ok": measured.exit_code == 0, "problems": [], "sessions": []})
    return records


def _refusals(records: list[dict]) -> str:
    checked = [r for r in records if r["kind"] == "wrong-host-key"]
    refused = [r["tool"] for r in checked if r["ok"]]
    failed = [r["tool"] for r in checked if not r["ok"]]
    return (f"refused (non-zero exit, nothing written): {', '.join(refused) or 'none'}"
            + (f"; **did not refuse: {', '.join(failed)}**" if failed else ""))


def _machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python {platform.python_version()}"


def _context(args: argparse.Namespace, versions: dict[str, str], leftovers: list[str],
             records: list[dict], commit: str) -> list[str]:
    openssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return [
        f"- run: {time.strftime('%Y-%m-%d %H:%M %Z')}, commit {commit}",
        f"- machine: {_machine()}",
        "- peers: " + ", ".join(f"{name} {version}" for name, version in versions.items()) + f"; {openssh}",
        f"- sizes {args.sizes}, {args.runs} runs each, tools alternating (order rotates per run), "
        f"ansible at N <= {args.ansible_max}; one untimed warm-up run per tool",
        "- host keys: every tool was also run once against a known_hosts holding other keys, and "
        + _refusals(records),
        "- every first run checked byte-identical (content, mode 0644, root:root, no stray file); every no-op "
        "run checked to rewrite nothing",
        f"- tear-down leftovers: {', '.join(leftovers) if leftovers else 'none'}",
    ]


def _commit() -> str:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (head.stdout.strip() or "unknown") + (" with uncommitted changes" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
