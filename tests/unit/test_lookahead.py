"""The facts the lookahead builds phases with: the host's last facts, kept per inventory (issue 16, item 1)."""

from __future__ import annotations

import json

from vmstation.facts import parse_host_facts
from vmstation.lookahead import FactsMemo

OUTPUT = """@@os-release
ID=debian
VERSION_ID="12"
@@kernel
6.1.0
@@arch
x86_64
@@virt
systemd-nspawn
@@modules-dir
no
@@cgroup
v2
@@swap
0
@@containerd
1.6.20
@@kubeadm
@@selinux
@@paths
/run/systemd/system
@@end
"""


def test_facts_written_are_the_facts_read_back_and_a_broken_file_means_none(tmp_path):
    facts = parse_host_facts(OUTPUT)
    memo = FactsMemo(tmp_path / "state" / "facts.json")
    assert memo.get("masternode") is None
    memo.put("masternode", facts)
    assert FactsMemo(tmp_path / "state" / "facts.json").get("masternode") == facts
    assert ((tmp_path / "state" / "facts.json").stat().st_mode & 0o777) == 0o600
    (tmp_path / "state" / "facts.json").write_text(json.dumps({"masternode": {"kernel": "x"}}))
    assert FactsMemo(tmp_path / "state" / "facts.json").get("masternode") is None   # another shape: ask afresh
    (tmp_path / "state" / "facts.json").write_text("{not json")
    assert FactsMemo(tmp_path / "state" / "facts.json").get("masternode") is None
