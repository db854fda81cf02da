"""Workload W written with vmstation's public API, the way a user writes a phase.

One phase for every host: five files rendered from ``bench/templates`` into the
host's root directory (0644, root:root), and ``true`` (standing for
``sysctl --system``) run only when one of them changed. Run as its own process:

    python -m bench.workload hosts.toml hosts.json

It prints one JSON line (changed operations, exit code, commands sent) and exits
with vmstation's exit code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

from vmstation.context import HostContext, RunContext
from vmstation.graph import Graph, Phase, Target, all_hosts
from vmstation.inventory import load
from vmstation.operations import Command, File, Operation
from vmstation.runner import RunOptions, run
from vmstation.templates import render_string
from vmstation.transport import SshOptions

TARGET = "bench-w"


def main(argv: list[str]) -> int:
    inventory_path, described_path = argv
    inventory = load(inventory_path)
    described = json.loads(Path(described_path).read_text())
    graph = workload_graph(described)
    options = RunOptions(TARGET, forks=len(inventory.hosts), ssh=SshOptions(known_hosts=inventory.known_hosts))
    result = run(graph, RunContext(inventory), options)
    print(json.dumps({"changed": result.changed, "exit_code": result.exit_code,
                      "commands": sum(o.commands_sent for o in result.outcomes),
                      "failed": [f"{o.host}: {o.message}" for o in result.failed]}))
    return result.exit_code


def workload_graph(described: dict) -> Graph:
    """The graph of W: one phase, one target."""
    hosts = {h["name"]: h for h in described["hosts"]}
    sources = {template: (Path(described["templates"]) / template).read_text() for template, _ in described["files"]}

    def operations(ctx: HostContext) -> Iterator[Operation]:
        host = hosts[ctx.host.name]
        files = [File(f"{host['root']}/{path}", render_string(sources[template], **host["vars"]),
                      mode="0644", owner="root", group="root", source=template)
                 for template, path in described["files"]]
        yield from files
        yield Command(described["apply_command"], "apply sysctl settings",
                      when_changed=tuple(f.label for f in files))

    phase = Phase("bench-files", "render and place the five files of W", all_hosts, operations)
    return Graph([phase], [Target(TARGET, "workload W of the benchmark", (phase.name,))])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
