"""Each operation's decision from its fact: fact strings in, step (status, reason, commands, uploads) out.

Where the probe can run on this machine, the fact is the real answer of ``sh``
to the probe (files under tmp_path, /proc/sys, dpkg); elsewhere a literal fact
string of the form the probe prints.
"""

from __future__ import annotations

import base64
import json
import hashlib
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from vmstation.operations import (
    CHANGE, CHECK, OK, SKIP, Check, Command, Directory, Edit, Fetch, File, KernelModule, Package, Service, Step,
    Sysctl, Upload, line, sh, wait_until,
)

NOTHING: frozenset[str] = frozenset()


def ask(operation, detail: bool = False) -> str:
    """The probe's answer from this machine's own shell."""
    return subprocess.run(["sh", "-c", operation.probe(detail)], capture_output=True, text=True, timeout=30).stdout


def run_locally(step: Step) -> None:
    """Run a step's commands here (chmod, install -d ...), as the placing script would on a host."""
    for command in step.commands:
        subprocess.run(["sh", "-c", command], check=True, timeout=30)


def whoami() -> tuple[str, str]:
    import grp
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


# -- sh ----------------------------------------------------------------------------------------


def test_sh_quotes_every_argument():
    hostile = "a b'; rm -rf / #"
    command = sh("rm -f -- {} {}", hostile, "$(reboot)")
    assert shlex.split(command) == ["rm", "-f", "--", hostile, "$(reboot)"]


# -- File --------------------------------------------------------------------------------------


def test_file_absent_is_uploaded_with_a_diff_from_nothing(tmp_path):
    owner, group = whoami()
    op = File(str(tmp_path / "etc/app.conf"), "a = 1\n", mode="0640", owner=owner, group=group)
    step = op.decide(ask(op, detail=True), NOTHING)
    assert (step.status, step.reason) == (CHANGE, "absent")
    assert step.uploads == (Upload(op.path, b"a = 1\n", "0640", owner, group),)
    assert "+a = 1" in step.diff and step.commands == ()


def test_file_with_other_content_shows_the_unified_diff(tmp_path):
    owner, group = whoami()
    target = tmp_path / "app.conf"
    target.write_text("a = 1\nb = 2\n")
    op = File(str(target), "a = 1\nb = 3\n", owner=owner, group=group)
    step = op.decide(ask(op, detail=True), NOTHING)
    assert (step.status, step.reason) == (CHANGE, "content differs")
    assert "-b = 2\n" in step.diff and "+b = 3\n" in step.diff and " a = 1\n" in step.diff
    assert step.uploads[0].content == b"a = 1\nb = 3\n"


def test_file_without_detail_still_knows_it_differs_but_carries_no_old_content(tmp_path):
    owner, group = whoami()
    target = tmp_path / "app.conf"
    target.write_text("old\n")
    op = File(str(target), "new\n", owner=owner, group=group)
    fact = ask(op, detail=False)
    assert base64.b64encode(b"old\n").decode() not in fact
    assert op.decide(fact, NOTHING).status == CHANGE


def test_file_with_the_same_content_but_another_mode_is_fixed_by_chmod_only(tmp_path):
    owner, group = whoami()
    target = tmp_path / "app.conf"
    target.write_text("same\n")
    target.chmod(0o644)
    op = File(str(target), "same\n", mode="0600", owner=owner, group=group)
    step = op.decide(ask(op), NOTHING)
    assert (step.status, step.reason, step.uploads) == (CHANGE, "mode or owner differs", ())
    assert step.commands == (sh("chmod {} -- {}", "0600", target),)
    run_locally(step)
    assert op.decide(ask(op), NOTHING).status == OK


def test_file_with_another_owner_is_fixed_by_chown():
    fact = "644 nobody nogroup\n" + hashlib.sha256(b"x").hexdigest() + "\n"
    step = File("/etc/x", "x").decide(fact, NOTHING)
    assert step.commands == ("chown root:root -- /etc/x",)


