"""known_hosts: appends that are newline-safe, atomic and locked; malformed lines named by file and line."""

from __future__ import annotations

import os
import threading

import paramiko
import pytest

from vmstation import known_hosts
from vmstation.errors import InputError


@pytest.fixture(scope="module")
def keys():
    return [paramiko.ECDSAKey.generate() for _ in range(3)]


def line_of(name: str, key) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}"


def test_append_to_a_file_without_final_newline_starts_a_new_line(tmp_path, keys):
    path = tmp_path / "known_hosts"
    path.write_text(line_of("10.77.9.1", keys[0]))              # no final newline, as editors leave it
    assert known_hosts.append(path, "[10.77.9.2]:2222", keys[1])
    assert path.read_text().splitlines() == [line_of("10.77.9.1", keys[0]), line_of("[10.77.9.2]:2222", keys[1])]
    loaded = known_hosts.load(path)
    assert loaded.lookup("10.77.9.1") and loaded.lookup("[10.77.9.2]:2222")


def test_append_keeps_the_mode_and_replaces_atomically(tmp_path, keys):
    path = tmp_path / "known_hosts"
    path.write_text(line_of("10.77.9.1", keys[0]) + "\n")
    path.chmod(0o644)
    inode = path.stat().st_ino
    known_hosts.append(path, "10.77.9.2", keys[1])
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.stat().st_ino != inode                          # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir()] == ["known_hosts"]   # no temporary or lock file left


def test_a_new_file_is_private_and_an_entry_is_recorded_once(tmp_path, keys):
    path = tmp_path / "ssh" / "known_hosts"
    assert known_hosts.append(path, "10.77.9.1", keys[0])
    assert not known_hosts.append(path, "10.77.9.1", keys[0])
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == line_of("10.77.9.1", keys[0]) + "\n"


def test_parallel_appends_lose_nothing(tmp_path, keys):
    path = tmp_path / "known_hosts"
    path.write_text("# first line, no newline")
    names = [f"10.77.9.{i}" for i in range(1, 41)]
    threads = [threading.Thread(target=known_hosts.append, args=(path, name, keys[i % 3]))
               for i, name in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    loaded = known_hosts.load(path)
    assert all(loaded.lookup(name) for name in names)
    assert len(path.read_text().splitlines()) == 41


def test_a_glued_line_is_one_error_naming_file_and_line(tmp_path, keys):
    path = tmp_path / "known_hosts"
    glued = line_of("10.77.9.1", keys[0]) + line_of("10.77.9.2", keys[1])   # what the old append produced
    path.write_text("# comment\n" + line_of("10.77.9.3", keys[2]) + "\n" + glued + "\n")
    with pytest.raises(InputError) as raised:
        known_hosts.load(path)
    assert str(raised.value).startswith(f"{path}: line 3: malformed known_hosts entry")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("content, line", [
    ("10.77.9.1 ssh-ed25519\n", 1),
    ("# ok\n\n10.77.9.1 ssh-ed25519 AAAA!!!!\n", 3),
    ("10.77.9.1 ecdsa-sha2-nistp256 AAAAC3NzaC1lZDI1NTE5AAAAIE\n", 1),
])
def test_other_malformed_lines(tmp_path, content, line):
    path = tmp_path / "known_hosts"
    path.write_text(content)
    with pytest.raises(InputError, match=f"line {line}: malformed"):
        known_hosts.load(path)


def test_markers_unknown_types_and_hashed_names_are_read_like_openssh(tmp_path, keys):
    hashed = paramiko.HostKeys.hash_host("10.77.9.5")
    path = tmp_path / "known_hosts"
    path.write_text(f"@cert-authority *.lan {keys[0].get_name()} {keys[0].get_base64()}\n"
                    "10.77.9.4 ssh-unknown-type AAAA\n"
                    f"{hashed} {keys[1].get_name()} {keys[1].get_base64()}\n")
    loaded = known_hosts.load(path)
    assert loaded.lookup("10.77.9.5") is not None and loaded.lookup("10.77.9.4") is None


def test_a_missing_file_is_empty_and_a_directory_is_an_error(tmp_path):
    assert len(known_hosts.load(tmp_path / "absent")) == 0
    with pytest.raises(InputError, match="is a directory"):
        known_hosts.load(tmp_path)


def test_a_host_name_with_white_space_is_never_written(tmp_path, keys):
    with pytest.raises(InputError, match="white space"):
        known_hosts.append(tmp_path / "known_hosts", "evil\n10.77.9.9", keys[0])
    assert not os.path.exists(tmp_path / "known_hosts")
