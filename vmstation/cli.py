"""`vmstation`: the command line. Thin: every command calls one function of vmstation.app.

Exit codes scripts can rely on: 0 done, 1 a host failed, 2 bad input (nothing
changed anywhere), 3 stopped where this machine cannot go on (binaries that
cannot be had here), 4 sleep --check decided to stay awake, 130 interrupted (SIGINT, SIGTERM).

Only click is imported at start-up; SSH, Jinja and rich load when a command runs.
"""

from __future__ import annotations

import functools
import sys

import click

from vmstation import __version__


def _listed(_ctx, _param, values):
    """--limit, --only and --skip take repeats and commas alike (``--limit a,b --limit c``)."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


inventory_option = click.option(
    "--inventory", "-i", "inventory_path", metavar="PATH", envvar="VMSTATION_INVENTORY",
    help="The inventory file [default: hosts.toml here or in the nearest directory above; $VMSTATION_INVENTORY].")

LIMIT_HELP = "Only these hosts: names, globs, cluster names or roles (repeatable, or comma-separated)."
TARGET_OPTIONS = {   # by the parameter each sets
    "plan": click.option("--plan", "--check", "plan", is_flag=True,
                         help="Show what would change per host and phase; change nothing (--check: Ansible's)."),
    "show_diff": click.option("--diff", "show_diff", is_flag=True,
                              help="With --plan: every file's full diff and every command, however long."),
    "only": click.option("--only", multiple=True, callback=_listed, metavar="PHASE",
                         help="Run only these phases (repeatable, or comma-separated)."),
    "start_from": click.option("--from", "start_from", metavar="PHASE",
                               help="Start at this phase, skip the ones before it."),
    "skip": click.option("--skip", multiple=True, callback=_listed, metavar="PHASE",
                         help="Leave these phases out (repeatable, or comma-separated)."),
    "limit": click.option("--limit", "-l", multiple=True, callback=_listed, metavar="PATTERN", help=LIMIT_HELP),
    "resume": click.option("--resume", is_flag=True, help="Skip what the last run of this target finished."),
    "forks": click.option("--forks", "-f", default=32, show_default=True, help="Hosts worked on at once."),
    "as_json": click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
}


def common_options(function):
    """Inventory, vault, host-key, ssh_config and verbosity options, on every command that reads the inventory."""
    for option in reversed([
        inventory_option,
        click.option("--vault-password-file", metavar="PATH", envvar="VMSTATION_VAULT_PASSWORD_FILE",
                     help="File holding the vault password, or an executable printing it "
                          "[$VMSTATION_VAULT_PASSWORD_FILE; else $VMSTATION_VAULT_PASSWORD, else a prompt]."),
        click.option("--trust-new-host-keys", is_flag=True, envvar="VMSTATION_TRUST_NEW_HOST_KEYS",
                     help="Record host keys seen for the first time in known_hosts (a changed key is still "
                          "refused) [$VMSTATION_TRUST_NEW_HOST_KEYS]."),
        click.option("--ssh-config", metavar="PATH", envvar="VMSTATION_SSH_CONFIG",
                     help="ssh_config file for what the inventory leaves unset [default: ~/.ssh/config]."),
        click.option("--verbose", "-v", count=True,
                     help="-v: every command sent; -vv: also how each answered (sizes, stderr's tail)."),
    ]):
        function = option(function)
    return function


def reports_input_errors(function):
    """Bad input becomes one line on stderr and exit code 2, never a traceback."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from vmstation.errors import GraphError, InputError

        try:
            return function(*args, **kwargs)
        except (InputError, GraphError) as exc:
            click.echo(f"vmstation: {exc}", err=True)
            sys.exit(2)
    return wrapper


def _session(inventory_path, vault_password_file=None, trust_new_host_keys=False, ssh_config=None, verbose=0):
    from vmstation.app import Session

    _set_verbosity(verbose)
    return Session.from_environment(inventory_path=inventory_path, vault_password_file=vault_password_file,
                                    trust_new_host_keys=trust_new_host_keys, ssh_config=ssh_config)


