"""Deploy to the running Vagrant VMs and check them: the middle of tests/vagrant/run.sh.

    python -m tests.vagrant.deploy_vms WORKDIR [--local] [--connect-only]

1. The inventory: users and keys from ``vagrant ssh-config``, the fixed private
   addresses and roles from ``nodes.json``, and from inside each VM (through
   Vagrant's own SSH channel, which authenticates with the box's key and which
   nobody else can be on: the VMs were created by this run) its ed25519 host
   key, written to a known_hosts file, and the name of the NIC holding the
   private address (the inventory's ``interface``, so flannel's ``--iface``
   and kubelet's node-ip stay on the private network). vmstation then checks
   the host keys it meets against that file like on the homelab.
2. ``vmstation deploy-debian`` (and ``deploy-rke2`` when the RHEL-family VM
   is up), twice: the second run must change nothing.
3. The testinfra checks of ``vmstation.verify`` for every phase that ran.

``--local`` (this kind of machine): the VMs have no route out, so apt goes
through an ``AptProxy`` on the private network's host address that forwards
only to this machine's Debian mirrors; and kubeadm/kubelet/kubectl cannot be
had, so the cluster points at an artifacts directory without them and the
deploy must stop at debian.kube-binaries with exit 3, the later phases blocked.
``--connect-only`` (``make check-vagrant``): step 1, then one command as root on
each VM through vmstation's own transport, instead of steps 2 and 3.
Exit 0 when every expectation holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shlex
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from vmstation.inventory import Inventory, load
from vmstation.testing.apt_proxy import AptProxy
from vmstation.testing.inventory_file import InventoryHost, write_inventory
from vmstation.testing.known_hosts import KnownHost, write_known_hosts
from vmstation.transport import SshOptions, connect
from vmstation.verify import checks_for, run_checks

NODES_FILE = Path(__file__).with_name("nodes.json")
APT_PROXY_PORT = 3142
STOPPED_HERE = "debian.kube-binaries"       # where --local runs must stop (no kubeadm binaries here)
TARGETS = {"debian": "deploy-debian", "rke2": "deploy-rke2"}
EXIT_CANNOT_RUN_HERE = 3


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    workdir = Path(args.workdir)
    nodes = json.loads(NODES_FILE.read_text())
    running = [n for n in nodes["nodes"] if n["name"] in _running_machines()]
    if not running:
        print("no Vagrant VM is running")
        return 1
    gateway = str(ipaddress.ip_network(nodes["private_network"]).network_address + 1)
    with ExitStack() as stack:
        proxy_url = stack.enter_context(AptProxy(gateway, APT_PROXY_PORT)).url if args.local else None
        inventory_path = _timed("inventory from vagrant ssh-config", write_vagrant_inventory,
                                workdir, running, proxy_url, args.local)
        if args.connect_only:
            return 0 if _timed("vmstation reaches every VM", reach_all, load(inventory_path)) else 1
        return 0 if deploy_and_check(load(inventory_path), inventory_path, args.local) else 1


@dataclass(frozen=True)
class VmFacts:
    """What Vagrant tells about one running VM: its ``vagrant ssh-config`` (parsed), and from inside it
    its ed25519 host key and the NIC holding its private address."""

    ssh_config: dict[str, str]
    host_key: str
    interface: str


def write_vagrant_inventory(workdir: Path, nodes: list[dict], apt_proxy: str | None, local: bool) -> Path:
    """hosts.toml and known_hosts for the running VMs (see the module docstring)."""
    facts = {node["name"]: VmFacts(parse_ssh_config(_vagrant("ssh-config", node["name"])), *_ask_vm(node))
             for node in nodes}
    return write_inventory_files(workdir, nodes, facts, apt_proxy, local)


def write_inventory_files(workdir: Path, nodes: list[dict], facts: dict[str, VmFacts], apt_proxy: str | None,
                          local: bool) -> Path:
    """hosts.toml and known_hosts from nodes.json's entries and what Vagrant told about each VM.

    The address is the node's fixed private one (never ssh-config's HostName: a NAT address that every
    VirtualBox VM shares); user and key are Vagrant's (each VM its own key with public boxes).
    """
    known, hosts = [], []
    for node in nodes:
        vm = facts[node["name"]]
        known.append(KnownHost((node["address"], node["name"]), 22, vm.host_key))
        extra = {**node.get("extra", {}), "ssh_key": vm.ssh_config["identityfile"], "passwordless_sudo": True,
                 "interface": vm.interface}
        hosts.append(InventoryHost(name=node["name"], address=node["address"], port=22, roles=tuple(node["roles"]),
                                   cluster=node["cluster"], ssh_user=vm.ssh_config["user"], apt_proxy=apt_proxy,
                                   extra=tuple(extra.items())))
    known_hosts = write_known_hosts(workdir / "known_hosts", known)
    cluster_extra = {}
    if local:
        artifacts = workdir / "artifacts"
        (artifacts / "kubernetes").mkdir(parents=True, exist_ok=True)
        cluster_extra["debian"] = {"artifacts_dir": str(artifacts)}
    # each host carries its own ssh_key (public boxes get a key per VM); client_key is only the default
    default_key = Path(dict(hosts[0].extra)["ssh_key"])
    return write_inventory(workdir / "hosts.toml", hosts, client_key=default_key, known_hosts=known_hosts,
                           cluster_extra=cluster_extra)


def deploy_and_check(inventory: Inventory, inventory_path: Path, local: bool) -> bool:
    """Each cluster's target twice, then the checks of the phases that ran; True when all is as expected."""
    good = True
    for cluster in inventory.clusters:
        target = TARGETS[cluster.name]
        first = _timed(f"{target} (first run)", run_target, target, inventory_path, True)
        good &= _expect_first(first, local and cluster.kind == "kubeadm")
        second = _timed(f"{target} (second run)", run_target, target, inventory_path, False)
        good &= _expect_unchanged(second)
        good &= _timed(f"verify {target}", verify_phases, inventory, cluster.name, first)
    return good


