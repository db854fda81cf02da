"""`vmstation render`: every file a target writes, rendered from the inventory alone.

No host is asked anything. Phases that branch on a host's facts see the facts
an ordinary install of the inventory's OS would report (``assumed_facts``); the
render says so in ``ASSUMPTIONS.txt`` beside the files.
"""

from __future__ import annotations

from pathlib import Path

from vmstation.context import HostContext, RunContext
from vmstation.errors import HostError
from vmstation.atomic import write_atomically
from vmstation.facts import HostFacts
from vmstation.operations import File
from vmstation.values import inside, output_directory

ASSUMED = {
    "debian": dict(os_release={"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"},
                   containerd_version="1.6.20"),
    "rhel": dict(os_release={"ID": "rhel", "ID_LIKE": "fedora", "VERSION_ID": "10.0",
                             "PRETTY_NAME": "Red Hat Enterprise Linux 10.0"}, containerd_version=None),
}


def assumed_facts(os_family: str) -> HostFacts:
    """Facts of a fresh install of ``os_family`` with nothing of ours on it yet."""
    base = ASSUMED.get(os_family, ASSUMED["debian"])
    return HostFacts(os_release=dict(base["os_release"]), kernel="assumed", arch="x86_64", virtualization="none",
                     can_load_modules=True, cgroup="v2", swap_devices=0,
                     containerd_version=base["containerd_version"], kubeadm_version=None, selinux=None)


def render_files(inventory, target: str, out_dir: Path) -> list[Path]:
    output_directory(out_dir)
    written, notes = [], []
    for phase, host, operations in operations_offline(inventory, target):
        if isinstance(operations, HostError):
            notes.append(f"{phase.name} @ {host.name}: not rendered: {operations.message}")
            continue
        for operation in operations:
            if isinstance(operation, File):
                destination = inside(out_dir, host.name, operation.path.lstrip("/"))
                content = b"(secret: not rendered)\n" if operation.secret else operation.data
                write_atomically(str(destination), content, 0o600 if operation.secret else 0o644)
                written.append(destination)
    notes.insert(0, "Rendered without contacting any host; facts assumed per OS family: "
                 + "; ".join(f"{k}: {v['os_release']['PRETTY_NAME']}" for k, v in ASSUMED.items()))
    write_atomically(str(out_dir / "ASSUMPTIONS.txt"), ("\n".join(notes) + "\n").encode(), 0o644)
    return written


def preflight(inventory, target: str, limit=(), values: dict | None = None, secrets=None) -> None:
    """Render and check every file of ``target`` before any host is touched.

    A template that does not render or a config that fails its check (kubeadm fields, containerd's
    SystemdCgroup section, Kubernetes schemas, RKE2 keys) raises InputError here, so that bad input stops
    the run with nothing changed anywhere, not half-way through a phase on some hosts. With ``secrets``
    (the run's SecretStore), every secret a phase reads is resolved here too: a missing key or a wrong
    vault password is exit 2 before the first host, not at phase 9.
    """
    for _phase, _host, _operations in operations_offline(inventory, target, limit, values, secrets):
        pass


def operations_offline(inventory, target: str, limit=(), values: dict | None = None, secrets=None):
    """``(phase, host, operations or the HostError that stopped them)`` for every phase and host, no SSH.

    Without ``secrets`` a phase sees no vault (``ctx.run.secrets is None``) and renders secret files empty.
    """
    from vmstation.targets import build_graph

    run_ctx = RunContext(inventory, plan=True, offline=True, values={**(values or {}), "limit": tuple(limit)},
                         secrets=secrets)
    for phase in build_graph().order(target):
        for host in phase.select(inventory):
            if limit and host.name not in limit:
                continue
            family = host.os_family or ("rhel" if inventory.cluster(host.cluster).kind == "rke2" else "debian")
            ctx = HostContext(run_ctx, host, None, facts_source=lambda f=family: assumed_facts(f))
            try:
                yield phase, host, list(phase.operations(ctx))
            except HostError as exc:
                yield phase, host, exc
