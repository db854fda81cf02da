"""What a phase sees while it yields operations for one host.

``RunContext`` is shared by every host of a run (values later phases need, the
secret store, where artifacts go, plan or apply). ``HostContext`` is one host in
one phase: its inventory entry, its cluster, rendering with the right values, and
its facts, asked from the host only when a phase reads them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from vmstation import versions
from vmstation.inventory import Cluster, Host, Inventory

if TYPE_CHECKING:
    from vmstation.facts import HostFacts
    from vmstation.transport import HostConnection


@dataclass
class RunContext:
    inventory: Inventory
    plan: bool = False
    artifacts_dir: Path = Path(".vmstation/artifacts")
    secrets: Any = None                       # vmstation.secrets.SecretStore (opened lazily)
    values: dict[str, Any] = field(default_factory=dict)
    offline: bool = False                     # `vmstation render`: no host is asked anything
    remote: Callable[[Host, str], str] | None = None   # run a script on another host of the run (set by the runner)
    step_deadline: float | None = None        # seconds a step's command may run by default (None: 300)
    digest_key: bytes = b""                   # keys the journal's digests of what each pair does (runner sets it)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def shared(self, key: str, produce: Callable[[], Any]) -> Any:
        """A value computed once per run for every host that asks (a join token, say)."""
        with self._lock:
            if key not in self.values:
                self.values[key] = produce()
            return self.values[key]

    def redact(self, text: str) -> str:
        """``text`` with every secret unlocked in this run masked: the one choke point before output."""
        if self.secrets is None or not text:
            return text
        from vmstation.secrets import redact

        return redact(text, self.secrets.known())

    def secret(self, reference: str):
        if self.secrets is None:
            from vmstation.errors import SecretError

            raise SecretError(f"{reference} is needed but no vault is open for this run")
        return self.secrets.resolve(reference)


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

    def render(self, template: str, **extra) -> str:
        from vmstation.templates import render

        return render(template, host=self.host, cluster=self.cluster, inventory=self.inventory,
                      versions=versions.as_dict(), **extra)

    def hosts_with_role(self, role: str) -> tuple[Host, ...]:
        return tuple(h for h in self.inventory.hosts_of(self.host.cluster) if h.has_role(role))
