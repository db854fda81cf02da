"""The use cases, shared by the ``vmstation`` CLI and ``fabfile.py``.

Each function takes plain values, does one job and returns a result; printing
and exit codes belong to the callers. Nothing here is specific to click.
"""

from __future__ import annotations

import fnmatch
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
        """The options given, else the environment, else hosts.toml found from here upward (as fab finds its
        fabfile)."""
        path = overrides.pop("inventory_path", None) or os.environ.get("VMSTATION_INVENTORY") or find_inventory()
        return cls(inventory_path=path, **{k: v for k, v in overrides.items() if v is not None})


def find_inventory(start: Path | None = None) -> str:
    """hosts.toml in ``start`` (the current directory) or the nearest directory above that has one."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / DEFAULT_INVENTORY
        if candidate.is_file():
            return str(candidate if directory != here else Path(DEFAULT_INVENTORY))
    from vmstation.errors import InventoryError

    raise InventoryError(DEFAULT_INVENTORY, f"file not found in {here} or any directory above it; give -i PATH, "
                         "set VMSTATION_INVENTORY, or make one with `vmstation init`")


def load_inventory(session: Session):
    from vmstation.inventory import load

    return load(session.inventory_path)


def open_secrets(session: Session, inventory):
    from vmstation.secrets import SecretStore

    return SecretStore.open(inventory, password_file=session.vault_password_file)


def ssh_options(session: Session, inventory):
    from vmstation.transport import SshOptions

    return SshOptions(known_hosts=os.path.expanduser(inventory.known_hosts),
                      trust_new_host_keys=session.trust_new_host_keys, ssh_config=session.ssh_config)


def run_target(session: Session, target: str, *, plan: bool = False, only=(), start_from=None, skip=(), limit=(),
               resume: bool = False, forks: int = 32, listener=None, values: dict | None = None,
               step_deadline: float | None = None, settings: dict | None = None):
    """Deploy (or plan) a target against the inventory: the heart of every deploy and power command.

    ``limit``: host names, globs, cluster names or roles. ``skip``: phases left out of what --only/--from
    chose. ``settings``: typed fields of the run context that phases read (``today``, ``wake_hosts``,
    ``wake_interface``; a misspelt name is a TypeError, not a silent default). ``values``: the caller's dict,
    in which the run keeps what Checks captured (``RunContext.captured``). ``step_deadline``: seconds a
    step's command may run unless its operation says otherwise (default 300).
    """
    from vmstation.context import RunContext
    from vmstation.runner import RunOptions, run
    from vmstation.netguard import allowed_networks
    from vmstation.targets import build_graph

    check_options(plan=plan, only=only, start_from=start_from, resume=resume, forks=forks)
    allowed_networks()            # a malformed VMSTATION_ALLOWED_NETWORKS is bad input before anything starts
    inventory = load_inventory(session)
    limit = resolve_limit(inventory, limit)
    graph = build_graph()
    only, start_from = _phases_without(graph, target, only, start_from, skip)
    secrets = open_secrets(session, inventory)
    run_ctx = RunContext(inventory, plan=plan, secrets=secrets, values={} if values is None else values,
                         artifacts_dir=Path(inventory.path).resolve().parent / ".vmstation" / "artifacts",
                         **(settings or {}))
    _unlock_up_front(graph, run_ctx, target, only, start_from, limit)
    _check_known_hosts(inventory)
    from vmstation import check_cache
    from vmstation.journal import state_dir

    check_cache.use(state_dir(inventory.path) / "checks.json")   # passes remembered by what they checked
    if not plan:
        from vmstation.offline import preflight

        preflight(inventory, target, limit, settings, secrets)
        check_cache.save()
    if listener:   # the inventory and secrets are good: say which inventory before any host is touched
        listener("run", {"target": target, "plan": plan, "inventory": session.inventory_path})
    options = RunOptions(target=target, plan=plan, only=tuple(only), start_from=start_from, limit=tuple(limit),
                         resume=resume, forks=forks, step_deadline=step_deadline,
                         ssh=ssh_options(session, inventory))
    result = run(graph, run_ctx, options, listener)
    check_cache.save()
    return result


def homelab_status(session: Session):
    """Every host looked at once, in parallel; a ``homelab_status.HomelabStatus`` (``healthy`` decides the exit code).

    Bad input (inventory, vault, known_hosts, VMSTATION_ALLOWED_NETWORKS) stops it before any host is asked.
    """
    from vmstation.journal import state_dir
    from vmstation.netguard import allowed_networks
    from vmstation.homelab_status import gather

    allowed_networks()
    inventory = load_inventory(session)
    _check_known_hosts(inventory)
    needs_password = [h for h in inventory.hosts if not h.is_root and h.become_password]
    secrets = open_secrets(session, inventory) if needs_password else None
    passwords = {h.name: secrets.resolve(h.become_password) for h in needs_password}
    return gather(inventory, ssh_options(session, inventory), lambda host: passwords.get(host.name),
                  journal_dir=state_dir(session.inventory_path) / "runs")


def list_phases(target: str | None = None) -> list[str]:
    """``TARGET: description`` then its phases in run order, one line each (every target when None)."""
    from vmstation.targets import build_graph

    graph = build_graph()
    lines: list[str] = []
    for name in [target] if target else sorted(graph.targets):
        phases = graph.order(name)
        width = max(len(p.name) for p in phases)
        lines.append(f"{name}: {graph.targets[name].description}")
        lines += [f"  {p.name.ljust(width)}  {p.title}" for p in phases]
    return lines


def check_inventory(session: Session, open_vault: bool = False) -> tuple[list[str], str]:
    """Every problem of the inventory, one line each (and, with ``open_vault``, of the vault it refers to)."""
    from vmstation.errors import InputError
    from vmstation.inventory import problems_of

    try:
        path = session.inventory_path
        problems, inventory = problems_of(path)
    except InputError as exc:
        return [str(exc)], ""
    if inventory is not None and open_vault and not problems:
        problems += _vault_problems(session, inventory)
    if problems:
        return problems, ""
    return [], f"{path}: ok ({len(inventory.hosts)} hosts, {len(inventory.clusters)} clusters)"


def trust_hosts(session: Session, names) -> list[tuple[str, str]]:
    """Connect to each named host once, recording a key seen for the first time; (name, what happened)."""
    from vmstation.errors import HostError
    from vmstation.transport import connect

    inventory = load_inventory(session)
    hosts = [inventory.host(name) for name in resolve_limit(inventory, names)]
    options = ssh_options(session, inventory)
    secrets = None
    outcome = []
    for host in hosts:
        try:
            password = None
            if not host.is_root and host.become_password:
                secrets = secrets or open_secrets(session, inventory)
                password = secrets.resolve(host.become_password)
            before = _lines_in(options.known_hosts)
            connect(host, options, password).close()
            recorded = _lines_in(options.known_hosts) > before
            outcome.append((host.name, f"key recorded in {options.known_hosts}" if recorded
                            else f"key already in {options.known_hosts}"))
        except HostError as exc:
            outcome.append((host.name, f"FAILED: {exc.message}"))
    return outcome


def _lines_in(path: str) -> int:
    try:
        with open(path, "rb") as handle:
            return handle.read().count(b"\n")
    except OSError:
        return 0


def resolve_limit(inventory, patterns) -> tuple[str, ...]:
    """Host names from --limit patterns: a host name, a glob over names (``storage*``), a cluster name or a role.

    Every pattern must match at least one host, so a typo is bad input, not an empty run.
    """
    from vmstation.errors import InventoryError

    chosen: list[str] = []
    for pattern in patterns:
        matched = [h.name for h in inventory.hosts
                   if fnmatch.fnmatchcase(h.name, pattern) or h.cluster == pattern or pattern in h.roles]
        if not matched:
            names = ", ".join(h.name for h in inventory.hosts)
            clusters = ", ".join(c.name for c in inventory.clusters)
            raise InventoryError(inventory.path, f"--limit names unknown host {pattern!r} (no host, glob, cluster "
                                 f"or role matches); known: {names}; clusters: {clusters}", host=pattern)
        chosen += [name for name in matched if name not in chosen]
    return tuple(chosen)


def check_options(*, plan: bool, only=(), start_from=None, resume: bool = False, forks: int = 32) -> None:
    """Options that contradict each other are bad input (exit 2), refused before anything is read or touched."""
    from vmstation.errors import InputError

    conflicts = [
        (bool(only) and bool(start_from), "--only and --from cannot be used together: --only names every phase "
                                          "to run, --from every phase from one on"),
        (plan and resume, "--plan and --resume cannot be used together: a plan shows every phase, --resume skips "
                          "some"),
        (forks < 1, f"--forks must be at least 1 (got {forks})"),
    ]
    for conflict, message in conflicts:
        if conflict:
            raise InputError(message)


def render_target(session: Session, target: str, out_dir: str) -> list[Path]:
    """Every file ``target`` would write to each host, into ``out_dir/<host>/<path>``. No SSH at all."""
    from vmstation.offline import render_files

    inventory = load_inventory(session)
    return render_files(inventory, target, Path(out_dir))


def _phases_without(graph, target, only, start_from, skip):
    """--skip as the --only list of what --only/--from chose, less the skipped phases (checked names)."""
    if not skip:
        return tuple(only), start_from
    from vmstation.errors import GraphError

    chosen = [p.name for p in graph.order(target, only, start_from)]
    every = [p.name for p in graph.order(target)]
    for name in skip:
        if name not in every:
            raise GraphError(f"--skip: phase {name!r} is not part of target {target!r}; its phases are: "
                             f"{', '.join(every)}")
    kept = tuple(name for name in chosen if name not in skip)
    if not kept:
        raise GraphError(f"--skip leaves no phase of {target!r} to run")
    return kept, None


def _vault_problems(session: Session, inventory) -> list[str]:
    """Open the vault and resolve every reference of the inventory: one line per reference that fails."""
    from vmstation.errors import InputError

    references = [(f"host {h.name!r}: key 'become_password'", h.become_password)
                  for h in inventory.hosts if h.become_password]
    if inventory.power.jellyfin_api_key:
        references.append(("key 'power.jellyfin_api_key'", inventory.power.jellyfin_api_key))
    store = open_secrets(session, inventory)
    problems: list[str] = []
    for where, reference in references:
        try:
            store.resolve(reference)
        except InputError as exc:
            line = str(exc) if "no secret named" not in str(exc) else f"{inventory.path}: {where}: {exc}"
            if line not in problems:
                problems.append(line)
    return problems


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
