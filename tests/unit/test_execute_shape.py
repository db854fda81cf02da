"""The placing script's shape and the digests --resume compares (pure: no host)."""

from __future__ import annotations

import re
import subprocess

from vmstation import operations as op
from vmstation.execute import (APT_INDEX_UPDATE, apply_script, inputs_digest, pending_markers, placed_by_sftp,
                               prologue, sftp_prelude)
from vmstation.operations import CHANGE, Step, Upload


def steps() -> list[Step]:
    return [Step("file /etc/a", CHANGE, uploads=(Upload("/etc/a", b"x", "0600", "root", "root"),)),
            Step("run two", CHANGE, commands=("false && true", "exit 0"), deadline=900),
            Step("service s", CHANGE, commands=("systemctl restart s",))]


def test_every_command_is_a_script_of_its_own_whose_status_is_checked_under_its_deadline():
    planned = steps()
    script = apply_script(planned, {id(planned[0].uploads[0]): "0"}, "tok", "h1", {}, 300.0)
    runs = re.findall(r"^vms_cmd (\d+) \"\$vms_run/(\d+)\.(\d+)\" \|\| vms_fail (\d+) \$\?$", script, re.M)
    assert runs == [("900", "1", "0", "1"), ("900", "1", "1", "1"), ("300", "2", "0", "2")]
    assert "cat > \"$vms_run/1.0\" <<'@@vmstation-tok-cmd'\n. \"$VMS_RUN/lib\"\nfalse && true\n" in script


def test_files_are_placed_with_owner_and_mode_before_content_and_each_placement_is_checked():
    upload = Upload("/etc/a b", b"x", "0600", "root", "adm")
    script = apply_script([Step("file", CHANGE, uploads=(upload,))], {id(upload): "0"}, "tok", "h1", {}, 300.0)
    assert "vms_place \"$vms_staging\"/0 '/etc/a b' 0600 root adm || vms_fail 0 $?" in script
    place = script[script.index("vms_place() {"):script.index("vms_cmd() {")]
    assert place.index("mktemp") < place.index("chown") < place.index("chmod") < place.index("cat --") \
        < place.index("mv -f")


def test_the_lock_comes_before_the_uploads_and_only_dead_staging_of_this_host_is_removed():
    text = prologue("tok", "h1", "/root/.vmstation-staging")
    assert text.index("flock -w 60 9") < text.index("/root/.vmstation-staging/h1-????????????") \
        < text.index("echo '@@vmstation-tok locked'")


def test_a_handler_is_recorded_before_anything_is_placed_and_cleared_after_it_ran():
    planned = steps()
    script = apply_script(planned, {id(planned[0].uploads[0]): "0"}, "tok", "h1", {2: "abc"}, 300.0)
    assert script.index(': > "$vms_pending/abc"') < script.index("vms_place \"$vms_staging\"")
    assert script.index("systemctl restart s") < script.index('rm -f -- "$vms_pending/abc"')


def test_a_root_login_places_root_files_before_the_first_command_by_sftp_and_records_handlers_first():
    """SFTP places the root:root files that no command precedes; the rest is staged and placed by the script.
    The handlers are recorded, under the lock, before the script says 'locked' and SFTP places anything."""
    late = Upload("/etc/late", b"y")
    other = Upload("/etc/b", b"z", "0640", "root", "adm")
    planned = steps()[:1] + [Step("file /etc/b", CHANGE, uploads=(other,))] + steps()[1:] + \
        [Step("file /etc/late", CHANGE, uploads=(late,))]
    direct = placed_by_sftp(planned, root_login=True)
    assert list(direct.values()) == [planned[0].uploads[0]]
    assert placed_by_sftp(planned, root_login=False) == {}
    text = prologue("tok", "h1", None, sftp_prelude(direct.values(), "h1", {3: "abc"}))
    assert text.index("flock -w 60 9") < text.index(': > "$vms_pending/abc"') \
        < text.index("[ -d /etc ] || mkdir -p -- /etc") < text.index("echo '@@vmstation-tok locked'")
    assert "for vms_old in /etc/.a.vmstation-??????; do" in text
    script = apply_script(planned, {id(other): "0", id(late): "1"}, "tok", "h1", {3: "abc"}, 300.0,
                          placed=set(direct))
    assert ': > "$vms_pending' not in script and script.count("vms_place \"$vms_staging\"") == 2
    assert "'/etc/a'" not in script and 'rm -f -- "$vms_pending/abc"' in script


def test_handlers_are_the_operations_with_triggers():
    config = op.File("/etc/c", "x")
    operations = [config, op.Service("c", restart_on=(config.label,)), op.Command("true", "plain"),
                  op.Service("d", daemon_reload=True)]
    assert sorted(pending_markers("p", "h", operations)) == [1, 3]
    assert pending_markers("p", "h", operations) != pending_markers("q", "h", operations)


def test_the_digest_changes_with_content_commands_and_closed_over_values_and_with_the_key():
    def edit(text):
        return op.line("/etc/fstab", text)

    same = [op.File("/etc/a", "one\n"), op.Command("true", "t"), edit("x")]
    assert inputs_digest(same) == inputs_digest([op.File("/etc/a", "one\n"), op.Command("true", "t"), edit("x")])
    for other in ([op.File("/etc/a", "two\n"), op.Command("true", "t"), edit("x")],
                  [op.File("/etc/a", "one\n"), op.Command("false", "t"), edit("x")],
                  [op.File("/etc/a", "one\n"), op.Command("true", "t"), edit("y")],
                  [op.File("/etc/a", "one\n", mode="0600"), op.Command("true", "t"), edit("x")]):
        assert inputs_digest(other) != inputs_digest(same)
    assert inputs_digest(same, b"k1") != inputs_digest(same, b"k2")


def test_a_step_needing_fresh_apt_lists_gets_them_first_and_once_per_script(tmp_path):
    """The operation declares the need (Step.fresh_apt_index); the executor runs the update, once."""
    install = Step("apt a", CHANGE, commands=("apt-get install a",), fresh_apt_index=True)
    other = Step("apt b", CHANGE, commands=("apt-get install b",), fresh_apt_index=True)
    script = apply_script([install, other], {}, "tok", "h", {}, 300)
    assert script.count("apt-get update") == 2 and script.index("apt-get update") < script.index("install a")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-get").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n")
    (fake / "apt-get").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "VMS_RUN": str(tmp_path)}
    for _ in range(2):            # two steps of one placing script: the lists are updated once
        subprocess.run(["sh", "-c", APT_INDEX_UPDATE], env=env, check=True, timeout=10)
    assert (tmp_path / "calls").read_text() == "update -q\n"
