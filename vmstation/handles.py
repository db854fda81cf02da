"""Handles: data one host produces for others in a run, declared once and read by reference.

A phase module declares a handle beside its phases; another phase reads it. No string keys travel
between phases, and a secret handle's value is a masked ``Secret`` registered with the run's one
redaction point (``RunContext.redact``), whatever host it came from.

- ``Capture``: the output of a ``Check(..., capture=HANDLE)``, kept for later phases and for the
  caller of the run (``RunContext.captured(HANDLE)``).
- ``ReadFrom``: a value read once per run from the host ``source`` picks, by running ``script`` there
  (the kubeadm join command on the control plane, the RKE2 token on the first server). A phase calls
  ``ctx.read(HANDLE)`` the same way in plan, render and apply; what each mode does is the executor's
  business: offline (render, preflight, --resume's check) the placeholder, in a plan the real value
  when reading changes nothing (``changes_host=False``) else the placeholder, in apply the real value
  or ``Unsupported`` with ``missing`` when the source has none yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from vmstation.context import HostContext
    from vmstation.inventory import Host


@dataclass(frozen=True, eq=False)      # a handle is itself: compared and hashed by identity
class Handle:
    name: str                       # what error messages and plans call it
    secret: bool = False            # masked (``Secret``), never shown, redacted from every output


@dataclass(frozen=True, eq=False)
class Capture(Handle):
    """What a Check printed, kept under this handle (stripped of surrounding whitespace)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class ReadFrom(Handle):
    """A value another host of the run produces: ``parse(output of script on source)``, None when absent."""

    source: Callable[["HostContext"], "Host"]
    script: str
    parse: Callable[[str], Any]
    placeholder: Any = None         # what a plan or an offline render shows instead of the value
    changes_host: bool = False      # producing it changes the source (a new bootstrap token): never in a plan
    missing: str = "{source} has none yet"    # why apply cannot go on ({source}: the source host's name)
    per: Callable[["HostContext"], str] = lambda ctx: ctx.cluster.name   # read once per this key and run
