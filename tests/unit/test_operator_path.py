"""The operator's path through the CLI, as a new user walks it (issue 12): installed commands, found
inventories, every problem at once, options shared by `vmstation` and `fab`, Ansible habits.

The commands run as the installed console scripts in fresh processes; none reaches a host (the inventories
name addresses of the test subnet and every command here stops before connecting, or needs no SSH).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.unit.test_cli import GOOD_INVENTORY, assert_one_line_error, vmstation
from vmstation import vault

FAB = Path(sys.executable).with_name("fab")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def good_inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.toml"
    path.write_text(GOOD_INVENTORY.format(known_hosts=tmp_path / "known_hosts"))
    return path


# -- found where users stand -----------------------------------------------------------------------


def test_hosts_toml_is_found_from_a_subdirectory_and_named_in_the_first_line(tmp_path, good_inventory):
    deeper = tmp_path / "notes" / "2026"
    deeper.mkdir(parents=True)
    result = vmstation("inventory", "check", cwd=deeper)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{good_inventory}: ok (2 hosts, 1 clusters)"
    plan = vmstation("plan", "deploy-debian", "--only", "debian.system-prep", cwd=deeper,
                     env={"VMSTATION_ALLOWED_NETWORKS": "127.0.0.1/32"})   # the guard refuses 10.77.5.x: no packet
    assert plan.stderr.splitlines()[0] == f"vmstation deploy-debian (plan): inventory {good_inventory}"


def test_no_inventory_anywhere_says_where_it_looked(tmp_path):
    result = vmstation("inventory", "check", cwd=tmp_path)
    assert_one_line_error(result, "hosts.toml: file not found in", "vmstation init")


def test_a_utf8_bom_is_accepted(tmp_path, good_inventory):
    good_inventory.write_bytes(b"\xef\xbb\xbf" + good_inventory.read_bytes())
    result = vmstation("inventory", "check", "-i", str(good_inventory), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_an_executable_vault_password_file_is_run_and_its_stdout_used(tmp_path, good_inventory):
    (tmp_path / "secrets.vault").write_text(vault.encrypt(b'sudo_pw = "s3cret"\n', "from-the-script"))
    script = tmp_path / "vault-pass.sh"
    script.write_text("#!/bin/sh\necho from-the-script\n")
    script.chmod(0o755)
    text = good_inventory.read_text().replace('known_hosts =', 'vault = "secrets.vault"\nknown_hosts =')
    good_inventory.write_text(text.replace('roles = ["worker"]', 'roles = ["worker"]\nssh_user = "ops"\n'
                                           'become_password = "vault:sudo_pw"'))
    ok = vmstation("inventory", "check", "--secrets", "--vault-password-file", str(script), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    script.write_text("#!/bin/sh\necho not-the-password\n")
    wrong = vmstation("inventory", "check", "--secrets", cwd=tmp_path,
                      env={"VMSTATION_VAULT_PASSWORD_FILE": str(script)})
    assert_one_line_error(wrong, "wrong vault password")


# -- inventory check: every problem, the vault, what cannot be deployed ------------------------------


def test_inventory_check_reports_every_problem_one_line_each(tmp_path, good_inventory):
    text = good_inventory.read_text().replace('address = "10.77.5.3"', 'address = "10.77.5.300"')
    text = text.replace('"00:e0:4c:68:cb:bf"', '"00:e0:4c:68:cb:bf brd ff:ff:ff:ff:ff:ff"')
    text += '\n[power]\nidle_hours = -1\n'
    good_inventory.write_text(text)
    result = vmstation("inventory", "check", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert "host 'storagenodet3500': key 'address': '10.77.5.300' is not an IPv4 or IPv6 address" in lines[0]
    assert "host 'storagenodet3500': key 'mac'" in lines[1] and "pasted from `ip link`" in lines[1]
    assert "key 'power.idle_hours'" in lines[2]
    # every other command still stops at the first, with one line
    assert_one_line_error(vmstation("plan", "deploy-debian", cwd=tmp_path), "key 'address'")


def test_inventory_check_secrets_names_every_missing_vault_key(tmp_path, good_inventory):
    (tmp_path / "secrets.vault").write_text(vault.encrypt(b'other = "x"\n', "pw"))
    text = good_inventory.read_text().replace('known_hosts =', 'vault = "secrets.vault"\nknown_hosts =')
    text = text.replace('roles = ["worker"]', 'roles = ["worker"]\nssh_user = "ops"\nbecome_password = "vault:sudo_pw"')
    text += '\n[power]\njellyfin_url = "http://10.77.5.3:30096"\njellyfin_api_key = "vault:jellyfin_api_key"\n'
    good_inventory.write_text(text)
    plain = vmstation("inventory", "check", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr          # without --secrets the vault stays shut
    result = vmstation("inventory", "check", "--secrets", cwd=tmp_path, env={"VMSTATION_VAULT_PASSWORD": "pw"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 2, result.stderr
    assert "host 'storagenodet3500': key 'become_password'" in lines[0] and "'sudo_pw'" in lines[0]
    assert "key 'power.jellyfin_api_key'" in lines[1] and "'jellyfin_api_key'" in lines[1]


def _rke2_inventory(tmp_path, hosts):
    lines = ['[clusters.rke2]', 'kind = "rke2"']
    for name, address, role in hosts:
        lines += [f"[hosts.{name}]", f'address = "{address}"', 'cluster = "rke2"', f'roles = ["{role}"]']
    (tmp_path / "hosts.toml").write_text("\n".join(lines) + "\n")


def test_rke2_topologies_deploy_rke2_deploys_are_accepted(tmp_path):
    _rke2_inventory(tmp_path, [("a", "10.77.5.2", "server"), ("b", "10.77.5.3", "agent")])
    result = vmstation("inventory", "check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_rke2_topologies_etcd_cannot_keep_are_refused(tmp_path):
    _rke2_inventory(tmp_path, [("a", "10.77.5.2", "server"), ("b", "10.77.5.3", "server")])
    assert_one_line_error(vmstation("inventory", "check", cwd=tmp_path), "key 'clusters.rke2'",
                          "rke2 cluster has 2 servers (a, b)")


# -- Ansible habits ----------------------------------------------------------------------------------


def test_phases_lists_a_target_in_run_order(tmp_path):
    result = vmstation("phases", "deploy-rke2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert names[:3] == ["certs.rke2-expiry", "rke2.system-prep", "rke2.install"] and "rke2.artifacts" in names
    assert result.stdout.splitlines()[0].startswith("deploy-rke2: ")


def run_plan_json(tmp_path, *args):
    """A plan whose hosts the guard refuses: it ends before any packet, with every option already parsed."""
    result = vmstation("deploy-debian", "--check", "--json", *args, cwd=tmp_path,
                       env={"VMSTATION_ALLOWED_NETWORKS": "127.0.0.1/32"})
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_limit_takes_commas_globs_clusters_and_roles(tmp_path, good_inventory):
    hosts = {o["host"] for o in run_plan_json(tmp_path, "--limit", "storage*")["outcomes"]}
    assert hosts == {"storagenodet3500"}
    hosts = {o["host"] for o in run_plan_json(tmp_path, "-l", "control-plane,storagenodet3500")["outcomes"]}
    assert hosts == {"masternode", "storagenodet3500"}
    hosts = {o["host"] for o in run_plan_json(tmp_path, "--limit", "debian")["outcomes"]}
    assert hosts == {"masternode", "storagenodet3500"}
    assert_one_line_error(vmstation("deploy-debian", "--check", "--limit", "nas*", cwd=tmp_path),
                          "--limit names unknown host 'nas*'")


def test_skip_and_only_take_commas_and_a_skipped_phase_is_left_out(tmp_path, good_inventory):
    phases = {o["phase"] for o in run_plan_json(tmp_path, "--only", "debian.system-prep,debian.containerd",
                                                "--skip", "debian.containerd")["outcomes"]}
    assert phases == {"debian.system-prep"}
    assert_one_line_error(vmstation("deploy-debian", "--check", "--skip", "debian.nope", cwd=tmp_path),
                          "--skip: phase 'debian.nope' is not part of target 'deploy-debian'")


def test_plan_takes_only_and_from(tmp_path, good_inventory):
    result = vmstation("plan", "deploy-debian", "--from", "debian.flannel", "--json", cwd=tmp_path,
                       env={"VMSTATION_ALLOWED_NETWORKS": "127.0.0.1/32"})
    phases = [o["phase"] for o in json.loads(result.stdout)["outcomes"]]
    assert phases[0] == "debian.flannel" and "debian.system-prep" not in phases


def test_environment_sets_the_options_people_set_once(tmp_path, good_inventory):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = vmstation("inventory", "check", cwd=elsewhere, env={"VMSTATION_INVENTORY": str(good_inventory)})
    assert result.returncode == 0, result.stderr
    from vmstation.cli import main

    trust = next(p for p in main.get_command(None, "deploy-debian").params if p.name == "trust_new_host_keys")
    assert trust.envvar == "VMSTATION_TRUST_NEW_HOST_KEYS"


# -- one interface, two front ends -------------------------------------------------------------------


def commands_of(group: click.Group, path=()):
    for name in group.list_commands(None):
        command = group.get_command(None, name)
        if isinstance(command, click.Group):
            yield from commands_of(command, path + (name,))
        else:
            yield path + (name,), command


def test_every_vmstation_option_is_a_fab_flag_with_the_same_names_and_kind():
    from vmstation.cli import main
    from vmstation.fab_tasks import ns

    checked = 0
    for path, command in commands_of(main):
        task = ns[".".join(path)]
        flags = {tuple(a.names): a for a in task.get_arguments()}
        for param in command.params:
            if isinstance(param, click.Option):
                names = tuple([o[2:] for o in param.opts if o.startswith("--")] +
                              [o[1:] for o in param.opts if not o.startswith("--")])
            else:
                names = (param.name.replace("_", "-"),)
            assert names in flags, f"fab {'.'.join(path)} lacks {names}"
            argument = flags.pop(names)
            if isinstance(param, click.Option) and param.is_flag:
                assert argument.kind is bool
            elif getattr(param, "multiple", False) or param.nargs == -1:
                assert argument.kind is list
            checked += 1
        assert not flags, f"fab {'.'.join(path)} has flags vmstation lacks: {list(flags)}"
    assert checked > 80


def test_fab_runs_the_same_command_with_the_same_exit_code_and_output(tmp_path, good_inventory):
    if not FAB.exists():
        pytest.skip("fab is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMSTATION_")}
    fab = subprocess.run([str(FAB), "-r", str(REPO), "inventory.check", "-i", str(good_inventory)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60)
    cli = vmstation("inventory", "check", "-i", str(good_inventory), cwd=tmp_path)
    assert (fab.returncode, fab.stdout) == (cli.returncode, cli.stdout)
    fab = subprocess.run([str(FAB), "-r", str(REPO), "deploy-debian", "--check", "--json", "--limit",
                          "masternode,storagenodet3500", "-i", str(good_inventory), "--trust-new-host-keys"],
                         cwd=tmp_path, env={**env, "VMSTATION_ALLOWED_NETWORKS": "127.0.0.1/32"},
                         capture_output=True, text=True, timeout=60)
    assert fab.returncode == 1 and {o["host"] for o in json.loads(fab.stdout)["outcomes"]} == {
        "masternode", "storagenodet3500"}


# -- vmstation init ------------------------------------------------------------------------------------


def test_init_makes_a_homelab_directory_that_both_front_ends_read(tmp_path):
    result = vmstation("init", "lab", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lab = tmp_path / "lab"
    assert sorted(p.name for p in lab.iterdir()) == [".gitignore", "fabfile.py", "hosts.toml"]
    assert ".vmstation/" in (lab / ".gitignore").read_text().splitlines()
    assert result.stdout.splitlines()[-1].startswith("next: cd lab && vmstation vault edit secrets.vault")
    assert vmstation("inventory", "check", cwd=lab).returncode == 0
    if FAB.exists():
        listed = subprocess.run([str(FAB), "--list"], cwd=lab, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and "deploy-debian" in listed.stdout and "inventory.check" in listed.stdout
    (lab / "hosts.toml").write_text("# mine\n")
    again = vmstation("init", "lab", cwd=tmp_path)
    assert "kept lab/hosts.toml" in again.stdout and (lab / "hosts.toml").read_text() == "# mine\n"


def test_init_from_the_old_ansible_inventory(tmp_path):
    source = Path(__file__).parent / "data" / "ansible-2025-dir"
    result = vmstation("init", "lab", "--from-ansible", str(source), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'become_password = "vault:vault_homelab_sudo_password"' in (tmp_path / "lab" / "hosts.toml").read_text()


# -- packaging -------------------------------------------------------------------------------------------


def test_the_wheel_lists_every_package_but_the_test_harness():
    import configparser

    from setuptools import find_packages

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = set(find_packages(str(REPO), include=["vmstation", "vmstation.*"]))
    assert listed == (found - {p for p in found if p.startswith("vmstation.testing")}) | {"vmstation.template_files"}


def test_templates_are_read_through_importlib_resources():
    import importlib.resources

    from vmstation.templates import TEMPLATE_DIR

    assert TEMPLATE_DIR == Path(str(importlib.resources.files("vmstation.template_files")))
    assert (TEMPLATE_DIR / "system" / "modules-kubernetes.conf.j2").is_file()


def test_executable_bit_is_what_makes_a_password_file_a_script(tmp_path):
    from vmstation.secrets import read_vault_password

    plain = tmp_path / "pw"
    plain.write_text("#!/bin/sh\necho no\n")
    assert read_vault_password(plain).reveal() == "#!/bin/sh\necho no"
    plain.chmod(plain.stat().st_mode | stat.S_IXUSR)
    assert read_vault_password(plain).reveal() == "no"
