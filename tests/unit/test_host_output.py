"""What a compromised host can send back: a kubeconfig with code in it, escape sequences in diffs and messages.

The fetch operations of both deploy targets are fed what a host would answer to their probe (the
file, base64); nothing of a refused kubeconfig is written on this machine. The plan and summary
are given outcomes whose diff and message carry terminal escapes and bidi overrides.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest
import yaml

from tests.unit.conftest import homelab_inventory
from vmstation.context import HostContext, RunContext
from vmstation.errors import HostError
from vmstation.execute import PhaseOutcome
from vmstation.fetched import check_kubeconfig
from vmstation.operations import CHANGE, Fetch, Step
from vmstation.phases import debian, rke2
from vmstation.report import format_plan, format_summary, terminal_safe

KUBECONFIG = yaml.safe_load((Path(__file__).parent / "data" / "rke2_kubeconfig.yaml").read_text())


def with_user(**user) -> bytes:
    config = copy.deepcopy(KUBECONFIG)
    config["users"][0]["user"].update(user)
    return yaml.safe_dump(config).encode()


EVIL = {
    "exec": with_user(exec={"apiVersion": "client.authentication.k8s.io/v1", "command": "sh",
                            "args": ["-c", "touch /tmp/pwned"]}),
    "auth-provider": with_user(**{"auth-provider": {"name": "oidc", "config": {}}}),
    "tokenFile": with_user(tokenFile="/root/.ssh/id_ed25519"),
    "proxy-url": yaml.safe_dump({**KUBECONFIG, "clusters": [
        {"name": "default", "cluster": {**KUBECONFIG["clusters"][0]["cluster"], "proxy-url": "http://10.0.0.9"}}]
    }).encode(),
    "not yaml": b"{{{",
    "not a kubeconfig": b"- a\n- list\n",
}


def fetch_of(target: str, tmp_path: Path) -> Fetch:
    inventory = homelab_inventory()
    run = RunContext(inventory, plan=False, artifacts_dir=tmp_path / "artifacts")
    if target == "debian":
        ctx = HostContext(run, inventory.host("masternode"), None)
        return next(op for op in debian.kubeconfig(ctx) if isinstance(op, Fetch))
    ctx = HostContext(run, inventory.host("homelab"), None)
    return next(op for op in rke2.artifacts(ctx) if isinstance(op, Fetch) and op.transform)


@pytest.mark.parametrize("target", ["debian", "rke2"])
@pytest.mark.parametrize("kind", list(EVIL))
def test_a_kubeconfig_carrying_code_or_paths_is_refused_and_not_written(tmp_path, target, kind):
    fetch = fetch_of(target, tmp_path)
    with pytest.raises(HostError, match="fetched from the host") as raised:
        fetch.decide(base64.b64encode(EVIL[kind]).decode() + "\n", frozenset())
    assert "pwned" not in str(raised.value)
    assert not Path(fetch.local_path).exists()


@pytest.mark.parametrize("target", ["debian", "rke2"])
def test_a_plain_kubeconfig_is_fetched(tmp_path, target):
    fetch = fetch_of(target, tmp_path)
    step = fetch.decide(base64.b64encode(yaml.safe_dump(KUBECONFIG).encode()).decode() + "\n", frozenset())
    assert step.status == CHANGE and step.local_writes[0].mode == 0o600
    assert Path(step.local_writes[0].path).is_relative_to(tmp_path / "artifacts")


def test_check_kubeconfig_names_what_it_found():
    with pytest.raises(HostError, match="an exec credential plugin"):
        check_kubeconfig(EVIL["exec"], "masternode", "/etc/kubernetes/admin.conf")


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[1A\u202e\x9b31m\r"


def test_escape_sequences_from_a_host_reach_the_terminal_only_as_text():
    step = Step("file /etc/motd", CHANGE, "content differs", diff=f"--- a\n+++ b\n+{ESCAPES}hidden\n")
    outcome = PhaseOutcome("p", "masternode", "failed", message=f"exit code 1: {ESCAPES}", steps=[step])
    for text in (format_plan([outcome]), format_summary([outcome])):
        assert not any(c in text for c in "\x1b\x07\x9b\u202e\r")
        assert "\\x1b]0;owned" in text
    assert terminal_safe("tab\tand\nnewline stay") == "tab\tand\nnewline stay"