def run_target(target: str, inventory_path: Path, per_phase: bool) -> dict:
    """``vmstation TARGET --json``; prints its summary (a line per phase and host when ``per_phase``)."""
    env = {**os.environ, "VMSTATION_VAULT_PASSWORD": ""}
    completed = subprocess.run([sys.executable, "-m", "vmstation.cli", target, "--json", "--inventory",
                                str(inventory_path)], capture_output=True, text=True, env=env, timeout=3600)
    try:
        result = json.loads(completed.stdout)
    except json.JSONDecodeError:
        print(f"{target}: exit {completed.returncode}, no JSON result; stderr:\n{completed.stderr.strip()}")
        return {"exit_code": completed.returncode, "changed": 0, "outcomes": [], "seconds": 0}
    result["exit_code"] = completed.returncode
    _print_summary(target, result, per_phase)
    return result


def reach_all(inventory: Inventory) -> bool:
    """One command as root on every host through vmstation's transport (host keys checked, sudo)."""
    options = SshOptions(known_hosts=inventory.known_hosts)
    good = True
    for host in inventory.hosts:
        connection = connect(host, options)
        try:
            result = connection.run("id -u", check=False)
        finally:
            connection.close()
        print(f"{host.name} ({host.address}): id -u as root gave {result.stdout.strip()!r}, exit {result.exit_code}")
        good &= result.exit_code == 0 and result.stdout.strip() == "0"
    return good


def verify_phases(inventory: Inventory, cluster_name: str, result: dict) -> bool:
    """vmstation.verify's checks of each host, for the phases the run reported done on it."""
    cluster = inventory.cluster(cluster_name)
    options = SshOptions(known_hosts=inventory.known_hosts)
    passed = failed = 0
    for host in inventory.hosts_of(cluster_name):
        done = {o["phase"] for o in result["outcomes"] if o["host"] == host.name and o["status"] in ("changed", "ok")}
        connection = connect(host, options)
        try:
            results = run_checks(connection, checks_for(host, cluster, done))
        finally:
            connection.close()
        for check in results:
            passed += check.passed
            failed += not check.passed
            if not check.passed:
                print(f"  FAIL {host.name} {check.phase}: {check.name} {check.detail}")
    print(f"verify {cluster_name}: {passed} checks passed, {failed} failed")
    return failed == 0 and passed > 0


