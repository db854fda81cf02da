"""The use cases, shared by the ``vmstation`` CLI and ``fabfile.py``.

Each function takes plain values, does one job and returns a result; printing
and exit codes belong to the callers. Nothing here is specific to click.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_INVENTORY = "hosts.toml"


@dataclass(frozen=True)
class Session:
    """Where a command gets its inventory, secrets and SSH settings from."""

    inventory_path: str = DEFAULT_INVENTORY
    vault_password_file: str | None = None
    trust_new_host_keys: bool = False
    ssh_config: str | None = None

    @classmethod
    def from_environment(cls, **overrides) -> "Session":
        path = overrides.pop("inventory_path", None) or os.environ.get("VMSTATION_INVENTORY") or DEFAULT_INVENTORY
        return cls(inventory_path=path, **{k: v for k, v in overrides.items() if v is not None})


def load_inventory(session: Session):
    from vmstation.inventory import load

    return load(session.inventory_path)


def open_secrets(session: Session, inventory):
    from vmstation.secrets import SecretStore

    return SecretStore.open(inventory, password_file=session.vault_password_file)


def run_target(session: Session, target: str, *, plan: bool = False, only=(), start_from=None, limit=(),
               resume: bool = False, forks: int = 32, listener=None, values: dict | None = None):
    """Deploy (or plan) a target against the inventory: the heart of every deploy and power command.

    ``values``: seeds the run's shared values (what phases read) and, being the caller's dict, lets the
    caller read what the run captured.
    """
    from vmstation.context import RunContext
    from vmstation.runner import RunOptions, run
    from vmstation.targets import build_graph
    from vmstation.transport import SshOptions

    from vmstation.netguard import allowed_networks

    allowed_networks()            # a malformed VMSTATION_ALLOWED_NETWORKS is bad input before anything starts
    inventory = load_inventory(session)
    _check_limit(inventory, limit)
    graph = build_graph()
    secrets = open_secrets(session, inventory)
    run_ctx = RunContext(inventory, plan=plan, secrets=secrets, values={} if values is None else values,
                         artifacts_dir=Path(inventory.path).resolve().parent / ".vmstation" / "artifacts")
    _unlock_up_front(graph, run_ctx, target, only, start_from, limit)
    _check_known_hosts(inventory)
    if not plan:
        from vmstation.offline import preflight

        preflight(inventory, target, limit, values, secrets)
    options = RunOptions(target=target, plan=plan, only=tuple(only), start_from=start_from, limit=tuple(limit),
                         resume=resume, forks=forks,
                         ssh=SshOptions(known_hosts=os.path.expanduser(inventory.known_hosts),
                                        trust_new_host_keys=session.trust_new_host_keys,
                                        ssh_config=session.ssh_config))
    return run(graph, run_ctx, options, listener)


def render_target(session: Session, target: str, out_dir: str) -> list[Path]:
    """Every file ``target`` would write to each host, into ``out_dir/<host>/<path>``. No SSH at all."""
    from vmstation.offline import render_files

    inventory = load_inventory(session)
    return render_files(inventory, target, Path(out_dir))


def _check_limit(inventory, limit) -> None:
    from vmstation.errors import InventoryError

    names = {h.name for h in inventory.hosts}
    for name in limit:
        if name not in names:
            raise InventoryError(inventory.path, f"--limit names unknown host {name!r}; known: "
                                 f"{', '.join(sorted(names))}", host=name)


def _unlock_up_front(graph, run_ctx, target, only, start_from, limit) -> None:
    """Resolve every sudo password the run will need before any host is touched.

    A wrong vault password or a missing secret is bad input: it must stop the run
    with nothing changed anywhere, not half-way through. Phases declare the secrets
    they read (``Phase.secrets``: the Jellyfin API key); the preflight, which walks
    every phase of a run that changes hosts, catches any read not declared.
    """
    phases = graph.order(target, only, start_from)
    hosts = {h.name: h for phase in phases for h in phase.select(run_ctx.inventory)}
    for host in hosts.values():
        if limit and host.name not in limit:
            continue
        if not host.is_root and host.become_password:
            run_ctx.secret(host.become_password)
    for phase in phases:
        for host in phase.select(run_ctx.inventory) if phase.secrets else ():
            if not limit or host.name in limit:
                for reference in phase.secrets(run_ctx.inventory, host):
                    run_ctx.secret(reference)


def _check_known_hosts(inventory) -> None:
    """A malformed known_hosts line is bad input: one line naming file and line, before any host is touched.

    SSH keys are looked at too: paramiko would block for ever reading a FIFO named as a key.
    """
    import stat

    from vmstation import known_hosts
    from vmstation.errors import InventoryError

    known_hosts.check(os.path.expanduser(inventory.known_hosts))
    for host in inventory.hosts:
        key = os.path.expanduser(host.ssh_key) if host.ssh_key else None
        if key and os.path.exists(key) and not stat.S_ISREG(os.stat(key).st_mode):
            raise InventoryError(inventory.path, f"{key} is not a regular file", host=host.name, key="ssh_key")
