"""The four tools as command lines, each peer in its own virtualenv.

Virtualenvs live under ``$VMSTATION_BENCH_CACHE`` (default
``/var/cache/vmstation-bench``) and are made once, with pip from PyPI. vmstation
itself runs from the interpreter running the benchmark (the project's venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
CACHE = Path(os.environ.get("VMSTATION_BENCH_CACHE", "/var/cache/vmstation-bench"))
REQUIREMENTS = {
    "pyinfra": ("pyinfra>=3,<4",),
    "fabric": ("fabric>=3.2,<4", "jinja2>=3.1,<4"),
    "ansible": ("ansible-core>=2.17,<2.20",),
}
TOOLS = ("vmstation", "pyinfra", "fabric", "ansible")


@dataclass(frozen=True)
class Tool:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def ensure_venvs(names: tuple[str, ...]) -> dict[str, str]:
    """Make the virtualenvs the peers among ``names`` need; return name -> installed version."""
    return {name: _ensure_venv(name) for name in names if name in REQUIREMENTS}


def tools_for(names: tuple[str, ...], hosts_json: Path, hosts_toml: Path, workdir: Path) -> list[Tool]:
    """Command lines of ``names`` for the hosts described in ``hosts_json``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYINFRA_"))}
    base |= {"BENCH_HOSTS": str(hosts_json)}
    make = {"vmstation": _vmstation, "pyinfra": _pyinfra, "fabric": _fabric, "ansible": _ansible}
    return [make[name](base, hosts_json, hosts_toml, workdir) for name in names]


def _vmstation(base, hosts_json, hosts_toml, workdir) -> Tool:
    env = base | {"PYTHONPATH": str(REPO), "VMSTATION_STATE_DIR": str(workdir / "vmstation-state")}
    return Tool("vmstation", (sys.executable, "-m", "bench.workload", str(hosts_toml), str(hosts_json)), env)


def _pyinfra(base, hosts_json, hosts_toml, workdir) -> Tool:
    argv = (str(_bin("pyinfra", "pyinfra")), "-y", str(PEERS / "pyinfra_inventory.py"),
            str(PEERS / "pyinfra_deploy.py"))
    return Tool("pyinfra", argv, base)


def _fabric(base, hosts_json, hosts_toml, workdir) -> Tool:
    return Tool("fabric", (str(_bin("fabric", "python")), str(PEERS / "fabric_push.py"), str(hosts_json)), base)


def _ansible(base, hosts_json, hosts_toml, workdir) -> Tool:
    described = json.loads(hosts_json.read_text())
    home = workdir / "ansible"
    inventory = _write_ansible_inventory(described, home / "inventory.json")
    config = _write_ansible_config(described, home, forks=len(described["hosts"]))
    env = base | {"ANSIBLE_CONFIG": str(config), "ANSIBLE_HOME": str(home / "home"), "ANSIBLE_NOCOLOR": "1"}
    argv = (str(_bin("ansible", "ansible-playbook")), "-i", str(inventory), str(PEERS / "ansible" / "playbook.yml"))
    return Tool("ansible", argv, env)


def _write_ansible_inventory(described: dict, path: Path) -> Path:
    common = {"ansible_user": "root", "ansible_ssh_private_key_file": described["client_key"],
              "ansible_python_interpreter": "/usr/bin/python3", "bench_files": described["files"],
              "bench_templates": described["templates"], "bench_apply_command": described["apply_command"]}
    hosts = {h["name"]: {"ansible_host": h["address"], "ansible_port": h["port"], "root": h["root"], **h["vars"]}
             for h in described["hosts"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"all": {"vars": common, "hosts": hosts}}, indent=1))
    return path


def _write_ansible_config(described: dict, home: Path, forks: int) -> Path:
    """Ansible's defaults plus: forks = N, pipelining, host keys checked strictly against our known_hosts."""
    ssh_args = " ".join([
        "-C -o ControlMaster=auto -o ControlPersist=60s",  # ansible's own default ssh_args
        "-F /dev/null -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null",
        f"-o UserKnownHostsFile={described['known_hosts']}",
    ])
    config = home / "ansible.cfg"
    config.write_text("\n".join([
        "[defaults]",
        f"forks = {forks}",
        "host_key_checking = True",
        "gathering = explicit",
        f"local_tmp = {home / 'local-tmp'}",
        f"remote_tmp = {home / 'remote-tmp'}",
        "retry_files_enabled = False",
        "interpreter_python = /usr/bin/python3",
        "",
        "[ssh_connection]",
        "pipelining = True",
        f"ssh_args = {ssh_args}",
        f"control_path_dir = {home / 'cp'}",
        "",
    ]))
    return config


def _bin(venv: str, program: str) -> Path:
    return CACHE / "venvs" / venv / "bin" / program


def _ensure_venv(name: str) -> str:
    venv = CACHE / "venvs" / name
    marker = venv / ".bench-requirements"
    wanted = "\n".join(REQUIREMENTS[name])
    if not marker.exists() or marker.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *REQUIREMENTS[name]], check=True)
        marker.write_text(wanted)
    distribution = {"pyinfra": "pyinfra", "fabric": "fabric", "ansible": "ansible-core"}[name]
    shown = subprocess.run([str(venv / "bin" / "python"), "-c",
                            f"import importlib.metadata as m; print(m.version({distribution!r}))"],
                           capture_output=True, text=True, check=True)
    return shown.stdout.strip()
