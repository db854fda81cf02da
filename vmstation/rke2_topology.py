"""Who is who in an RKE2 cluster, and the token that carries from the first server to the others.

The first server (in inventory order) initialises the cluster and generates its token; other servers and
agents join it with `server: https://FIRST:9345` and that token (docs.rke2.io/install/ha). The token is
read once per run from the first server's node-token file, the way kubeadm's join command is read from the
control plane, and handed on as a masked ``Secret`` through the typed handle ``CLUSTER_TOKEN``.
"""

from __future__ import annotations

from vmstation import rhel
from vmstation.context import HostContext
from vmstation.graph import hosts_of_kind
from vmstation.handles import ReadFrom
from vmstation.inventory import Host, Inventory

PLAN_TOKEN = "K10plan0placeholder::server:plan-placeholder"   # a plan shows where the token goes, never it


def first_servers(inventory: Inventory) -> tuple[Host, ...]:
    """The first server (in inventory order) of each RKE2 cluster: it initialises the cluster."""
    return tuple(first_server(inventory, c.name) for c in inventory.clusters_of_kind("rke2"))


def joining_nodes(inventory: Inventory) -> tuple[Host, ...]:
    """Every RKE2 host but the first servers: more servers and agents, which join with the token."""
    firsts = {h.name for h in first_servers(inventory)}
    return tuple(h for h in hosts_of_kind("rke2")(inventory) if h.name not in firsts)


def first_server(inventory: Inventory, cluster: str) -> Host:
    return next(h for h in inventory.hosts_of(cluster) if h.has_role("server"))


def node_type(host: Host) -> str:
    return "server" if host.has_role("server") else "agent"


def cluster_token(ctx: HostContext, first: Host | None = None):
    """The cluster's join token as a masked Secret (``CLUSTER_TOKEN``; ``first`` is where it is read from)."""
    return ctx.read(CLUSTER_TOKEN)


def _parse_token(output: str):
    from vmstation.secrets import Secret

    token = rhel.parse_node_token(output)
    return Secret(token) if token else None


# The cluster's join token, read once per run from the first server's node-token file, the way kubeadm's join
# command is read from the control plane: one script over the first server's own connection (the token is on
# that command's stdout, never in any argv), kept in memory as a masked Secret registered for redaction, and
# reaching a joining node only as the content of its 0600 config.yaml. Reading changes nothing, so a plan reads
# it too where it exists; offline, or before the first server has one, a plan shows a placeholder.
CLUSTER_TOKEN = ReadFrom("the cluster token", secret=True,
                         source=lambda ctx: first_server(ctx.inventory, ctx.cluster.name),
                         script=f"if [ -s {rhel.RKE2_NODE_TOKEN} ]; then {rhel.node_token_query()}; fi\n",
                         parse=_parse_token, placeholder=PLAN_TOKEN,
                         missing=f"the first server {{source}} has no {rhel.RKE2_NODE_TOKEN} yet "
                                 "(rke2-server has not started there)")
