"""What a phase sees while it yields operations for one host.

``RunContext`` is shared by every host of a run (values later phases need, the
secret store, where artifacts go, plan or apply). ``HostContext`` is one host in
one phase: its inventory entry, its cluster, rendering with the right values, and
its facts, asked from the host only when a phase reads them.
"""

from __future__ import annotations

import threading
from datetime import date
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vmstation import versions
from vmstation.inventory import Cluster, Host, Inventory

if TYPE_CHECKING:
    from vmstation.facts import HostFacts
    from vmstation.handles import Capture, ReadFrom
    from vmstation.transport import HostConnection


@dataclass
class RunContext:
    inventory: Inventory
    plan: bool = False
    artifacts_dir: Path = Path(".vmstation/artifacts")
    secrets: Any = None                       # vmstation.secrets.SecretStore (opened lazily)
    offline: bool = False                     # `vmstation render`, preflight, --resume's check: no host is asked
    remote: Callable[[Host, str], str] | None = None   # run a script on another host of the run (set by the runner)
    connect: Callable[[Host], "HostConnection"] | None = None   # another host's connection (set by the runner)
    step_deadline: float | None = None        # seconds a step's command may run by default (None: 300)
    digest_key: bytes = b""                   # keys the journal's digests of what each pair does (runner sets it)
    # Run-wide settings phases read, typed (each set by the use case that starts the run):
    limit: tuple[str, ...] = ()               # the hosts of --limit (node-remove acts on them)
    today: date | None = None                 # the date support notices are judged on (None: today)
    wake_hosts: tuple[str, ...] | None = None  # `vmstation wake HOST...` (None: every wake candidate)
    wake_interface: str | None = None         # `vmstation wake --interface`, over the inventory's wol_interface
    wake_seconds: dict[str, float] | None = None   # host -> seconds from magic packet to SSH, measured by wake
    backup_stamp: str = "(stamp)"             # names this run's etcd snapshots (`vmstation backup`, before changes)
    upgrade_to: str | None = None             # the version one upgrade step goes to (`vmstation upgrade`)
    # What Checks captured, by capture name (``Capture`` handles; read with ``captured``).
    values: dict[str, Any] = field(default_factory=dict)
    _shared: dict = field(default_factory=dict, repr=False)       # computed once per run (``shared``)
    _produced: list = field(default_factory=list, repr=False)    # secrets read from hosts: redacted too
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def shared(self, key: Any, produce: Callable[[], Any]) -> Any:
        """A value computed once per run for every host that asks (artifacts checked once, a read handle)."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = produce()
            return self._shared[key]

    def captured(self, handle: "Capture | str", default: Any = None) -> Any:
        """What the Check with ``capture=handle`` printed in this run (``default`` when it did not run)."""
        return self.values.get(getattr(handle, "name", handle), default)

    def keep(self, handle: "Capture | str", output: str) -> None:
        """The executor keeps a Check's output; a secret capture is masked and redacted from then on."""
        name, secret = getattr(handle, "name", handle), getattr(handle, "secret", False)
        self.values[name] = self.register(output) if secret else output

    def register(self, value: str):
        """``value`` as a masked Secret that every output of the run redacts from now on."""
        from vmstation.secrets import Secret

        secret = value if isinstance(value, Secret) else Secret(value)
        if secret:
            with self._lock:
                self._produced.append(secret)
        return secret

    def read(self, handle: "ReadFrom", ctx: "HostContext") -> Any:
        """``handle``'s value for ``ctx``: read once per run from its source host (see vmstation.handles)."""
        if self.offline or self.remote is None or (self.plan and handle.changes_host):
            return self._masked(handle, handle.placeholder)
        source = handle.source(ctx)
        value = self.shared((handle, handle.per(ctx)), lambda: self._read_from(handle, source, ctx))
        if value is None and self.plan:
            return self._masked(handle, handle.placeholder)
        if value is None:
            from vmstation.errors import Unsupported

            raise Unsupported(ctx.host.name, handle.missing.format(source=source.name))
        return value

    def _read_from(self, handle: "ReadFrom", source: Host, ctx: "HostContext") -> Any:
        from vmstation.errors import CommandError, HostError

        try:
            output = self.remote(source, handle.script)
        except CommandError as exc:
            if not handle.secret:
                raise
            # its output is not passed on: it could hold the secret
            raise HostError(ctx.host.name, f"cannot read {handle.name} on {source.name} "
                                           f"(exit {exc.exit_code})") from None
        value = handle.parse(output)
        return None if value is None else self._masked(handle, value, register=True)

    def _masked(self, handle, value, register: bool = False):
        """A secret handle's value masked: a string becomes a Secret; a dict keeps the Secrets its parse made.
        Read from a host, every such Secret is registered for redaction."""
        if not handle.secret or value is None:
            return value
        if isinstance(value, dict):
            if register:
                for part in value.values():
                    if hasattr(part, "reveal"):
                        self.register(part)
            return value
        return self.register(value) if register else _as_secret(value)

    def redact(self, text: str) -> str:
        """``text`` with every secret unlocked or read in this run masked: the one choke point before output."""
        known = tuple(self.secrets.known()) if self.secrets is not None else ()
        if not text or not (known or self._produced):
            return text
        from vmstation.secrets import redact

        return redact(text, known + tuple(self._produced))

    def secret(self, reference: str):
        if self.secrets is None:
            from vmstation.errors import SecretError

            raise SecretError(f"{reference} is needed but no vault is open for this run")
        return self.secrets.resolve(reference)


