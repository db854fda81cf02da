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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmstation")
def main():
    """Build and run a two-cluster Kubernetes homelab over SSH: plan it, deploy it, sleep and wake it."""


# -- deploy targets ------------------------------------------------------------------------------


def target_command(name: str, target: str, help_text: str):
    def command(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose, plan, show_diff,
                only, start_from, skip, limit, resume, forks, as_json):
        session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
        sys.exit(_run(session, target, plan=plan, only=only, start_from=start_from, skip=skip, limit=limit,
                      resume=resume, forks=forks, as_json=as_json, show_diff=show_diff, verbose=verbose))
    command.__doc__ = help_text
    command = reports_input_errors(command)
    for option in reversed(TARGET_OPTIONS.values()):
        command = option(command)
    return main.command(name)(common_options(command))


target_command("deploy-debian", "deploy-debian",
               "Deploy the Debian kubeadm cluster: binaries, prep, CNI, init, join, Flannel, Ready, apps.")
target_command("deploy-rke2", "deploy-rke2",
               "Deploy the RKE2 cluster: RHEL prep, install, configure, start, monitoring, artifacts.")

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
@common_options
@reports_input_errors
def reset(yes, limit, plan, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """Tear the clusters down: kubeadm reset, CNI leftovers, cluster firewall rules, rke2-uninstall.sh."""
    if not plan and not yes:
        click.confirm("Reset the clusters on " + (", ".join(limit) or "every host") + "? This removes them", abort=True)
    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
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

    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    sys.exit(wake_hosts(session, hosts, from_here=from_here, interface=interface, timeout=timeout, plan=plan))


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

    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    sys.exit(sleep_hosts(session, check_only=check_only, plan=plan, force=force))


# -- checks, inventory, hosts, vault ---------------------------------------------------------------


@main.command()
@click.option("--target", default="all", type=click.Choice(["all", "deploy-debian", "deploy-rke2"]),
              show_default=True, help="Which deployment's state to check.")
@common_options
@reports_input_errors
def verify(target, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """Check the hosts' state with testinfra (files, modes, services, sysctls, packages)."""
    from vmstation.verify import verify as verify_hosts

    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    sys.exit(verify_hosts(session, target))


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
@common_options
@reports_input_errors
def node_remove(host, yes, inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose):
    """Drain HOST, delete it from its cluster, reset it; nothing else moves."""
    if not yes:
        click.confirm(f"Drain, delete and reset {host}?", abort=True)
    session = _session(inventory_path, vault_password_file, trust_new_host_keys, ssh_config, verbose)
    sys.exit(_run(session, "node-remove", limit=(host,), verbose=verbose))


# -- shared ------------------------------------------------------------------------------------------


def _run(session, target, *, plan=False, only=(), start_from=None, skip=(), limit=(), resume=False, forks=32,
         as_json=False, show_diff=False, verbose=0) -> int:
    from vmstation.app import run_target
    from vmstation.report import format_plan, format_summary, progress_for, to_json

    progress = progress_for(sys.stderr, quiet=as_json)
    try:
        result = run_target(session, target, plan=plan, only=only, start_from=start_from, skip=skip, limit=limit,
                            resume=resume, forks=forks, listener=progress)
    finally:
        if progress:
            progress.close()
    if as_json:
        click.echo(to_json(result, plan=plan))
    else:
        if plan:
            click.echo(format_plan(result.outcomes, full=True if show_diff else None, verbose=verbose), nl=False)
        click.echo(format_summary(result.outcomes, inventory_path=session.inventory_path), nl=False)
        click.echo(f"journal: {result.journal_path}")
    if result.interrupted:
        _exit_now(result.exit_code)
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
