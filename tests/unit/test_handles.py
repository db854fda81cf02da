"""Typed handles between hosts: what ``ctx.read`` gives in render, plan and apply, read once, secrets masked."""

from __future__ import annotations

import pytest

from vmstation.context import HostContext, RunContext
from vmstation.errors import HostError, CommandError, Unsupported
from vmstation.handles import Capture, ReadFrom
from vmstation.operations import Check, CHECK
from vmstation.secrets import Secret


def _handle(**overrides) -> ReadFrom:
    values = dict(source=lambda ctx: ctx.inventory.hosts[0], script="cat /token\n",
                  parse=lambda out: out.strip() or None, placeholder="PLACEHOLDER", secret=True,
                  missing="{source} has no token yet")
    return ReadFrom("the token", **{**values, **overrides})


def _ctx(inventory, remote=None, plan=False, offline=False, host=1) -> HostContext:
    run = RunContext(inventory, plan=plan, offline=offline, remote=remote)
    return HostContext(run, inventory.hosts[host], None)


class Remote:
    def __init__(self, output: str):
        self.output, self.asked = output, []

    def __call__(self, host, script):
        self.asked.append((host.name, script))
        return self.output


def test_offline_and_a_plan_of_a_handle_that_changes_its_source_show_the_placeholder_and_ask_nothing(homelab):
    remote = Remote("real\n")
    assert _ctx(homelab, remote, offline=True).read(_handle()).reveal() == "PLACEHOLDER"
    assert _ctx(homelab, remote, plan=True).read(_handle(changes_host=True)).reveal() == "PLACEHOLDER"
    assert _ctx(homelab, None).read(_handle()).reveal() == "PLACEHOLDER"      # no other host reachable
    assert remote.asked == []


def test_a_plan_reads_what_changes_nothing_and_apply_reads_once_per_run_and_cluster(homelab):
    remote, handle = Remote("real-token\n"), _handle()
    ctx = _ctx(homelab, remote, plan=True)
    assert ctx.read(handle).reveal() == "real-token"
    run = RunContext(homelab, remote=remote)
    for host in homelab.hosts_of(homelab.hosts[1].cluster):
        value = HostContext(run, host, None).read(handle)
        assert isinstance(value, Secret) and repr(value) == "***" and value.reveal() == "real-token"
    assert [name for name, _ in remote.asked] == [homelab.hosts[0].name] * 2   # the plan's run and the apply run
    assert run.redact("token real-token in a message") == "token *** in a message"


def test_absent_is_the_placeholder_in_a_plan_and_unsupported_in_apply(homelab):
    assert _ctx(homelab, Remote(""), plan=True).read(_handle()).reveal() == "PLACEHOLDER"
    with pytest.raises(Unsupported, match=f"{homelab.hosts[0].name} has no token yet"):
        _ctx(homelab, Remote("")).read(_handle())


def test_a_failing_read_of_a_secret_says_where_and_the_exit_code_never_the_output(homelab):
    def failing(host, script):
        raise CommandError(host.name, "cat failed: real-token-in-stderr", 3, "real-token-in-stderr")
    with pytest.raises(HostError) as raised:
        _ctx(homelab, failing).read(_handle())
    assert "exit 3" in raised.value.message and "real-token" not in str(raised.value)


def test_a_dict_value_keeps_the_secrets_its_parse_made_and_registers_them(homelab):
    handle = _handle(parse=lambda out: {"token": Secret(out.strip()), "hash": "sha256:abc"},
                     placeholder={"token": Secret("p"), "hash": "sha256:0"})
    ctx = _ctx(homelab, Remote("tok-123\n"))
    value = ctx.read(handle)
    assert value["hash"] == "sha256:abc" and value["token"].reveal() == "tok-123"
    assert ctx.run.redact("tok-123") == "***"


def test_a_secret_capture_is_masked_and_redacted_and_a_plain_one_kept_as_printed(homelab):
    run = RunContext(homelab)
    plain, hidden = Capture("decision"), Capture("token", secret=True)
    run.keep(plain, '{"sleep": true}')
    run.keep(hidden, "t-456")
    assert run.captured(plain) == '{"sleep": true}' and run.captured("decision") == '{"sleep": true}'
    assert repr(run.captured(hidden)) == "***" and run.redact("got t-456") == "got ***"
    step = Check("echo t-456", "read it", capture=hidden).decide("", frozenset())
    assert step.status == CHECK and step.secret


def test_handles_are_compared_by_identity():
    one, two = _handle(), _handle()
    assert one == one and one != two and len({one, two}) == 2
