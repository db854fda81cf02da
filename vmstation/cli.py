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

inventory_option = click.option("--inventory", "-i", "inventory_path", metavar="PATH", envvar="VMSTATION_INVENTORY",
                                default="hosts.toml", show_default=True, help="The inventory file.")

TARGET_OPTIONS = [
    click.option("--plan", is_flag=True, help="Show every file diff and command per host and phase; change nothing."),
    click.option("--only", multiple=True, metavar="PHASE", help="Run only this phase (repeatable)."),
    click.option("--from", "start_from", metavar="PHASE", help="Start at this phase, skip the ones before it."),
    click.option("--limit", multiple=True, metavar="HOST", help="Only these hosts (repeatable)."),
    click.option("--resume", is_flag=True, help="Skip what the last run of this target finished."),
    click.option("--forks", default=32, show_default=True, help="Hosts worked on at once."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
]


def common_options(function):
    """--inventory, vault password and host-key options, on every command that reads the inventory."""
    for option in reversed([
        inventory_option,
        click.option("--vault-password-file", metavar="PATH", envvar="VMSTATION_VAULT_PASSWORD_FILE",
                     help="File holding the vault password (else $VMSTATION_VAULT_PASSWORD, else a prompt)."),
        click.option("--trust-new-host-keys", is_flag=True,
                     help="Record host keys seen for the first time in known_hosts (a changed key is still refused)."),
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


def _session(inventory_path, vault_password_file, trust_new_host_keys):
    from vmstation.app import Session

    return Session(inventory_path=inventory_path, vault_password_file=vault_password_file,
                   trust_new_host_keys=trust_new_host_keys)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmstation")
def main():
    """Build and run a two-cluster Kubernetes homelab over SSH: plan it, deploy it, sleep and wake it."""


# -- deploy targets ------------------------------------------------------------------------------


def target_command(name: str, target: str, help_text: str):
    def command(inventory_path, vault_password_file, trust_new_host_keys, plan, only, start_from, limit, resume,
                forks, as_json):
        session = _session(inventory_path, vault_password_file, trust_new_host_keys)
        sys.exit(_run(session, target, plan, only, start_from, limit, resume, forks, as_json))
    command.__doc__ = help_text
    command = reports_input_errors(command)
    for option in reversed(TARGET_OPTIONS):
        command = option(command)
    return main.command(name)(common_options(command))


target_command("deploy-debian", "deploy-debian",
               "Deploy the Debian kubeadm cluster: binaries, prep, CNI, init, join, Flannel, Ready, apps.")
target_command("deploy-rke2", "deploy-rke2",
               "Deploy the RKE2 cluster: RHEL prep, install, configure, start, monitoring, artifacts.")


@main.command()
@click.argument("target")
@click.option("--limit", multiple=True, metavar="HOST", help="Only these hosts (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@common_options
@reports_input_errors
def plan(target, limit, as_json, inventory_path, vault_password_file, trust_new_host_keys):
    """Show what TARGET would change on each host (file diffs, commands); change nothing."""
    session = _session(inventory_path, vault_password_file, trust_new_host_keys)
    sys.exit(_run(session, target, True, (), None, limit, False, 32, as_json))


@main.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--limit", multiple=True, metavar="HOST", help="Only these hosts (repeatable).")
@click.option("--plan", is_flag=True, help="Show what would be removed; change nothing.")
@common_options
@reports_input_errors
def reset(yes, limit, plan, inventory_path, vault_password_file, trust_new_host_keys):
    """Tear the clusters down: kubeadm reset, CNI leftovers, cluster firewall rules, rke2-uninstall.sh."""
    if not plan and not yes:
        click.confirm("Reset the clusters on " + (", ".join(limit) or "every host") + "? This removes them", abort=True)
    session = _session(inventory_path, vault_password_file, trust_new_host_keys)
    sys.exit(_run(session, "reset", plan, (), None, limit, False, 32, False))


@main.command()
@click.argument("target")
@click.option("--out", "out_dir", required=True, metavar="DIR", help="Where to write DIR/<host>/<path>.")
@inventory_option
@reports_input_errors
def render(target, out_dir, inventory_path):
    """Write every file TARGET would put on each host into DIR, from the inventory alone (no SSH)."""
    from vmstation.app import Session, render_target

    written = render_target(Session(inventory_path=inventory_path), target, out_dir)
    click.echo(f"{len(written)} files written under {out_dir} (see {out_dir}/ASSUMPTIONS.txt)")


# -- power ---------------------------------------------------------------------------------------


@main.command()
@click.argument("hosts", nargs=-1)
@click.option("--from-here", is_flag=True, help="Send the magic packets from this machine, not from masternode.")
@click.option("--interface", metavar="IFACE", help="Interface to send on (default: the inventory's wol_interface).")
@click.option("--timeout", default=600, show_default=True, help="Seconds to wait for each host to answer.")
@click.option("--plan", is_flag=True, help="Show what would be sent and run; send nothing.")
@common_options
@reports_input_errors
def wake(hosts, from_here, interface, timeout, plan, inventory_path, vault_password_file, trust_new_host_keys):
    """Wake sleeping workers (Wake-on-LAN), wait until they answer, then undo what sleep did."""
    from vmstation.power.cycle import wake as wake_hosts

    session = _session(inventory_path, vault_password_file, trust_new_host_keys)
    sys.exit(wake_hosts(session, hosts, from_here=from_here, interface=interface, timeout=timeout, plan=plan))


@main.command()
@click.option("--check", "check_only", is_flag=True,
              help="Only decide (idle or not, with reasons); exit 0 idle, 4 awake.")
@click.option("--plan", is_flag=True, help="Show the whole sleep sequence; change nothing.")
@click.option("--force", is_flag=True, help="Sleep even if the idle policy says someone is using the homelab.")
@common_options
@reports_input_errors
def sleep(check_only, plan, force, inventory_path, vault_password_file, trust_new_host_keys):
    """Put idle workers to sleep: cordon, drain, scale down (recorded), arm WoL, shut down or suspend."""
    from vmstation.power.cycle import sleep as sleep_hosts

    session = _session(inventory_path, vault_password_file, trust_new_host_keys)
    sys.exit(sleep_hosts(session, check_only=check_only, plan=plan, force=force))


# -- checks, inventory, vault ----------------------------------------------------------------------


@main.command()
@click.option("--target", default="all", type=click.Choice(["all", "deploy-debian", "deploy-rke2"]),
              show_default=True, help="Which deployment's state to check.")
@common_options
@reports_input_errors
def verify(target, inventory_path, vault_password_file, trust_new_host_keys):
    """Check the hosts' state with testinfra (files, modes, services, sysctls, packages)."""
    from vmstation.verify import verify as verify_hosts

    session = _session(inventory_path, vault_password_file, trust_new_host_keys)
    sys.exit(verify_hosts(session, target))


@main.group()
def inventory():
    """Check, show or import the inventory."""


@inventory.command("check")
@inventory_option
@reports_input_errors
def inventory_check(inventory_path):
    """Load the inventory and check every rule; one line per problem, exit 2 if any."""
    from vmstation.inventory import load

    loaded = load(inventory_path)
    click.echo(f"{inventory_path}: ok ({len(loaded.hosts)} hosts, {len(loaded.clusters)} clusters)")


@inventory.command("show")
@inventory_option
@reports_input_errors
def inventory_show(inventory_path):
    """Print the hosts as a table."""
    from vmstation.inventory import load

    loaded = load(inventory_path)
    rows = [("host", "address", "cluster", "roles", "user", "mac", "power")]
    for h in loaded.hosts:
        rows.append((h.name, h.address, h.cluster, ",".join(h.roles), h.ssh_user, h.mac or "-",
                     "always on" if h.always_on else h.sleep_method))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


@inventory.command("import")
@click.argument("hosts_yml")
@click.option("--out", "out_path", default="-", show_default=True, help="Where to write the hosts.toml ('-': stdout).")
@reports_input_errors
def inventory_import(hosts_yml, out_path):
    """Turn the older system's Ansible hosts.yml into a hosts.toml."""
    from vmstation.ansible_import import import_hosts_yml

    text = import_hosts_yml(hosts_yml)
    if out_path == "-":
        click.echo(text, nl=False)
    else:
        from vmstation.atomic import write_atomically

        write_atomically(out_path, text.encode(), 0o644)
        click.echo(f"wrote {out_path}")


@main.group()
def vault():
    """Encrypt, view or edit the vault (Ansible Vault 1.1 format) that keeps sudo passwords and API keys."""


def _vault_password(password_file):
    from vmstation.secrets import read_vault_password

    return read_vault_password(password_file)


@vault.command("encrypt")
@click.argument("path")
@click.option("--vault-password-file", metavar="PATH", envvar="VMSTATION_VAULT_PASSWORD_FILE")
@reports_input_errors
def vault_encrypt(path, vault_password_file):
    """Encrypt the plaintext file PATH in place."""
    from vmstation.secrets import vault_encrypt as encrypt

    encrypt(path, _vault_password(vault_password_file))
    click.echo(f"encrypted {path}")


@vault.command("view")
@click.argument("path")
@click.option("--vault-password-file", metavar="PATH", envvar="VMSTATION_VAULT_PASSWORD_FILE")
@reports_input_errors
def vault_view(path, vault_password_file):
    """Print the decrypted content of PATH."""
    from vmstation.secrets import vault_view as view

    click.echo(view(path, _vault_password(vault_password_file)), nl=False)


@vault.command("edit")
@click.argument("path")
@click.option("--vault-password-file", metavar="PATH", envvar="VMSTATION_VAULT_PASSWORD_FILE")
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
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common_options
@reports_input_errors
def node_remove(host, yes, inventory_path, vault_password_file, trust_new_host_keys):
    """Drain HOST, delete it from its cluster, reset it; nothing else moves."""
    if not yes:
        click.confirm(f"Drain, delete and reset {host}?", abort=True)
    session = _session(inventory_path, vault_password_file, trust_new_host_keys)
    sys.exit(_run(session, "node-remove", False, (), None, (host,), False, 32, False))


# -- shared ------------------------------------------------------------------------------------------


def _run(session, target, plan, only, start_from, limit, resume, forks, as_json) -> int:
    from vmstation.app import run_target
    from vmstation.report import format_plan, format_summary, progress_for, to_json

    progress = progress_for(sys.stderr, quiet=as_json)
    try:
        result = run_target(session, target, plan=plan, only=only, start_from=start_from, limit=limit,
                            resume=resume, forks=forks, listener=progress)
    finally:
        if progress:
            progress.close()
    if as_json:
        click.echo(to_json(result))
    else:
        if plan:
            click.echo(format_plan(result.outcomes), nl=False)
        click.echo(format_summary(result.outcomes), nl=False)
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


if __name__ == "__main__":
    main()