def parse_ssh_config(text: str) -> dict[str, str]:
    """The output of ``vagrant ssh-config NAME`` as lower-case keys (the first value of each; Vagrant
    quotes an IdentityFile that holds a space). It must name a User and an IdentityFile."""
    config: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            config.setdefault(key.lower(), value.strip().strip('"'))
    missing = [key for key in ("user", "identityfile") if key not in config]
    if missing:
        raise SystemExit(f"vagrant ssh-config of {config.get('host', '?')}: no {', '.join(missing)} in {text!r}")
    return config


# -- helpers ---------------------------------------------------------------------------------------


def _ask_vm(node: dict) -> tuple[str, str]:
    """The VM's ed25519 host key and the NIC holding its private address, over Vagrant's own SSH."""
    script = (f"cat /etc/ssh/ssh_host_ed25519_key.pub; "
              f"ip -o -4 addr show to {shlex.quote(node['address'] + '/32')}")
    lines = _vagrant("ssh", node["name"], "-c", script).splitlines()
    keys = [line.strip() for line in lines if line.startswith("ssh-ed25519 ")]
    links = [line.split()[1] for line in lines if f" inet {node['address']}/" in line]
    if len(keys) != 1 or len(links) != 1:
        raise SystemExit(f"{node['name']}: could not read its host key and the NIC of {node['address']} "
                         f"(got: {lines!r})")
    return keys[0], links[0]


def _expect_first(result: dict, stops_at_binaries: bool) -> bool:
    statuses = {(o["phase"], o["host"]): o["status"] for o in result["outcomes"]}
    failed = [key for key, status in statuses.items() if status == "failed"]
    if failed:
        print(f"  failed: {failed}")
        return False
    if not stops_at_binaries:
        return result["exit_code"] == 0
    stopped = {phase for (phase, _), status in statuses.items() if status == "unsupported"}
    if result["exit_code"] != EXIT_CANNOT_RUN_HERE or stopped != {STOPPED_HERE}:
        print(f"  expected exit 3 stopping at {STOPPED_HERE}; got exit {result['exit_code']}, stopped at {stopped}")
        return False
    return True


def _expect_unchanged(result: dict) -> bool:
    changed = [(o["phase"], o["host"], [s["label"] for s in o["steps"] if s["status"] == "change"])
               for o in result["outcomes"] if o["changed"]]
    if changed:
        print(f"  second run changed: {changed}")
    return not changed and not any(o["status"] == "failed" for o in result["outcomes"])


def _print_summary(target: str, result: dict, per_phase: bool) -> None:
    print(f"{target}: exit {result['exit_code']}, {result['changed']} changed, {result['seconds']:.1f} s")
    for o in result["outcomes"] if per_phase else ():
        note = f"  ({o['message']})" if o["message"] and o["status"] not in ("changed", "ok") else ""
        print(f"  {o['phase']:<28} {o['host']:<18} {o['status']:<11} {o['changed']:>2} {o['seconds']:6.1f} s{note}")


def _running_machines() -> set[str]:
    """Names of the machines ``vagrant status`` reports as running."""
    running = set()
    for line in _vagrant("status", "--machine-readable").splitlines():
        fields = line.split(",")
        if len(fields) >= 4 and fields[2] == "state" and fields[3] == "running":
            running.add(fields[1])
    return running


def _vagrant(*args: str) -> str:
    completed = subprocess.run(["vagrant", *args], capture_output=True, text=True, timeout=300)
    if completed.returncode != 0:
        raise SystemExit(f"vagrant {' '.join(args[:2])}: exit {completed.returncode}: {completed.stderr.strip()}")
    return completed.stdout


def _timed(step: str, function, *args):
    started = time.monotonic()
    value = function(*args)
    print(f"[time] {step}: {time.monotonic() - started:.1f} s", flush=True)
    return value


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", help="where hosts.toml, known_hosts and the artifacts directory go")
    parser.add_argument("--local", action="store_true", help="this machine: apt proxy, no kubeadm binaries")
    parser.add_argument("--connect-only", action="store_true",
                        help="make check-vagrant: the inventory, then one command on each VM, no deploy")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