def _as_secret(value):
    from vmstation.secrets import Secret

    return value if isinstance(value, Secret) else Secret(value)


class HostContext:
    """One host in one phase."""

    def __init__(self, run: RunContext, host: Host, connection: "HostConnection | None",
                 facts_source: Callable[[], "HostFacts"] | None = None):
        self.run = run
        self.host = host
        self.connection = connection
        self._facts_source = facts_source
        self._facts: HostFacts | None = None

    @property
    def inventory(self) -> Inventory:
        return self.run.inventory

    @property
    def cluster(self) -> Cluster:
        return self.inventory.cluster(self.host.cluster)

    @property
    def plan(self) -> bool:
        return self.run.plan

    @property
    def facts(self) -> "HostFacts":
        """The host's facts, from one remote command the first time a phase reads them."""
        if self._facts is None:
            if self._facts_source is None:
                from vmstation.errors import Unsupported

                raise Unsupported(self.host.name, "this step needs facts from the host, and none can be asked "
                                  "offline (`vmstation render` shows files only)")
            self._facts = self._facts_source()
        return self._facts

    def assumed(self, value, why: str):
        """A fact an earlier phase of the same run makes (containerd's version once it is installed): a plan or
        a render goes on assuming ``value``; applying without it is Unsupported (``why``) on this host."""
        if self.run.plan or self.run.offline:
            return value
        from vmstation.errors import Unsupported

        raise Unsupported(self.host.name, why)

    def read(self, handle: "ReadFrom"):
        """Data another host produces for this one (a join command, a token): see vmstation.handles."""
        return self.run.read(handle, self)

    def render(self, template: str, checked_by: Callable[[str], list[str]] | None = None, **extra) -> str:
        """``template`` rendered for this host; ``checked_by``: the checker of its format (kubeadm's fields,
        containerd's sections, Kubernetes schemas, RKE2's keys), whose problems are bad input naming the
        template and the host, raised while the phase describes, so preflight stops before any host."""
        from vmstation.templates import render

        text = render(template, host=self.host, cluster=self.cluster, inventory=self.inventory,
                      versions=versions.as_dict(), **extra)
        problems = checked_by(text) if checked_by else []
        if problems:
            from vmstation.errors import InputError

            raise InputError(f"templates/{template} for {self.host.name}: " + "; ".join(problems))
        return text

    def hosts_with_role(self, role: str) -> tuple[Host, ...]:
        return tuple(h for h in self.inventory.hosts_of(self.host.cluster) if h.has_role(role))
