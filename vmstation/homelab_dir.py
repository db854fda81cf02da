"""`vmstation init [DIR]`: a homelab directory that works with both front ends.

It holds an annotated hosts.toml (or the one ``inventory import`` made from the older Ansible inventory), a
fabfile.py whose tasks come from the installed package (the same code as the repository's own), and a
.gitignore that keeps run journals and fetched kubeconfigs (``.vmstation/``) out of version control. Files
already there are kept unless ``force``.
"""

from __future__ import annotations

from pathlib import Path

FABFILE = '''"""`fab` tasks of this homelab: the vmstation commands, from the installed package (fab --list)."""

from vmstation.fab_tasks import ns  # noqa: F401  (Invoke looks for `ns`)
'''
GITIGNORE = "# run journals, fetched kubeconfigs and artifacts (0600 files): never commit them\n.vmstation/\n"

EXAMPLE_INVENTORY = '''# vmstation inventory: edit the addresses, MACs and names, then `vmstation inventory check`.
# Every key is checked when the file is loaded; a broken rule is one line naming this file, host and key.
# Precedence for SSH: a key set here, else ~/.ssh/config (HostName, User, Port, IdentityFile, ProxyJump),
# else the defaults (root, port 22, the agent's keys).

vault = "secrets.vault"          # Ansible Vault file: `vmstation vault edit secrets.vault`
known_hosts = "~/.ssh/known_hosts"

[defaults]
ssh_key = "~/.ssh/id_ed25519"    # unset: the agent and ~/.ssh/config

[power]
wol_broadcast = "192.168.4.255"                     # your LAN's subnet-directed broadcast
jellyfin_url = "http://192.168.4.61:30096"
jellyfin_api_key = "vault:jellyfin_api_key"         # Jellyfin dashboard -> API keys, stored in the vault

[clusters.debian]
kind = "kubeadm"                 # Kubernetes 1.29.15, Flannel; pod 10.244.0.0/16, services 10.96.0.0/12

[clusters.rke2]
kind = "rke2"                    # RKE2 v1.29.15+rke2r1, Canal; pod 10.42.0.0/16, services 10.43.0.0/16

[hosts.masternode]               # control plane; sends the Wake-on-LAN packets, so it never sleeps
address = "192.168.4.63"
cluster = "debian"
roles = ["control-plane"]
always_on = true
mac = "d0:94:66:30:d6:63"

[hosts.storagenodet3500]         # worker and Jellyfin host; sleeps when idle
address = "192.168.4.61"
cluster = "debian"
roles = ["worker", "jellyfin"]
mac = "00:e0:4c:68:cb:bf"
media_path = "/srv/media"

[hosts.homelab]                  # RHEL 10, single RKE2 server; a non-root user whose sudo password is in the vault
address = "192.168.4.62"
cluster = "rke2"
roles = ["server"]
ssh_user = "admin"
become_password = "vault:homelab_become_password"
os_family = "rhel"
'''


def init_directory(directory: str | Path, ansible_inventory: str | None = None, force: bool = False) -> list[str]:
    """Write the homelab directory; return what was done, one line each, ending with the next steps."""
    from vmstation.atomic import write_atomically
    from vmstation.errors import InputError

    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: exists and is not a directory")
    inventory, report = EXAMPLE_INVENTORY, []
    if ansible_inventory:
        from vmstation.ansible_import import import_inventory

        imported = import_inventory(ansible_inventory)
        inventory, report = imported.text, [f"  {line}" for line in imported.report]
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, content in (("hosts.toml", inventory), ("fabfile.py", FABFILE), (".gitignore", GITIGNORE)):
        path = root / name
        if path.exists() and not force:
            lines.append(f"kept {path} (already there; --force overwrites it)")
            continue
        write_atomically(str(path), content.encode(), 0o644)
        lines.append(f"wrote {path}")
    where = "" if root.resolve() == Path.cwd().resolve() else f"cd {root} && "
    lines += report
    lines.append(f"next: {where}vmstation vault edit secrets.vault (homelab_become_password, jellyfin_api_key), "
                 "vmstation inventory check --secrets, then vmstation plan deploy-debian (or fab plan deploy-debian)")
    return lines
