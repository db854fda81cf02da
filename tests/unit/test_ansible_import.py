"""The older system's Ansible hosts.yml -> hosts.toml text that loads as the homelab."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.unit.conftest import homelab_inventory
from vmstation import vault
from vmstation.ansible_import import import_hosts_yml
from vmstation.errors import InventoryError
from vmstation.inventory import load_text

FIXTURE = Path(__file__).parent / "data" / "hosts.yml"


def variant(tmp_path: Path, old: str, new: str) -> Path:
    text = FIXTURE.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "hosts.yml"
    path.write_text(text.replace(old, new))
    return path


def test_the_old_inventory_imports_as_the_homelab():
    text = import_hosts_yml(FIXTURE)
    inventory = load_text(text, "hosts.toml")
    assert inventory == dataclasses.replace(homelab_inventory(), path="hosts.toml")


def test_unused_variables_and_disabled_host_key_checks_are_reported():
    header = [line for line in import_hosts_yml(FIXTURE).splitlines() if line.startswith("#")]
    assert any("Not imported" in line and "node_labels" in line and "ansible_connection" in line for line in header)
    assert any("vmstation checks them" in line for line in header)


def test_mac_pasted_from_ip_link_keeps_its_address_and_says_so(tmp_path):
    path = variant(tmp_path, "wol_mac: '00-e0-4c-68-cb-bf'", "wol_mac: '00:e0:4c:68:cb:bf brd ff:ff:ff:ff:ff:ff'")
    text = import_hosts_yml(path)
    assert load_text(text, "h.toml").host("storagenodet3500").mac == "00:e0:4c:68:cb:bf"
    assert ("[hosts.storagenodet3500]   # wol_mac had 'brd ff:ff:ff:ff:ff:ff' after the address (from `ip link`)"
            in text.splitlines())


def test_a_mac_with_other_trailing_text_is_still_an_error_naming_host_and_key(tmp_path):
    path = variant(tmp_path, "wol_mac: '00-e0-4c-68-cb-bf'", "wol_mac: '00:e0:4c:68:cb:bf mtu 1500'")
    with pytest.raises(InventoryError) as caught:
        import_hosts_yml(path)
    assert str(caught.value) == (
        f"{path}: host 'storagenodet3500': key 'wol_mac': '00:e0:4c:68:cb:bf mtu 1500' has text "
        "after the MAC address (pasted from `ip link`?); use '00:e0:4c:68:cb:bf'")


def test_a_literal_sudo_password_is_never_copied(tmp_path):
    path = variant(tmp_path, 'ansible_become_pass: "{{ homelab_become_password }}"',
                   "ansible_become_pass: Hunter2-literal")
    text = import_hosts_yml(path)
    assert "Hunter2-literal" not in text
    assert 'become_password = "vault:homelab_become_password"' in text
    assert ("# Before use: host 'homelab' had a literal password in the old inventory (not copied): add it to the "
            "vault as 'homelab_become_password'") in text


def test_an_inline_vault_value_becomes_a_reference(tmp_path):
    path = variant(tmp_path, 'ansible_become_pass: "{{ homelab_become_password }}"',
                   "ansible_become_pass: !vault |\n"
                   "        $ANSIBLE_VAULT;1.1;AES256\n"
                   "        6162636465")
    text = import_hosts_yml(path)
    assert "had an inline !vault value" in text and "$ANSIBLE_VAULT" not in text
    assert load_text(text, "h.toml").host("homelab").become_password == "vault:homelab_become_password"


def test_a_non_root_user_without_sudo_password_gets_passwordless_sudo(tmp_path):
    path = variant(tmp_path, '      ansible_become_pass: "{{ homelab_become_password }}"\n', "")
    host = load_text(import_hosts_yml(path), "h.toml").host("homelab")
    assert host.passwordless_sudo and host.become_password is None


def test_a_host_in_no_known_group_is_an_error(tmp_path):
    path = variant(tmp_path, "# Group variables for all nodes\n",
                   "backup_nodes:\n  hosts:\n    nas:\n      ansible_host: 192.168.4.70\n\n")
    with pytest.raises(InventoryError) as caught:
        import_hosts_yml(path)
    assert str(caught.value) == (f"{path}: host 'nas': in none of the groups monitoring_nodes, storage_nodes, "
                                 "compute_nodes: vmstation cannot tell its role")


def test_a_host_without_address_is_an_error(tmp_path):
    path = variant(tmp_path, "      ansible_host: 192.168.4.62\n", "")
    with pytest.raises(InventoryError) as caught:
        import_hosts_yml(path)
    assert str(caught.value) == (f"{path}: host 'homelab': key 'ansible_host': missing (vmstation needs the "
                                 "host's IP address)")


def test_a_templated_address_is_an_error(tmp_path):
    path = variant(tmp_path, "ansible_host: 192.168.4.62", 'ansible_host: "{{ homelab_ip }}"')
    with pytest.raises(InventoryError, match="host 'homelab': key 'ansible_host': is encrypted or a Jinja template"):
        import_hosts_yml(path)


def test_a_host_in_both_clusters_is_an_error(tmp_path):
    path = variant(tmp_path, "compute_nodes:\n  hosts:\n",
                   "compute_nodes:\n  hosts:\n    storagenodet3500:\n")
    with pytest.raises(InventoryError, match=r"host 'storagenodet3500': is in groups of two clusters \(debian, rke2\)"):
        import_hosts_yml(path)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = variant(tmp_path, "    cni_plugin: flannel\n", "    cni_plugin: [flannel\n")
    with pytest.raises(InventoryError, match=r"hosts.yml: line \d+: YAML syntax: "):
        import_hosts_yml(path)


def test_missing_file(tmp_path):
    with pytest.raises(InventoryError, match=r"nope.yml: file not found$"):
        import_hosts_yml(tmp_path / "nope.yml")


# -- the inventories people really have (fixtures in the shapes of the old project's over its history) ----

DATA = Path(__file__).parent / "data"


def test_a_directory_with_group_vars_keeps_the_sudo_password_as_a_reference():
    from vmstation.ansible_import import import_inventory

    imported = import_inventory(DATA / "ansible-2025-dir")
    inventory = load_text(imported.text, "h.toml")
    homelab = inventory.host("homelab")
    assert homelab.become_password == "vault:vault_homelab_sudo_password" and not homelab.passwordless_sudo
    assert inventory.host("masternode").become_password is None        # root needs none
    assert [h.mac for h in inventory.hosts] == ["d0:94:66:30:d6:63", "00:e0:4c:68:cb:bf", "d0:94:66:ad:8b:42"]
    assert inventory.host("storagenodet3500").media_path == "/srv/media"     # from group_vars/all.yml
    assert "fixture-only" not in imported.text
    report = "\n".join(imported.report)
    assert "group_vars/secrets.yml is an encrypted Ansible vault" in report
    assert "host 'masternode' had ansible_connection: local" in report
    assert ("dropped node_labels (masternode): vmstation sets the node labels its roles need"
            in imported.report)
    assert "dropped grafana_nodeport (" in report


def test_the_encrypted_group_vars_file_serves_as_the_vault(tmp_path):
    from vmstation.secrets import parse_secrets

    text = (DATA / "ansible-2025-dir" / "group_vars" / "secrets.yml").read_text()
    secrets = parse_secrets(vault.decrypt(text, "fixture-vault-password"), "secrets.yml")
    assert "vault_homelab_sudo_password" in secrets


def test_an_ini_inventory_with_host_vars_imports():
    from vmstation.ansible_import import import_inventory

    imported = import_inventory(DATA / "ansible-ini" / "hosts.ini")
    inventory = load_text(imported.text, "h.toml")
    assert [h.name for h in inventory.hosts] == ["masternode", "storagenodet3500", "homelab"]
    assert inventory.host("homelab").become_password == "vault:homelab_become_password"   # inline !vault
    assert inventory.host("homelab").ssh_port == 22 and inventory.host("homelab").os_family == "rhel"
    assert inventory.host("storagenodet3500").mac == "00:e0:4c:68:cb:bf"
    assert "$ANSIBLE_VAULT" not in imported.text


@pytest.mark.parametrize("document, fragment", [
    ("- masternode\n- storagenodet3500\n", "the document is a list, expected groups"),
    ("monitoring_nodes:\n  hosts:\n    - masternode\n",
     "group 'monitoring_nodes': 'hosts' must be a mapping, got a list"),
    ("monitoring_nodes:\n  hosts:\n    masternode: 192.168.4.63\n",
     "host 'masternode' must map to its variables, got a string"),
    ("all:\n  vars: [a, b]\n", "group 'all': 'vars' must be a mapping, got a list"),
])
def test_documents_of_the_wrong_shape_are_named(tmp_path, document, fragment):
    path = tmp_path / "hosts.yml"
    path.write_text(document)
    with pytest.raises(InventoryError) as caught:
        import_hosts_yml(path)
    assert str(caught.value).startswith(f"{path}: ") and fragment in str(caught.value)


def test_a_directory_without_an_inventory_file_is_named(tmp_path):
    with pytest.raises(InventoryError, match="directory without an inventory file"):
        import_hosts_yml(tmp_path)


def test_out_is_not_overwritten_without_force(tmp_path):
    from tests.unit.test_cli import vmstation as run_vmstation

    out = tmp_path / "hosts.toml"
    first = run_vmstation("inventory", "import", str(DATA / "ansible-2025-dir"), "--out", str(out), cwd=tmp_path)
    assert first.returncode == 0 and "dropped node_role" in first.stderr, first.stderr
    out.write_text("# edited by hand\n")
    second = run_vmstation("inventory", "import", str(FIXTURE), "--out", str(out), cwd=tmp_path)
    assert second.returncode == 2 and "already exists; give --force" in second.stderr
    assert out.read_text() == "# edited by hand\n"
    forced = run_vmstation("inventory", "import", str(FIXTURE), "--out", str(out), "--force", cwd=tmp_path)
    assert forced.returncode == 0 and out.read_text().startswith("# Imported from")


def test_a_group_vars_password_encrypted_inline_becomes_the_reference_it_was(tmp_path):
    from vmstation.ansible_import import import_inventory

    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yml").write_text(FIXTURE.read_text().replace(
        'ansible_become_pass: "{{ homelab_become_password }}"', 'ansible_become_pass: "{{ vault_sudo }}"'))
    (tmp_path / "group_vars" / "compute_nodes.yml").write_text(
        "vault_sudo: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162636465\n")
    imported = import_inventory(tmp_path)
    assert load_text(imported.text, "h.toml").host("homelab").become_password == "vault:vault_sudo"
    assert ("kept vault_sudo as the reference vault:vault_sudo: an inline !vault value in the old inventory, not "
            "copied; add it to the vault as 'vault_sudo'") in imported.report
    assert "$ANSIBLE_VAULT" not in imported.text
