"""deploy-rke2 for an RKE2 cluster of one server and one agent, on two boxes, as far as this machine allows.

The box `homelab` is the first server and `storagenodet3500` an agent. What runs for real: the prep of both
nodes, the first server's config.yaml, and the way the cluster token travels to a joining node. RKE2 cannot
be had here: the artifacts directory is empty, so rke2.install stops with Unsupported on both nodes and
everything that needs a running server is blocked. To follow the token the rest of the way, the test then
writes a token where rke2-server writes it (/var/lib/rancher/rke2/server/node-token, 0600 root, the
documented `K10<hash>::server:<secret>` form; a stand-in for the one file a running server would have made)
and runs rke2.join-configure alone: the agent's config.yaml must name the server and carry the token, mode
0600, and the token must appear in no process's argv, no output, no journal and no file on this machine.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys

import pytest
import yaml

from vmstation import versions
from vmstation.inventory import load
from vmstation.testing.argv_watch import ArgvWatch
from vmstation.testing.ssh_client import connect_checked, run
from vmstation.transport import SshOptions, connect
from vmstation.verify import checks_for, run_checks

VMSTATION = [sys.executable, "-m", "vmstation.cli"]
NODE_TOKEN = "/var/lib/rancher/rke2/server/node-token"
RKE2_FILES = ("/etc/rancher/rke2", "/etc/sysctl.d/90-rke2.conf", "/etc/modules-load.d/rke2.conf",
              "/etc/NetworkManager/conf.d/rke2-canal.conf", "/var/lib/rancher/rke2")


@pytest.fixture(scope="module")
def cluster(boxes, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rke2-cluster")
    (workdir / "rke2-release").mkdir()
    path = boxes.write_inventory(
        workdir / "hosts.toml",
        roles={"masternode": ("control-plane",), "homelab": ("server",), "storagenodet3500": ("agent",)},
        clusters={"masternode": "debian", "homelab": "rke2", "storagenodet3500": "rke2"},
        cluster_extra={"rke2": {"artifacts_dir": str(workdir / "rke2-release")}})
    state = {"inventory": path, "workdir": workdir, "boxes": boxes, "outputs": [], "argv": set()}
    yield state
    for name in ("homelab", "storagenodet3500"):      # leave the boxes as the other tests expect them
        _as_root(boxes, name, "rm -rf -- " + " ".join(RKE2_FILES))


def deploy(cluster, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VMSTATION_STATE_DIR": str(cluster["workdir"] / "state"), "VMSTATION_VAULT_PASSWORD": ""}
    with ArgvWatch() as watch:
        completed = subprocess.run([*VMSTATION, "deploy-rke2", *args, "--inventory", str(cluster["inventory"])],
                                   capture_output=True, text=True, timeout=600, env=env)
    cluster["argv"].update(watch.seen)
    cluster["outputs"] += [completed.stdout, completed.stderr]
    return completed


def outcomes(completed: subprocess.CompletedProcess) -> dict[tuple[str, str], dict]:
    return {(o["phase"], o["host"]): o for o in json.loads(completed.stdout)["outcomes"]}


def test_both_nodes_are_prepared_and_the_run_stops_at_the_install(cluster):
    first = deploy(cluster, "--json")
    assert first.returncode == 3, first.stderr
    results = outcomes(first)
    assert results[("rke2.system-prep", "homelab")]["status"] in ("changed", "ok")   # prepared by an earlier test
    assert results[("rke2.system-prep", "storagenodet3500")]["status"] == "changed"
    assert results[("rke2.configure", "homelab")]["status"] == "changed"
    for host in ("homelab", "storagenodet3500"):
        install = results[("rke2.install", host)]
        assert install["status"] == "unsupported" and f"RKE2 {versions.RKE2} air-gapped" in install["message"]
    blocked = {("rke2.start", "homelab"), ("rke2.monitoring", "homelab"), ("rke2.nodes-ready", "homelab"),
               ("rke2.join-configure", "storagenodet3500"), ("rke2.join-start", "storagenodet3500"),
               ("rke2.join-artifacts", "storagenodet3500")}
    assert {key: results[key]["status"] for key in blocked} == {key: "blocked" for key in blocked}
    assert ("rke2.configure", "storagenodet3500") not in results      # only the first server initialises
    install_step = results[("rke2.install", "storagenodet3500")]
    assert install_step["message"].startswith(f"RKE2 {versions.RKE2} air-gapped")


def test_the_agent_joins_with_the_server_url_and_the_token_read_from_the_first_server(cluster):
    boxes = cluster["boxes"]
    token = f"K10{secrets.token_hex(32)}::server:{secrets.token_hex(16)}"
    cluster["token"] = token
    status, text = _as_root(boxes, "homelab", f"install -d -m 0700 /var/lib/rancher/rke2/server && "
                                              f"umask 077 && cat > {NODE_TOKEN}", stdin=token + "\n")
    assert status == 0, text
    plan = deploy(cluster, "--plan", "--only", "rke2.join-configure")
    assert plan.returncode == 0, plan.stderr
    assert "(secret content of /etc/rancher/rke2/config.yaml not shown)" in plan.stdout
    joined = deploy(cluster, "--json", "--only", "rke2.join-configure")
    assert joined.returncode == 0, joined.stderr
    assert outcomes(joined)[("rke2.join-configure", "storagenodet3500")]["status"] == "changed"
    status, listing = _as_root(boxes, "storagenodet3500", "stat -c '%a %U %G' /etc/rancher/rke2/config.yaml && "
                                                          "cat /etc/rancher/rke2/config.yaml")
    assert status == 0, listing
    mode, content = listing.split("\n", 1)
    assert mode == "600 root root"
    config = yaml.safe_load(content)
    assert config["server"] == f"https://{boxes['homelab'].address}:9345" and config["token"] == token
    assert config["node-name"] == "storagenodet3500" and "cni" not in config      # agent keys only


def test_a_second_join_run_changes_nothing(cluster):
    again = deploy(cluster, "--json", "--only", "rke2.join-configure")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] == 0


def test_the_agents_config_is_copied_here_without_the_token(cluster):
    fetched = deploy(cluster, "--json", "--only", "rke2.join-artifacts")
    assert fetched.returncode == 0, fetched.stderr
    local = cluster["inventory"].parent / ".vmstation" / "artifacts" / "storagenodet3500"
    config = yaml.safe_load((local / "config.yaml").read_text())
    assert config["server"] == f"https://{cluster['boxes']['homelab'].address}:9345"
    assert config["token"] == "(not copied: the cluster token stays on the node)"
    assert stat.S_IMODE((local / "config.yaml").stat().st_mode) == 0o600
    assert (local / "rke2-agent.journal").exists() and not (local / "rke2.yaml").exists()


def test_verify_checks_each_node_by_its_role(cluster):
    inventory = load(cluster["inventory"])
    expected = {"homelab": {"rke2.system-prep", "rke2.configure"},
                "storagenodet3500": {"rke2.system-prep", "rke2.join-configure"}}
    for name, phases in expected.items():
        host = inventory.host(name)
        connection = connect(host, SshOptions(known_hosts=inventory.known_hosts))
        try:
            results = run_checks(connection, checks_for(host, inventory.cluster("rke2"), phases,
                                                        first_server="homelab"))
        finally:
            connection.close()
        assert {r.phase for r in results} == phases
        assert not [r for r in results if not r.passed], results


def test_the_token_appears_nowhere_but_on_the_two_nodes(cluster):
    token = cluster["token"]
    assert cluster["argv"], "the argv watch saw no process"
    assert not [argv for argv in cluster["argv"] if token in argv]
    assert not [text for text in cluster["outputs"] if token in text]
    written = [p for p in cluster["workdir"].rglob("*") if p.is_file()]
    assert written and not [p for p in written if token.encode() in p.read_bytes()]
    fetched = cluster["inventory"].parent / ".vmstation" / "artifacts" / "homelab" / "config.yaml"
    assert stat.S_IMODE(fetched.stat().st_mode) == 0o600
    for name in ("homelab", "storagenodet3500"):
        status, journal = _as_root(cluster["boxes"], name, "journalctl --no-pager -o verbose")
        assert status == 0 and token not in journal


def _as_root(boxes, name: str, script: str, stdin: str | None = None) -> tuple[int, str]:
    client = connect_checked(boxes[name].address, boxes.known_hosts, boxes.client_key)
    try:
        return run(client, script, stdin=stdin)
    finally:
        client.close()