def test_file_that_matches_is_ok(tmp_path):
    owner, group = whoami()
    target = tmp_path / "app.conf"
    target.write_bytes(b"\x00binary\xff")
    target.chmod(0o600)
    op = File(str(target), b"\x00binary\xff", mode="0600", owner=owner, group=group)
    step = op.decide(ask(op, detail=True), NOTHING)
    assert (step.status, step.reason) == (OK, "content, mode and owner match")
    assert not step.runs_remotely


def test_secret_file_never_asks_for_nor_shows_its_content(tmp_path):
    target = tmp_path / "token"
    target.write_text("old-secret-value\n")
    op = File(str(target), "new-secret-value\n", mode="0600", secret=True)
    fact = ask(op, detail=True)
    assert base64.b64encode(b"old-secret-value\n").decode() not in fact
    step = op.decide(fact, NOTHING)
    assert step.status == CHANGE and step.secret
    assert "secret-value" not in step.diff and "not shown" in step.diff


# -- Edit / line -----------------------------------------------------------------------------------


def test_line_comments_out_swap_in_fstab_and_keeps_mode_and_owner(tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text("UUID=1 / ext4 defaults 0 1\nUUID=2 none swap sw 0 0\n")
    fstab.chmod(0o600)
    op = line(str(fstab), "# swap off (vmstation)", pattern=r"^[^#].*\sswap\s")
    step = op.decide(ask(op), NOTHING)
    assert step.status == CHANGE
    assert step.uploads[0].content == b"UUID=1 / ext4 defaults 0 1\n# swap off (vmstation)\n"
    assert step.uploads[0].mode == "0600"
    assert "-UUID=2 none swap sw 0 0" in step.diff


def test_line_appends_when_nothing_matches_and_is_ok_once_there(tmp_path):
    path = tmp_path / "modules"
    path.write_text("overlay")  # no trailing newline: the new line must not be glued to it
    op = line(str(path), "br_netfilter")
    step = op.decide(ask(op), NOTHING)
    assert step.uploads[0].content == b"overlay\nbr_netfilter\n"
    path.write_bytes(step.uploads[0].content)
    assert op.decide(ask(op), NOTHING).status == OK


def test_line_replaces_every_match_and_keeps_one_copy():
    transform = line("/etc/x", "key = new", pattern=r"^key\s*=").transform
    assert transform("key = a\nkey = b\nother\n") == "key = new\nother\n"


def test_edit_of_an_absent_file_changes_nothing(tmp_path):
    op = Edit(str(tmp_path / "absent"), lambda text: text + "x\n", "add x")
    step = op.decide(ask(op), NOTHING)
    assert (step.status, step.reason) == (OK, "file absent: nothing to edit")


# -- Directory --------------------------------------------------------------------------------------


def test_directory_absent_then_made_then_ok(tmp_path):
    owner, group = whoami()
    op = Directory(str(tmp_path / "a dir"), mode="0750", owner=owner, group=group)
    step = op.decide(ask(op), NOTHING)
    assert (step.status, step.reason) == (CHANGE, "absent")
    run_locally(step)
    assert (tmp_path / "a dir").stat().st_mode & 0o777 == 0o750
    assert op.decide(ask(op), NOTHING).status == OK
    (tmp_path / "a dir").chmod(0o755)
    assert op.decide(ask(op), NOTHING).reason == "mode or owner differs"


# -- Package -------------------------------------------------------------------------------------


def test_package_missing_is_installed_at_its_version_and_held():
    op = Package(("kubeadm", "kubelet"), version="1.29.15-1.1", hold=True)
    step = op.decide("kubelet 1.29.15-1.1 installed install\n", NOTHING)
    assert (step.status, step.reason) == (CHANGE, "missing: kubeadm")
    install, hold = step.commands
    assert "apt-get install" in install and "kubeadm=1.29.15-1.1" in install and "kubelet=" not in install
    assert step.fresh_apt_index and install.startswith("apt-mark unhold")   # the executor updates the lists
    assert hold == "apt-mark hold kubeadm kubelet >/dev/null"


def test_package_at_another_version_is_reinstalled():
    op = Package(("kubeadm",), version="1.29.15-1.1")
    step = op.decide("kubeadm 1.29.14-1.1 installed\n", NOTHING)
    assert step.status == CHANGE and "kubeadm=1.29.15-1.1" in step.commands[0]


def test_package_installed_but_not_held_is_only_held():
    op = Package(("kubeadm",), version="1.29.15-1.1", hold=True)
    step = op.decide("kubeadm 1.29.15-1.1 installed install\n", NOTHING)
    assert (step.status, step.reason, step.commands) == (CHANGE, "not held", ("apt-mark hold kubeadm >/dev/null",))


def test_package_installed_and_held_is_ok():
    op = Package(("kubeadm",), version="1.29.15-1.1", hold=True)
    step = op.decide("kubeadm 1.29.15-1.1 installed hold\n", NOTHING)
    assert (step.status, step.reason) == (OK, "installed and held")


def test_package_probe_asks_dpkg_alone_and_reads_this_machines_status():
    """No apt cache is loaded on a no-op: dpkg-query's status fields say installed and held."""
    probe = Package(("bash", "vmstation-no-such-package"), hold=True).probe(detail=False)
    assert "apt-mark" not in probe and "apt-cache" not in probe
    answer = subprocess.run(["sh", "-c", probe], capture_output=True, text=True).stdout
    step = Package(("bash",)).decide(answer, NOTHING)
    assert step.status == OK, answer
    assert Package(("bash",), hold=True).decide(answer, NOTHING).reason == "not held"


def test_files_of_a_phase_are_asked_in_one_stat_and_one_sha256sum(tmp_path):
    """The batch gives each file what its own probe would have said (mode, owner, digest; absent; not a file)."""
    from vmstation.operations.files import _stat_probe, parse_stat, split_stat_batch, stat_batch_probe

    (tmp_path / "a b").write_text("one\n")
    (tmp_path / "c").write_bytes(b"\xff")
    os.chmod(tmp_path / "c", 0o600)
    paths = [str(tmp_path / "a b"), str(tmp_path / "missing"), str(tmp_path), str(tmp_path / "c")]
    probe = stat_batch_probe(paths)
    assert probe.count("stat ") == 1 and probe.count("sha256sum") == 1
    batch = split_stat_batch(subprocess.run(["sh", "-c", probe], capture_output=True, text=True).stdout, len(paths))
    alone = [subprocess.run(["sh", "-c", _stat_probe(p, False)], capture_output=True, text=True).stdout
             for p in paths]
    assert [parse_stat(f) for f in batch] == [parse_stat(f) for f in alone]
    assert parse_stat(batch[3]).mode == "0600" and parse_stat(batch[1]) is None
    assert split_stat_batch("y\n", 2) == ["absent", "absent"]     # a cut answer: uploaded again, never trusted


def test_package_removed_but_with_config_left_counts_as_missing():
    step = Package(("containerd",)).decide("containerd 1.6.20~ds1-1+b1 config-files\n", NOTHING)
    assert step.status == CHANGE


def test_dnf_package_with_a_version():
    op = Package(("container-selinux", "rke2-selinux"), manager="dnf", version="0.1")
    step = op.decide("container-selinux 0.1 installed\n", NOTHING)
    assert step.commands == ("dnf install -y -q rke2-selinux-0.1",)
    assert op.decide("container-selinux 0.1 installed\nrke2-selinux 0.1 installed\n", NOTHING).status == OK


def test_package_probe_answers_from_dpkg_here():
    if not Path("/usr/bin/dpkg-query").exists():
        pytest.skip("needs dpkg (a Debian-family machine)")
    assert Package(("dpkg",)).decide(ask(Package(("dpkg",))), NOTHING).status == OK
    absent = Package(("vmstation-no-such-package",))
    assert absent.decide(ask(absent), NOTHING).reason == "missing: vmstation-no-such-package"


# -- Service --------------------------------------------------------------------------------------


def test_service_disabled_and_stopped_is_enabled_and_started():
    step = Service("containerd").decide("disabled\ninactive\n", NOTHING)
    assert step.commands == ("systemctl enable --quiet containerd", "systemctl start containerd")
    assert step.reason == "was disabled; was inactive"


def test_service_running_is_restarted_when_what_it_watches_changed():
    op = Service("containerd", restart_on=("file /etc/containerd/config.toml",))
    assert op.decide("enabled\nactive\n", NOTHING).status == OK
    step = op.decide("enabled\nactive\n", frozenset({"file /etc/containerd/config.toml", "file /etc/other"}))
    assert step.commands == ("systemctl restart containerd",)
    assert step.reason == "restart: file /etc/containerd/config.toml changed"
    assert op.decide("enabled\nactive\n", frozenset({"file /etc/other"})).status == OK


def test_service_that_was_stopped_is_started_once_not_also_restarted():
    op = Service("containerd", restart_on=("file /etc/containerd/config.toml",))
    step = op.decide("enabled\nfailed\n", frozenset({"file /etc/containerd/config.toml"}))
    assert step.commands == ("systemctl start containerd",)


def test_service_static_or_alias_counts_as_enabled():
    for state in ("static", "alias"):
        assert Service("x").decide(f"{state}\nactive\n", NOTHING).status == OK


def test_service_wanted_stopped_is_stopped():
    step = Service("nm-cloud-setup", enabled=False, running=False).decide("enabled\nactive\n", NOTHING)
    assert step.commands == ("systemctl stop nm-cloud-setup",)
    assert Service("x", enabled=False, running=False).decide("disabled\ninactive\n", NOTHING).status == OK


def test_service_daemon_reload_alone_is_not_a_change_but_comes_first_with_one():
    op = Service("kubelet", daemon_reload=True, restart_on=("file /etc/systemd/system/kubelet.service.d/x.conf",))
    assert op.decide("enabled\nactive\n", frozenset({"file /etc/other"})).status == OK
    step = op.decide("enabled\nactive\n", frozenset({"file /etc/systemd/system/kubelet.service.d/x.conf"}))
    assert step.commands == ("systemctl daemon-reload", "systemctl restart kubelet")


def test_service_with_no_answer_is_enabled_and_started():
    step = Service("rke2-server").decide("", NOTHING)
    assert step.status == CHANGE and step.reason == "was unknown; was unknown"


# -- Sysctl -------------------------------------------------------------------------------------------


def test_sysctl_already_set_is_ok_and_whitespace_is_normalised():
    assert Sysctl("net.ipv4.ip_forward", "1").decide("1\nwritable\n", NOTHING).status == OK
    ports = Sysctl("net.ipv4.ip_local_port_range", "32768 60999")
    assert ports.decide("32768\t60999\nwritable\n", NOTHING).status == OK


def test_sysctl_that_differs_is_written_quoted():
    step = Sysctl("net.ipv4.ip_forward", "1").decide("0\nwritable\n", NOTHING)
    assert (step.status, step.reason, step.commands) == (CHANGE, "was 0", ("sysctl -q -w net.ipv4.ip_forward=1",))


def test_sysctl_read_only_here_is_skipped_not_reported_done():
    step = Sysctl("vm.swappiness", "10").decide("60\nread-only\n", NOTHING)
    assert step.status == SKIP and "read-only" in step.reason and not step.runs_remotely


def test_sysctl_absent_from_this_kernel_is_skipped():
    step = Sysctl("net.bridge.bridge-nf-call-iptables", "1").decide("absent\n", NOTHING)
    assert step.status == SKIP and "no such parameter" in step.reason


def test_sysctl_probe_reads_this_kernel():
    current = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    op = Sysctl("net.ipv4.ip_forward", current)
    assert op.decide(ask(op), NOTHING).status == OK
    missing = Sysctl("net.vmstation.no_such_key", "1")
    assert missing.decide(ask(missing), NOTHING).status == SKIP


# -- KernelModule ---------------------------------------------------------------------------------------


def test_module_present_loadable_or_impossible():
    op = KernelModule("br_netfilter")
    assert op.decide("present\n", NOTHING).status == OK
    assert op.decide("loadable\n", NOTHING).commands == ("modprobe br_netfilter",)
    step = op.decide("no-modules\n", NOTHING)
    assert step.status == SKIP and "/lib/modules" in step.reason


def test_module_probe_sees_built_in_features():
    # overlay is in /proc/filesystems whether built in or loaded; this machine runs overlay mounts
    if "overlay" not in Path("/proc/filesystems").read_text():
        pytest.skip("this kernel has no overlay filesystem")
    assert ask(KernelModule("overlay")).strip() == "present"
    assert ask(KernelModule("vmstation_no_such_module")).strip() in ("loadable", "no-modules")


# -- Command and Check -----------------------------------------------------------------------------------


def test_command_creates_guard(tmp_path):
    marker = tmp_path / "admin.conf"
    op = Command("kubeadm init", "kubeadm init", creates=str(marker))
    step = op.decide(ask(op), NOTHING)
    assert (step.status, step.reason, step.commands) == (CHANGE, "guard says run", ("kubeadm init",))
    marker.write_text("")
    assert op.decide(ask(op), NOTHING).reason == f"{marker} exists"


def test_command_removes_guard(tmp_path):
    op = Command("rm -rf x", "clean", removes=str(tmp_path / "x"))
    assert op.decide(ask(op), NOTHING).reason == f"{tmp_path / 'x'} absent"
    (tmp_path / "x").mkdir()
    assert op.decide(ask(op), NOTHING).status == CHANGE


def test_command_unless_and_onlyif_guards():
    assert Command("x", "x", unless="true").decide(ask(Command("x", "x", unless="true")), NOTHING).status == OK
    assert Command("x", "x", unless="false").decide(ask(Command("x", "x", unless="false")), NOTHING).status == CHANGE
    assert Command("x", "x", onlyif="false").decide(ask(Command("x", "x", onlyif="false")), NOTHING).status == OK
    assert Command("x", "x", onlyif="true").decide(ask(Command("x", "x", onlyif="true")), NOTHING).status == CHANGE


def test_command_when_changed_runs_only_after_what_it_depends_on_changed():
    op = Command("sysctl --system", "apply sysctls", when_changed=("file /etc/sysctl.d/k8s.conf",))
    assert op.decide("", NOTHING).reason == "nothing it depends on changed"
    assert op.decide("", frozenset({"file /etc/sysctl.d/k8s.conf"})).commands == ("sysctl --system",)


def test_command_without_a_guard_always_runs():
    step = Command("echo hi", "say hi").decide(ask(Command("echo hi", "say hi")), NOTHING)
    assert (step.status, step.reason) == (CHANGE, "always")


def test_check_runs_every_time_captures_and_keeps_secrets():
    step = Check("kubeadm token create --print-join-command", "join command", capture="join", secret=True) \
        .decide("", frozenset({"anything"}))
    assert (step.status, step.capture, step.secret) == (CHECK, "join", True)
    assert step.runs_remotely


def test_wait_until_passes_at_once_or_times_out_with_its_description():
    passing = subprocess.run(["sh", "-c", wait_until("true", "nothing", timeout=5, interval=1).script],
                             capture_output=True, text=True, timeout=30)
    assert passing.returncode == 0
    started = time.monotonic()
    failing = subprocess.run(["sh", "-c", wait_until("false", "node Ready", timeout=1, interval=1,
                                                      show="echo still waiting").script],
                             capture_output=True, text=True, timeout=30)
    assert failing.returncode == 1 and time.monotonic() - started < 10
    assert "timed out after 1s: node Ready" in failing.stderr and "still waiting" in failing.stderr
    assert wait_until("true", "x", timeout=7).description == "wait for x (up to 7s)"


# -- Fetch ---------------------------------------------------------------------------------------------


def test_fetch_absent_remote_is_skipped(tmp_path):
    op = Fetch(str(tmp_path / "rke2.yaml"), str(tmp_path / "local"))
    step = op.decide(ask(op), NOTHING)
    assert step.status == SKIP and "is not there" in step.reason


def test_fetch_transforms_and_writes_locally_0600_then_is_ok(tmp_path):
    from vmstation.atomic import write_atomically

    remote = tmp_path / "rke2.yaml"
    remote.write_text("server: https://127.0.0.1:6443\n")
    local = tmp_path / "out" / "kubeconfig"
    op = Fetch(str(remote), str(local), transform=lambda b: b.replace(b"127.0.0.1", b"10.77.5.2"))
    step = op.decide(ask(op), NOTHING)
    assert step.status == CHANGE and step.secret and not step.runs_remotely
    (write,) = step.local_writes
    assert (write.content, write.mode) == (b"server: https://10.77.5.2:6443\n", 0o600)
    write_atomically(write.path, write.content, write.mode)
    assert local.stat().st_mode & 0o777 == 0o600
    assert op.decide(ask(op), NOTHING).status == OK
    local.chmod(0o644)
    assert op.decide(ask(op), NOTHING).status == CHANGE


def test_handlers_refer_to_the_operations_they_watch():
    from vmstation.operations import File, KernelModule, Service, Sysctl
    config = File("/etc/containerd/config.toml", "x")
    service = Service("containerd", restart_on=(config,))
    assert service.restart_on == (config.label,)           # kept as labels: digests and journals read as before
    step = service.decide("enabled active", frozenset({config.label}))
    assert step.commands == ("systemctl restart containerd",) and step.reason == f"restart: {config.label} changed"
    assert Command("true", "after", when_changed=(config,)).when_changed == (config.label,)
    module = KernelModule("br_netfilter")
    sysctl = Sysctl("net.bridge.bridge-nf-call-iptables", "1", needs_module=module)
    assert sysctl.decide("absent", frozenset({module.label})).status == "change"


def test_statuses_are_enums_that_read_as_their_words():
    from vmstation.status import Outcome, StepStatus
    assert StepStatus.CHANGE == "change" and f"{Outcome.CHANGED}" == "changed"
    assert Outcome.PLANNED.succeeded and not Outcome.BLOCKED.succeeded and Outcome.BLOCKED.bad
    assert json.dumps({"status": Outcome.FAILED}) == '{"status": "failed"}'


def test_a_local_file_is_hashed_once_per_run_streamed_and_seen_changed(tmp_path, monkeypatch):
    from vmstation.operations import File, local_file
    from vmstation.operations import base

    artifact = tmp_path / "images.tar.zst"
    artifact.write_bytes(b"x" * (3 << 20))
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    base._sha256_of.cache_clear()
    first, second = local_file(artifact), local_file(artifact)      # two hosts, the preflight: one digest
    assert first == second and opened.count(str(artifact)) == 1
    assert first.sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest() and first.size == 3 << 20
    step = File("/var/lib/rke2/images.tar.zst", first).decide("absent\n", frozenset())
    assert step.uploads[0].content is first and "3145728 bytes" in step.diff
    artifact.write_bytes(b"y" * 10)                                 # a new file: a new digest (--resume sees it)
    assert local_file(artifact).sha256 != first.sha256


def test_a_plain_check_is_asked_with_the_probes_and_runs_as_a_step_only_when_it_failed_or_after_a_change():
    """A no-op sends nothing more for a verification that passes; its failure is still a step's failure."""
    def answer(check):
        return subprocess.run(["sh", "-c", check.probe(detail=False)], capture_output=True, text=True).stdout

    passing, failing = Check("true", "passes"), Check("false | true", "fails under pipefail")
    assert passing.decide(answer(passing), NOTHING).status == OK
    assert passing.decide(answer(passing), frozenset({"file /etc/x"})).status == CHECK     # after a change
    assert passing.decide("", NOTHING).status == CHECK                                   # not asked
    step = failing.decide(answer(failing), NOTHING)
    assert (step.status, step.commands) == (CHECK, ("false | true",))
    set_e = Check("false; true", "fails under set -e")
    assert set_e.decide(answer(set_e), NOTHING).status == CHECK
    for kept in (wait_until("true", "x"), Check("true", "c", capture="v"), Check("true", "s", secret=True)):
        assert kept.probe(detail=False) == "" and kept.decide("", NOTHING).status == CHECK