class WithTargetCommands(click.Group):
    """The commands written in this module, plus one per target that asks for one (``Target.command``), made
    from the phase registry the first time the commands are listed or one of them is asked for: start-up still
    imports click only, and a new target's module is the one place that gives it a command and a fab task."""

    def list_commands(self, ctx) -> list[str]:
        self._add_target_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name: str):
        if name not in self.commands:
            self._add_target_commands()
        return super().get_command(ctx, name)

    def _add_target_commands(self) -> None:
        if getattr(self, "_targets_added", False):
            return
        self._targets_added = True
        from vmstation.targets import build_graph

        for target in build_graph().targets.values():
            if target.command and target.name not in self.commands:
                self.add_command(target_command(target.name, target.command), target.name)


@click.group(cls=WithTargetCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmstation")
def main():
    """Build and run a two-cluster Kubernetes homelab over SSH: plan it, deploy it, sleep and wake it."""


# -- deploy targets ------------------------------------------------------------------------------


def target_command(target: str, help_text: str) -> click.Command:
    """``vmstation TARGET``: run (or --plan) the target, with every target option."""
    def command(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose, plan, show_diff,
                only, start_from, skip, limit, resume, forks, as_json):
        session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
        sys.exit(_run(session, target, plan=plan, only=only, start_from=start_from, skip=skip, limit=limit,
                      resume=resume, forks=forks, as_json=as_json, show_diff=show_diff, verbose=verbose))
    command.__doc__ = help_text
    command = reports_input_errors(command)
    for option in reversed(TARGET_OPTIONS.values()):
        command = option(command)
    return click.command(target)(common_options(command))

PLAN_OPTIONS = [option for name, option in TARGET_OPTIONS.items() if name not in ("plan", "resume", "forks")]


@main.command()
@click.argument("target")
@common_options
@reports_input_errors
def plan(target, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose, show_diff, only,
         start_from, skip, limit, as_json):
    """Show what TARGET would change on each host (file diffs, commands); change nothing."""
    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    sys.exit(_run(session, target, plan=True, only=only, start_from=start_from, skip=skip, limit=limit,
                  as_json=as_json, show_diff=show_diff, verbose=verbose))


for _option in reversed(PLAN_OPTIONS):
    _option(plan)


@main.command()
@click.argument("target", required=False)
@reports_input_errors
def phases(target):
    """List the phases of TARGET (or of every target) in the order they run, with what each does."""
    from vmstation.app import list_phases

    for line in list_phases(target):
        click.echo(line)


@main.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--limit", "-l", multiple=True, callback=_listed, metavar="PATTERN",
              help="Only these hosts: names, globs, cluster names or roles (repeatable, or comma-separated).")
