"""Facts: the one-command probe script, its split into sections, and the host facts parser."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from vmstation.facts import (
    MARKER, PATHS_OF_INTEREST, HostFacts, host_facts_script, new_token, parse_host_facts, parse_os_release,
    probe_script, split_sections,
)


def run_here(script: str) -> str:
    return subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30).stdout


def answers(probes: list[str]) -> list[str]:
    token = new_token()
    return split_sections(run_here(probe_script(probes, token)), token, len(probes))


# -- the probe script -------------------------------------------------------------------------------


def test_each_probe_gets_its_own_section_in_order():
    assert answers(["echo one", "printf 'two\\nlines\\n'", "", "echo four"]) == ["one\n", "two\nlines\n", "", "four\n"]


def test_a_failing_probe_neither_stops_the_others_nor_leaks_stderr():
    assert answers(["echo before", "cat /nonexistent/file; false", "echo after"]) == ["before\n", "", "after\n"]


def test_a_probe_without_a_final_newline_keeps_its_answer_apart_from_the_next():
    assert answers(["printf abc", "echo two", "printf ''", "printf last"]) == ["abc", "two\n", "", "last"]


def test_content_that_looks_like_a_marker_stays_content():
    fake = f"{MARKER}-000000000000 1\n{MARKER}-deadbeef 0\n@@vmstation\n"
    token = new_token()
    output = run_here(probe_script([f"printf %s {shlex.quote(fake)}", "echo real"], token))
    assert split_sections(output, token, 2) == [fake, "real\n"]


def test_tokens_differ_per_script():
    assert len({new_token() for _ in range(100)}) == 100


def test_a_section_index_beyond_the_count_is_ignored_and_missing_ones_are_empty():
    token = "abc"
    output = f"noise before\n{MARKER}-{token} 0\nzero\n{MARKER}-{token} 5\nstray\n"
    assert split_sections(output, token, 3) == ["zero\n", "", ""]


def test_probes_run_with_the_c_locale():
    assert answers(["echo $LC_ALL"]) == ["C\n"]


# -- host facts ---------------------------------------------------------------------------------------

DEBIAN_BOX = """@@os-release
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
@@kernel
6.1.0-18-amd64
@@arch
x86_64
@@virt
systemd-nspawn
@@modules-dir
no
@@cgroup
v1
@@swap
0
@@containerd
1.6.20~ds1
@@kubeadm
@@selinux
@@paths
/proc/sys/net/bridge
/run/systemd/system
@@end
"""

RHEL_VM = """@@os-release
NAME="Red Hat Enterprise Linux"
VERSION_ID="10.0"
ID="rhel"
ID_LIKE="fedora"
# a comment line
@@kernel
6.12.0-55.el10.x86_64
@@arch
x86_64
@@virt
none
@@modules-dir
yes
@@cgroup
v2
@@swap
1
@@containerd
v1.7.11
@@kubeadm
v1.29.15
@@selinux
Enforcing
@@paths
/usr/bin/rke2
/etc/rancher/rke2/rke2.yaml
@@end
"""


def test_debian_box_facts():
    facts = parse_host_facts(DEBIAN_BOX)
    assert (facts.os_family, facts.os_major_version, facts.virtualization) == ("debian", 12, "systemd-nspawn")
    assert facts.in_container and not facts.can_load_modules
    assert (facts.cgroup, facts.swap_devices, facts.containerd_version) == ("v1", 0, "1.6.20~ds1")
    assert facts.kubeadm_version is None and facts.selinux is None
    assert facts.exists("/proc/sys/net/bridge") and not facts.exists("/etc/kubernetes/admin.conf")


def test_rhel_vm_facts():
    facts = parse_host_facts(RHEL_VM)
    assert (facts.os_family, facts.os_major_version) == ("rhel", 10)
    assert not facts.in_container and facts.can_load_modules
    assert (facts.cgroup, facts.swap_devices, facts.containerd_version) == ("v2", 1, "1.7.11")
    assert (facts.kubeadm_version, facts.selinux) == ("v1.29.15", "Enforcing")
    assert facts.exists("/usr/bin/rke2") and not facts.exists("/usr/local/bin/rke2")


def test_os_family_from_id_like():
    for os_release, family in [({"ID": "almalinux", "ID_LIKE": "rhel centos fedora"}, "rhel"),
                               ({"ID": "rocky"}, "rhel"), ({"ID": "ubuntu", "ID_LIKE": "debian"}, "debian"),
                               ({"ID": "raspbian", "ID_LIKE": "debian"}, "debian"), ({"ID": "arch"}, "other")]:
        assert _facts(os_release).os_family == family


def test_odd_version_ids():
    assert _facts({"VERSION_ID": "9.4"}).os_major_version == 9
    assert _facts({"VERSION_ID": "rolling"}).os_major_version == 0
    assert _facts({}).os_major_version == 0


def test_paths_outside_the_list_are_a_programming_error_that_says_what_to_do():
    with pytest.raises(KeyError, match="add it to PATHS_OF_INTEREST"):
        parse_host_facts(DEBIAN_BOX).exists("/etc/passwd")


def test_empty_output_gives_defined_absent_values():
    facts = parse_host_facts("")
    assert (facts.os_release, facts.kernel, facts.virtualization, facts.cgroup) == ({}, "", "none", "v1")
    assert (facts.containerd_version, facts.kubeadm_version, facts.paths) == (None, None, frozenset())


def test_os_release_parser_strips_quotes_and_skips_comments():
    assert parse_os_release('# x=y\nID="debian"\nNAME=\'Debian\'\nBROKEN LINE\n') == {"ID": "debian", "NAME": "Debian"}


def test_the_host_facts_script_answers_on_this_machine():
    facts = parse_host_facts(run_here(host_facts_script()))
    expected = parse_os_release(open("/etc/os-release").read())
    assert facts.os_release == expected
    assert facts.kernel == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    assert facts.arch == subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    assert facts.paths <= set(PATHS_OF_INTEREST)


def _facts(os_release: dict[str, str]) -> HostFacts:
    return HostFacts(os_release=os_release, kernel="", arch="", virtualization="none", can_load_modules=True,
                     cgroup="v2", swap_devices=0, containerd_version=None, kubeadm_version=None, selinux=None)
