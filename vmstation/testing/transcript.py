"""The README's first-run transcript, made by running it: `make transcript` (root; boxes need the lock).

    python -m vmstation.testing.transcript [--readme README.md]

Three boxes come up (the demo's prefix and subnet: vmsdemo, 10.77.8.0/24); a homelab directory is made as an
operator would have it (hosts.toml, a key, an empty known_hosts: first contact), and the commands of the
README's operator path run one after another in it. Their output, with the temporary paths written as
``~/homelab``, replaces the part of the README between the transcript markers, so it stays true.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vmstation.testing.demo import PREFIX, SUBNET, _repo_root, _run_in_box

START, END = "<!-- transcript:start -->", "<!-- transcript:end -->"
STEPS = [
    "vmstation inventory check",
    "vmstation plan deploy-debian --only debian.system-prep",
    "vmstation hosts trust masternode storagenodet3500 homelab",
    "vmstation plan deploy-debian",
    "vmstation deploy-debian",
    "vmstation deploy-debian --only debian.system-prep,debian.containerd",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmstation.testing.transcript", description=__doc__.split("\n")[0])
    parser.add_argument("--readme", default=str(_repo_root() / "README.md"))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the boxes need root (network namespaces, systemd-nspawn)", file=sys.stderr)
        return 2
    text = record()
    readme = Path(args.readme)
    content = readme.read_text()
    head, _, rest = content.partition(START)
    _, _, tail = rest.partition(END)
    readme.write_text(f"{head}{START}\n{text}{END}{tail}")
    print(f"transcript written into {readme}")
    return 0


def record() -> str:
    from vmstation.testing.boxes import BoxSet

    lab = Path(tempfile.mkdtemp(prefix="vmstation-homelab-"))
    try:
        with BoxSet(names=["masternode", "storagenodet3500", "homelab"], prefix=PREFIX, subnet=SUBNET,
                    bridge=f"{PREFIX}0") as boxes:
            _homelab_directory(boxes, lab)
            started = time.monotonic()
            parts = [_step(command, lab) for command in STEPS]
            minutes = (time.monotonic() - started) / 60
    finally:
        shutil.rmtree(lab, ignore_errors=True)
    made = time.strftime("%Y-%m-%d")
    return (f"Recorded {made} by `make transcript` against the demo boxes (all commands: {minutes:.1f} minutes; "
            "the boxes reach the Debian mirror through an apt proxy).\n\n```console\n" + "".join(parts) + "```\n")


def _homelab_directory(boxes, lab: Path) -> None:
    """hosts.toml, the key and an empty known_hosts, as after `vmstation init` and editing hosts.toml."""
    (lab / "artifacts" / "kubernetes").mkdir(parents=True)
    shutil.copy(boxes.client_key, lab / "id_ed25519")
    (lab / "id_ed25519").chmod(0o600)
    _run_in_box(boxes, "storagenodet3500", "mkdir -p /srv/media")
    inventory = boxes.write_inventory(
        lab / "hosts.toml",
        host_extra={"masternode": {"always_on": True}, "storagenodet3500": {"media_path": "/srv/media"}},
        cluster_extra={"debian": {"artifacts_dir": str(lab / "artifacts")}})
    text = inventory.read_text().replace(str(boxes.known_hosts), "known_hosts")
    inventory.write_text(text.replace(str(boxes.client_key), "id_ed25519"))
    (lab / ".gitignore").write_text(".vmstation/\n")


def _step(command: str, lab: Path) -> str:
    binary = Path(sys.executable).with_name("vmstation")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMSTATION_")}
    env["VMSTATION_ALLOWED_NETWORKS"] = f"127.0.0.0/8,{SUBNET}"
    done = subprocess.run([str(binary), *command.split()[1:]], cwd=lab, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1200)
    output = done.stdout.replace(str(lab), "~/homelab")
    return f"~/homelab$ {command}\n{output}" + (f"(exit code {done.returncode})\n" if done.returncode else "") + "\n"


if __name__ == "__main__":
    sys.exit(main())
