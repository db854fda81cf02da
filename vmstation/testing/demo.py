"""`make demo`: the homelab on three local boxes, for a newcomer with no homelab.

    python -m vmstation.testing.demo          boxes up, `fab deploy-debian` against them, summary shown,
                                              boxes left running
    python -m vmstation.testing.demo --down   tear the boxes down (also `make demo-down`)

The boxes live in a keeper process of their own (it holds the BoxSet and its apt
proxy), so they stay up after the demo returns; ``--down`` tells the keeper to
tear them down and waits until nothing is left.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DEMO_DIR = Path(os.environ.get("VMSTATION_DEMO_DIR", "demo"))
PREFIX, SUBNET = "vmsdemo", "10.77.8.0/24"
READY_TIMEOUT = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmstation.testing.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--down", action="store_true", help="tear the demo boxes down")
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)  # the keeper process itself
    args = parser.parse_args(argv)
    if args.keep:
        return keep_boxes()
    if args.down:
        return tear_down()
    return run_demo()


def run_demo() -> int:
    if os.geteuid() != 0:
        print("the demo boxes need root (network namespaces, systemd-nspawn)", file=sys.stderr)
        return 2
    inventory = start_keeper()
    print(f"boxes are up; inventory: {inventory}\n", flush=True)
    fab = Path(sys.executable).parent / "fab"
    code = subprocess.call([str(fab), "deploy-debian", "--inventory", str(inventory.resolve())], cwd=_repo_root())
    print(f"\nfab deploy-debian exited {code} (3: it stopped where this machine cannot go on, as shown above).")
    print(f"The boxes are still running: ssh -i {DEMO_DIR / 'id_ed25519'} root@<address in {inventory}>")
    print("Tear them down with:  make demo-down   (or: python -m vmstation.testing.demo --down)")
    print_grafana_hint()
    return 0 if code in (0, 3) else code


def print_grafana_hint() -> None:
    """The boxes cannot run Kubernetes, so no Grafana here: say where it answers on the real homelab."""
    from vmstation import dashboards
    from vmstation.errors import VmstationError
    from vmstation.inventory import load

    try:
        hint = dashboards.grafana_hint(load(_repo_root() / "hosts.toml"))     # read only: nothing connects
    except VmstationError as exc:
        hint = f"(hosts.toml: {exc})"
    print("\nNo Grafana on the boxes (no Kubernetes here). On the homelab of hosts.toml, after "
          "`fab deploy-debian`:\n" + hint + "\nPictures of its dashboards from real Prometheus data: "
          "docs/dashboards/*.png (README).")


def start_keeper() -> Path:
    """Start the keeper in its own session and wait for its inventory to appear."""
    DEMO_DIR.mkdir(exist_ok=True)
    ready = DEMO_DIR / "hosts.toml"
    ready.unlink(missing_ok=True)
    if _keeper_pid() is not None:
        tear_down()
    log = open(DEMO_DIR / "keeper.log", "ab")
    subprocess.Popen([sys.executable, "-m", "vmstation.testing.demo", "--keep"], stdin=subprocess.DEVNULL,
                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=os.getcwd())
    deadline = time.monotonic() + READY_TIMEOUT
    print("starting three boxes (the first time also builds their base, about a minute)...", flush=True)
    while not ready.exists():
        keeper_gone = _keeper_pid() is None and time.monotonic() > deadline - READY_TIMEOUT + 5
        if time.monotonic() > deadline or keeper_gone:
            raise SystemExit(f"the boxes did not come up: see {DEMO_DIR / 'keeper.log'}")
        time.sleep(0.5)
    return ready


def keep_boxes() -> int:
    """The keeper: hold the boxes until SIGTERM, then tear them down."""
    from vmstation.testing.boxes import BoxSet

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    (DEMO_DIR / "keeper.pid").write_text(str(os.getpid()))
    try:
        with BoxSet(names=["masternode", "storagenodet3500", "homelab"], prefix=PREFIX, subnet=SUBNET,
                    bridge=f"{PREFIX}0") as boxes:
            artifacts = (DEMO_DIR / "artifacts").resolve()
            (artifacts / "kubernetes").mkdir(parents=True, exist_ok=True)
            (DEMO_DIR / "known_hosts").write_bytes(boxes.known_hosts.read_bytes())
            (DEMO_DIR / "id_ed25519").write_bytes(boxes.client_key.read_bytes())
            (DEMO_DIR / "id_ed25519").chmod(0o600)
            _run_in_box(boxes, "storagenodet3500", "mkdir -p /srv/media")
            tmp = boxes.write_inventory(
                DEMO_DIR / "hosts.toml.tmp",
                host_extra={"masternode": {"always_on": True}, "storagenodet3500": {"media_path": "/srv/media"}},
                cluster_extra={"debian": {"artifacts_dir": str(artifacts)}})
            text = tmp.read_text().replace(str(boxes.known_hosts), str((DEMO_DIR / "known_hosts").resolve()))
            text = text.replace(str(boxes.client_key), str((DEMO_DIR / "id_ed25519").resolve()))
            tmp.write_text(text)
            tmp.rename(DEMO_DIR / "hosts.toml")
            while not stop:
                time.sleep(0.5)
    finally:
        (DEMO_DIR / "keeper.pid").unlink(missing_ok=True)
        (DEMO_DIR / "hosts.toml").unlink(missing_ok=True)
    return 0


def tear_down() -> int:
    pid = _keeper_pid()
    if pid is None:
        print("no demo boxes are running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _keeper_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.3)
    print("demo boxes torn down" if _keeper_pid() is None else f"keeper {pid} still running: see demo/keeper.log")
    return 0 if _keeper_pid() is None else 1


def _keeper_pid() -> int | None:
    path = DEMO_DIR / "keeper.pid"
    try:
        pid = int(path.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _run_in_box(boxes, name: str, command: str) -> None:
    from vmstation.testing.ssh_client import connect_checked

    client = connect_checked(boxes[name].address, boxes.known_hosts, boxes.client_key)
    try:
        _, stdout, _ = client.exec_command(command)
        stdout.channel.recv_exit_status()
    finally:
        client.close()


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


if __name__ == "__main__":
    sys.exit(main())