@click.option("--plan", "--check", "plan", is_flag=True, help="Show what would be removed; change nothing.")
@click.option("--no-backup", is_flag=True, help="Do not take the etcd snapshot first.")
@common_options
@reports_input_errors
def reset(yes, limit, plan, no_backup, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """Tear the clusters down: kubeadm reset, CNI leftovers, cluster firewall rules, rke2-uninstall.sh."""
    if not plan and not yes:
        click.confirm("Reset the clusters on " + (", ".join(limit) or "every host") + "? This removes them", abort=True)
    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    code = 0 if no_backup else _backup_first(session, plan=plan, verbose=verbose)
    if code and not plan:
        click.echo("vmstation: the etcd snapshot before the reset failed: nothing was reset (--no-backup "
                   "resets without one)", err=True)
        sys.exit(code)
    sys.exit(_run(session, "reset", plan=plan, limit=limit, verbose=verbose))


@main.command()
@click.argument("target")
@click.option("--out", "out_dir", required=True, metavar="DIR", help="Where to write DIR/<host>/<path>.")
@inventory_option
@reports_input_errors
def render(target, out_dir, inventory_path):
    """Write every file TARGET would put on each host into DIR, from the inventory alone (no SSH)."""
    from vmstation.app import render_target

    written = render_target(_session(inventory_path), target, out_dir)
    click.echo(f"{len(written)} files written under {out_dir} (see {out_dir}/ASSUMPTIONS.txt)")


@main.command()
@click.argument("directory", default=".", required=False)
@click.option("--from-ansible", "ansible_inventory", metavar="PATH",
              help="Start from the older system's Ansible inventory (file or directory) instead of the example.")
@click.option("--force", is_flag=True, help="Overwrite files that are already there.")
@reports_input_errors
def init(directory, ansible_inventory, force):
    """Make DIRECTORY a homelab directory: hosts.toml, a fabfile.py for `fab`, a .gitignore for .vmstation/."""
    from vmstation.homelab_dir import init_directory

    for line in init_directory(directory, ansible_inventory=ansible_inventory, force=force):
        click.echo(line)


# -- power ---------------------------------------------------------------------------------------


@main.command()
@click.argument("hosts", nargs=-1)
@click.option("--from-here", is_flag=True, help="Send the magic packets from this machine, not from masternode.")
@click.option("--interface", metavar="IFACE", help="Interface to send on (default: the inventory's wol_interface).")
@click.option("--timeout", default=600, show_default=True, help="Seconds to wait for each host to answer.")
@click.option("--plan", "--check", "plan", is_flag=True, help="Show what would be sent and run; send nothing.")
@common_options
@reports_input_errors
def wake(hosts, from_here, interface, timeout, plan, inventory_path, vault_password_file, trust_new_host_keys,
         ssh_config, verbose):
    """Wake sleeping workers (Wake-on-LAN), wait until they answer, then undo what sleep did."""
    from vmstation.power.cycle import wake as wake_hosts
    from vmstation.report import format_answered, format_sent, format_wake, tell_waiting

    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    result = wake_hosts(session, hosts, from_here=from_here, interface=interface, timeout=timeout, plan=plan,
                        waiting=tell_waiting, sent=lambda sent: _echo(format_sent(sent)),
                        answered=lambda woken: _echo(format_answered(woken)))
    _echo(format_wake(result, streamed=True))
    sys.exit(result.exit_code)


@main.command()
@click.option("--check", "check_only", is_flag=True,
              help="Only decide (idle or not, with reasons); exit 0 idle, 4 awake.")
@click.option("--plan", is_flag=True, help="Show the whole sleep sequence; change nothing.")
@click.option("--force", is_flag=True, help="Sleep even if the idle policy says someone is using the homelab.")
@common_options
@reports_input_errors
def sleep(check_only, plan, force, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """Put idle workers to sleep: cordon, drain, scale down (recorded), arm WoL, shut down or suspend."""
    from vmstation.power.cycle import sleep as sleep_hosts
    from vmstation.report import format_idle_check, format_sleep

    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    result = sleep_hosts(session, check_only=check_only, plan=plan, force=force,
                         decided=lambda check: _echo(format_idle_check(check)))
    _echo(format_sleep(result, streamed=True))
    sys.exit(result.exit_code)


def _echo(lines) -> None:
    """report.Line's, each on stdout or stderr."""
    for line in lines:
        click.echo(line.text, err=line.err)


# -- day two ---------------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
@common_options
@reports_input_errors
def status(as_json, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """One screen for the whole homelab: nodes Ready/NotReady/asleep, versions, pending reboots, the idle check,
    certificate expiry, the last run of each target, warnings; exit 0 healthy, 1 not."""
    from vmstation.app import homelab_status
    from vmstation.homelab_status import format_status

    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    result = homelab_status(session)
    click.echo(result.as_json() if as_json else format_status(result), nl=as_json)
    sys.exit(0 if result.healthy else 1)


@main.command()
@click.option("--plan", "--check", "plan", is_flag=True, help="Show what would be snapshotted and fetched.")
@click.option("--keep", default=7, show_default=True, type=click.IntRange(min=1),
              help="Snapshots kept per cluster under .vmstation/artifacts/backups (older ones are removed).")
@click.option("--limit", "-l", multiple=True, callback=_listed, metavar="PATTERN", help=LIMIT_HELP)
@common_options
@reports_input_errors
def backup(plan, keep, limit, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """An etcd snapshot of every cluster (etcdctl on the kubeadm control plane, `rke2 etcd-snapshot save` on the
    first RKE2 server), fetched 0600 to .vmstation/artifacts/backups/CLUSTER/."""
    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    sys.exit(_backup_first(session, plan=plan, keep=keep, limit=limit, verbose=verbose))


@main.command()
def restore():
    """Print how to restore an etcd snapshot (kubeadm and RKE2): a restore replaces the whole cluster state, so
    vmstation prints the documented procedure instead of running it."""
    from vmstation.backup import RESTORE_PROCEDURE

    click.echo(RESTORE_PROCEDURE, nl=False)


@main.group()
def certs():
    """Control-plane certificates: `vmstation status` shows their expiry; renew them here."""


# `certs renew debian|rke2`: the cluster named as `upgrade debian|rke2` names it; the target that renews its
# certificates, and how many of its hosts at once (RKE2's servers one at a time).
RENEW_TARGETS = {"debian": ("certs-renew", 32), "rke2": ("certs-rotate-rke2", 1)}


@certs.command("renew")
@click.argument("cluster", required=False, metavar="[debian|rke2]")
@click.option("--plan", "--check", "plan", is_flag=True, help="Show what would be renewed and restarted.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common_options
@reports_input_errors
def certs_renew(cluster, plan, yes, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """Renew one cluster's certificates, or both clusters' when none is named. debian: kubeadm certs renew all
    on the control plane, its static pods restarted, admin.conf fetched again; rke2: `rke2 certificate rotate`
    on each server in turn (rke2-server stopped, then started). A named cluster's renewal leaves the other alone."""
    from vmstation.errors import InputError

    if cluster is not None and cluster not in RENEW_TARGETS:
        raise InputError(f"certs renew: no cluster {cluster!r}: name debian (the kubeadm cluster) or rke2, "
                         "or neither to renew both")
    chosen = [cluster] if cluster else list(RENEW_TARGETS)
    if not plan and not yes:
        click.confirm(_RENEW_QUESTION[cluster], abort=True)
    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    codes = [_run(session, RENEW_TARGETS[name][0], plan=plan, forks=RENEW_TARGETS[name][1], verbose=verbose)
             for name in chosen]
    sys.exit(next((code for code in codes if code), 0))


_RENEW_QUESTION = {
    None: "Renew the certificates of both clusters and restart their control planes?",
    "debian": "Renew the Debian cluster's certificates and restart its control-plane static pods?",
    "rke2": "Rotate the RKE2 servers' certificates (rke2-server stopped and started on each)?",
}


@main.group()
def upgrade():
    """Upgrade a cluster one minor version per step (kubeadm's rule; RKE2's too)."""


def upgrade_command(kind: str, name: str, example: str):
    def command(to, plan, resume, keep, inventory_path, vault_password_file, trust_new_host_keys, ssh_config,
                verbose):
        session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
        sys.exit(_upgrade(session, kind, to, plan=plan, resume=resume, keep=keep, verbose=verbose))
    command.__doc__ = (f"Upgrade the {'Debian kubeadm' if kind == 'kubeadm' else 'RKE2'} cluster to VERSION, one "
                       "minor per step: preflight, an etcd snapshot fetched first, then "
                       + ("the control plane (kubeadm upgrade plan/apply), then each worker in turn (drain, kubeadm "
                          "upgrade node, packages, restart, uncordon, Ready)." if kind == "kubeadm" else
                          "each server, then each agent, one at a time (install method per release and RHEL major, "
                          "service restarted, node Ready)."))
    command = reports_input_errors(common_options(command))
    for option in reversed([
        click.option("--to", "to", required=True, metavar="VERSION", help=f"Where to go, e.g. {example}."),
        click.option("--plan", "--check", "plan", is_flag=True, help="Show the whole sequence, step by step."),
        click.option("--resume", is_flag=True, help="Go on from where the last upgrade stopped."),
        click.option("--keep", default=7, show_default=True, type=click.IntRange(min=1),
                     help="Snapshots kept per cluster under .vmstation/artifacts/backups."),
    ]):
        command = option(command)
    return upgrade.command(name)(command)


upgrade_command("kubeadm", "debian", "1.30.x, 1.31 or 1.31.14")
upgrade_command("rke2", "rke2", "v1.35.7+rke2r1 or v1.35")


# -- checks, inventory, hosts, vault ---------------------------------------------------------------


@main.command()
@click.option("--target", default="all", type=click.Choice(["all", "deploy-debian", "deploy-rke2"]),
              show_default=True, help="Which deployment's state to check.")
@common_options
@reports_input_errors
def verify(target, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """Check the hosts' state with testinfra (files, modes, services, sysctls, packages)."""
    from vmstation.report import format_checks
    from vmstation.verify import verify as verify_hosts

    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    results = verify_hosts(session, target)
    click.echo(format_checks(results), nl=False)
    sys.exit(1 if any(not r.passed for r in results) else 0)


@main.group()
def inventory():
    """Check, show or import the inventory."""


@inventory.command("check")
@inventory_option
@click.option("--secrets", "open_vault", is_flag=True,
              help="Also open the vault and check that it holds every key the inventory refers to.")
@click.option("--vault-password-file", metavar="PATH", envvar="VMSTATION_VAULT_PASSWORD_FILE",
              help="File holding the vault password, or an executable printing it.")
@reports_input_errors
def inventory_check(inventory_path, open_vault, vault_password_file):
    """Load the inventory and check every rule; one line per problem, exit 2 if any."""
    from vmstation.app import check_inventory

    problems, summary = check_inventory(_session(inventory_path, vault_password_file), open_vault=open_vault)
    for problem in problems:
        click.echo(f"vmstation: {problem}", err=True)
    if problems:
        sys.exit(2)
    click.echo(summary)


@inventory.command("show")
@inventory_option
@reports_input_errors
def inventory_show(inventory_path):
    """Print the hosts as a table."""
    from vmstation.app import load_inventory

    loaded = load_inventory(_session(inventory_path))
    rows = [("host", "address", "cluster", "roles", "user", "mac", "power")]
    for h in loaded.hosts:
        rows.append((h.name, h.address, h.cluster, ",".join(h.roles), h.ssh_user, h.mac or "-",
                     "always on" if h.always_on else h.sleep_method))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


@inventory.command("import")
@click.argument("source")
@click.option("--out", "out_path", default="-", show_default=True, help="Where to write the hosts.toml ('-': stdout).")
@click.option("--force", is_flag=True, help="Overwrite --out if it is already there.")
@reports_input_errors
def inventory_import(source, out_path, force):
    """Turn the older system's Ansible inventory (YAML or INI file, or a directory with group_vars/ and
    host_vars/) into a hosts.toml; every variable left behind is listed with why."""
    from vmstation.ansible_import import import_inventory, write_imported

    imported = import_inventory(source)
    if out_path == "-":
        click.echo(imported.text, nl=False)
    else:
        write_imported(imported, out_path, force=force)
        click.echo(f"wrote {out_path}")
    for line in imported.report:
        click.echo(f"  {line}", err=True)


@main.group()
def hosts():
    """Work with the hosts' SSH keys."""


@hosts.command("trust")
@click.argument("names", nargs=-1, required=True)
@common_options
@reports_input_errors
def hosts_trust(names, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """Record the host keys of NAMES in known_hosts, after you compared their fingerprints (a changed key is
    still refused)."""
    from vmstation.app import trust_hosts

    session = _session(inventory_path, vault_password_file, True, ssh_config, verbose)
    failures = 0
    for name, line in trust_hosts(session, names):
        failures += line.startswith("FAILED")
        click.echo(f"{name}: {line}")
    sys.exit(1 if failures else 0)


@main.group()
def vault():
    """Encrypt, view or edit the vault (Ansible Vault 1.1 format) that keeps sudo passwords and API keys."""


def _vault_password(password_file):
    from vmstation.secrets import read_vault_password

    return read_vault_password(password_file)


vault_password_option = click.option("--vault-password-file", metavar="PATH", envvar="VMSTATION_VAULT_PASSWORD_FILE",
                                     help="File holding the vault password, or an executable printing it.")


@vault.command("encrypt")
@click.argument("path")
@vault_password_option
@reports_input_errors
def vault_encrypt(path, vault_password_file):
    """Encrypt the plaintext file PATH in place."""
    from vmstation.secrets import vault_encrypt as encrypt

    encrypt(path, _vault_password(vault_password_file))
    click.echo(f"encrypted {path}")


@vault.command("view")
@click.argument("path")
@vault_password_option
@reports_input_errors
def vault_view(path, vault_password_file):
    """Print the decrypted content of PATH."""
    from vmstation.secrets import vault_view as view

    click.echo(view(path, _vault_password(vault_password_file)), nl=False)


@vault.command("edit")
@click.argument("path")
@vault_password_option
@reports_input_errors
def vault_edit(path, vault_password_file):
    """Decrypt PATH to a private temp file, open $VISUAL or $EDITOR, re-encrypt it."""
    from vmstation.secrets import vault_edit as edit

    edit(path, _vault_password(vault_password_file))


@main.group()
def node():
    """Work on one node of a cluster."""


@node.command("remove")
@click.argument("host")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-backup", is_flag=True, help="Do not take the etcd snapshot first.")
@common_options
@reports_input_errors
def node_remove(host, yes, no_backup, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """Drain HOST, delete it from its cluster, reset it; nothing else moves (an etcd snapshot is taken first)."""
    if not yes:
        click.confirm(f"Drain, delete and reset {host}?", abort=True)
    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    code = 0 if no_backup else _backup_first(session, verbose=verbose)
    if code:
        click.echo(f"vmstation: the etcd snapshot before removing {host} failed: nothing was removed "
                   "(--no-backup removes it without one)", err=True)
        sys.exit(code)
    sys.exit(_run(session, "node-remove", limit=(host,), verbose=verbose))


# -- shared ------------------------------------------------------------------------------------------


def _run(session, target, *, plan=False, only=(), start_from=None, skip=(), limit=(), resume=False, forks=32,
         as_json=False, show_diff=False, verbose=0) -> int:
    from vmstation.app import run_target
    from vmstation.report import format_run, with_progress

    result = with_progress(lambda listener: run_target(
        session, target, plan=plan, only=only, start_from=start_from, skip=skip, limit=limit, resume=resume,
        forks=forks, listener=listener), quiet=as_json)
    click.echo(format_run(result, plan, as_json=as_json, show_diff=True if show_diff else None, verbose=verbose,
                          inventory_path=session.inventory_path), nl=False)
    if result.interrupted:
        _exit_now(result.exit_code)
    return result.exit_code


def _backup_first(session, *, plan=False, keep=7, limit=(), verbose=0) -> int:
    """The backup target with its retention count; shown as every run is, then what was removed."""
    from vmstation.maintenance import take_backup
    from vmstation.report import format_run, with_progress

    result, pruned = with_progress(lambda listener: take_backup(session, plan=plan, keep=keep, listener=listener,
                                                                limit=limit))
    click.echo(format_run(result, plan, verbose=verbose, inventory_path=session.inventory_path), nl=False)
    for path in pruned:
        click.echo(f"removed {path} (more than {keep} snapshots)")
    return result.exit_code


def _upgrade(session, kind, to, *, plan, resume, keep, verbose) -> int:
    """The chain, step by step, each run shown as every run is; where it stopped and how to go on."""
    from vmstation.app import check_options
    from vmstation.errors import HostError
    from vmstation.maintenance import describe_stop, upgrade
    from vmstation.report import format_run, with_progress

    check_options(plan=plan, resume=resume)
    try:
        result = with_progress(lambda listener: upgrade(session, kind, to, plan=plan, resume=resume,
                                                        listener=listener, keep=keep))
    except HostError as exc:     # the control plane could not be asked for the cluster's version: nothing changed
        click.echo(f"vmstation: {exc.host}: cannot read the cluster's version: {exc.message}", err=True)
        return 1
    if not result.chain:
        click.echo(f"the cluster runs {result.current} already: nothing to do")
        return 0
    click.echo(f"{result.current} -> {to}: " + ", ".join(
        f"step {s.number} {s.from_version} -> {s.to_version}" for s in result.chain))
    for part in result.parts:
        click.echo(f"== step {part.step.number} of {len(result.chain)} ({part.step.to_version}), {part.where}")
        click.echo(format_run(part.result, plan, verbose=verbose, inventory_path=session.inventory_path), nl=False)
    for path in result.pruned:
        click.echo(f"removed {path} (more than {keep} snapshots)")
    if result.stopped:
        click.echo(describe_stop(result, to), err=True)
    elif not plan:
        final = result.chain[-1].to_version
        click.echo(f"upgraded to {final}; set version = \"{final}\" in hosts.toml's [clusters.*] table so that "
                   "later deploys keep it")
    return result.exit_code


def _exit_now(code: int) -> None:
    """After an interrupt: the outcome is printed and journaled; do not wait for threads still in a cut connection."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _set_verbosity(verbose: int) -> None:
    """-v: one line per command sent; -vv: the probes' answers too (on stderr, secrets redacted by the runner)."""
    if not verbose:
        return
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  [%(name)s] %(message)s"))
    logger = logging.getLogger("vmstation")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)


if __name__ == "__main__":
    main()
