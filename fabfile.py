"""`fab` tasks: the same commands as `vmstation`, for hands used to Fabric.

Each task hands its arguments to the vmstation CLI, so both behave the same
(output, exit codes, --plan). Invoke turns deploy_debian into `fab deploy-debian`.
"""

from invoke import task


def _vmstation(*args: str) -> None:
    from vmstation.cli import main

    main.main(args=[a for a in args if a], prog_name="fab", standalone_mode=True)


def _flags(inventory, plan=False, limit=None, only=None, resume=False, yes=False):
    flags = ["--inventory", inventory] if inventory else []
    flags += ["--plan"] if plan else []
    flags += ["--resume"] if resume else []
    flags += ["--yes"] if yes else []
    for name, values in (("--limit", limit), ("--only", only)):
        for value in (values or "").split(","):
            if value:
                flags += [name, value]
    return flags


@task(help={"plan": "show diffs and commands only", "limit": "comma-separated hosts", "only": "comma-separated phases",
            "resume": "skip what the last run finished", "inventory": "inventory file (default hosts.toml)"})
def deploy_debian(c, plan=False, limit="", only="", resume=False, inventory=""):
    """Deploy the Debian kubeadm cluster (eight phases, apps included)."""
    _vmstation("deploy-debian", *_flags(inventory, plan, limit, only, resume))


@task(help={"plan": "show diffs and commands only", "limit": "comma-separated hosts", "only": "comma-separated phases",
            "resume": "skip what the last run finished", "inventory": "inventory file (default hosts.toml)"})
def deploy_rke2(c, plan=False, limit="", only="", resume=False, inventory=""):
    """Deploy the RKE2 cluster on the RHEL host (six phases, artifacts fetched)."""
    _vmstation("deploy-rke2", *_flags(inventory, plan, limit, only, resume))


@task(help={"target": "deploy-debian, deploy-rke2, reset", "inventory": "inventory file"})
def plan(c, target="deploy-debian", inventory=""):
    """Show what a target would change on each host; change nothing."""
    _vmstation("plan", target, *_flags(inventory))


@task(iterable=["host"], help={"host": "host to wake (repeatable; default: every sleeping worker)",
                               "from_here": "send from this machine instead of masternode", "plan": "send nothing",
                               "interface": "interface to send on", "timeout": "seconds to wait for each host"})
def wake(c, host=None, from_here=False, plan=False, interface="", timeout=600, inventory=""):
    """Wake workers with Wake-on-LAN and wait until they are back in the cluster."""
    _vmstation("wake", *(host or []), *(["--from-here"] if from_here else []),
               *(["--interface", interface] if interface else []), "--timeout", str(timeout), *_flags(inventory, plan))


@task(help={"check": "only decide whether the homelab is idle", "plan": "show the sequence only",
            "force": "sleep even if the idle policy says someone is using the homelab"})
def sleep(c, check=False, plan=False, force=False, inventory=""):
    """Put idle workers to sleep (cordon, drain, scale down, arm WoL, power off)."""
    _vmstation("sleep", *(["--check"] if check else []), *(["--force"] if force else []), *_flags(inventory, plan))


@task(help={"yes": "do not ask", "limit": "comma-separated hosts", "plan": "show only"})
def reset(c, yes=False, limit="", plan=False, inventory=""):
    """Tear down the clusters (kubeadm reset, CNI leftovers, rke2-uninstall.sh)."""
    _vmstation("reset", *_flags(inventory, plan, limit, yes=yes))


@task(help={"target": "all, deploy-debian or deploy-rke2"})
def verify(c, target="all", inventory=""):
    """Check the hosts' state with testinfra."""
    _vmstation("verify", "--target", target, *_flags(inventory))


@task(help={"target": "deploy-debian or deploy-rke2", "out": "output directory"})
def render(c, target="deploy-debian", out="rendered", inventory=""):
    """Render every file a target writes, per host, into a directory (no SSH)."""
    _vmstation("render", target, "--out", out, *(["--inventory", inventory] if inventory else []))
