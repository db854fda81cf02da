"""Who is who in an RKE2 cluster, and the token that carries from the first server to the others.

The first server (in inventory order) initialises the cluster and generates its token; other servers and
agents join it with `server: https://FIRST:9345` and that token (docs.rke2.io/install/ha). The token is
read once per run from the first server's node-token file, the way kubeadm's join command is read from the
control plane, and handed on as a masked ``Secret``: a typed handle between hosts can later carry it.
"""

from __future__ import annotations

from vmstation import rhel
from vmstation.context import HostContext
from vmstation.errors import CommandError, HostError, Unsupported
from vmstation.graph import hosts_of_kind
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


def cluster_token(ctx: HostContext, first: Host):
    """The cluster's join token, read once per run from ``first``'s node-token file, as a masked Secret.

    It travels like kubeadm's join command: one script over the first server's own connection (the token
    is on that command's stdout, never in any argv), kept in memory, and reaches a joining node only as the
    content of its 0600 config.yaml. A plan reads it too where it exists (reading changes nothing); offline,
    or before the first server has one, a plan shows a placeholder.
    """
    from vmstation.secrets import Secret

    if ctx.run.remote is None:
        return Secret(PLAN_TOKEN)
    token = ctx.run.shared(f"rke2-token:{ctx.cluster.name}", lambda: _read_token(ctx, first))
    if token is None and ctx.plan:
        return Secret(PLAN_TOKEN)
    if token is None:
        raise Unsupported(ctx.host.name, f"the first server {first.name} has no {rhel.RKE2_NODE_TOKEN} yet "
                                         "(rke2-server has not started there)")
    return token


def _read_token(ctx: HostContext, first: Host):
    from vmstation.secrets import Secret

    script = f"if [ -s {rhel.RKE2_NODE_TOKEN} ]; then {rhel.node_token_query()}; fi\n"
    try:
        output = ctx.run.remote(first, script)
    except CommandError as exc:   # its output is not passed on: it could hold the token
        raise HostError(ctx.host.name, f"cannot read the cluster token on {first.name} "
                                       f"(exit {exc.exit_code})") from None
    token = rhel.parse_node_token(output)
    return Secret(token) if token else None
