"""Random and mutated inventory bytes: `vmstation inventory check` exits 0 or 2 within a time limit, always.

In-process through click's runner (hypothesis runs hundreds of inputs), with hypothesis's deadline as
the time limit; a few inputs also through the installed console script in a subprocess with a timeout,
so that the real entry point (imports, stderr, exit status) is covered too.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_cli import VMSTATION
from vmstation.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
VALID = (ROOT / "hosts.toml").read_bytes()
TIME_LIMIT = 5.0          # seconds per input; a clean inventory check takes milliseconds

# Byte strings that matter to TOML and to the checks: brackets, quotes, escapes, keys, line breaks.
TOKENS = [b"[", b"]", b"{", b"}", b'"', b"'", b'"""', b"\\", b"\\u0000", b"=", b",", b"\n", b"\r\n", b"#", b".",
          b"[hosts.", b"[clusters.", b"[[", b"]]", b"inf", b"nan", b"1979-05-27T07:32:00Z", b"0x1f", b"1e999",
          b"\xff", b"\xc3", b"\x00", b"\x85", b"\xe2\x80\xa8", b"roles = []", b'kind = "rke2"', b"vault:", b"true"]


@st.composite
def mutated(draw) -> bytes:
    """The real hosts.toml with a few random edits: delete, duplicate, insert tokens or bytes, flip bytes."""
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["delete", "duplicate", "token", "bytes", "flip", "nest"]))
        if action == "delete":
            del data[at:at + draw(st.integers(1, 80))]
        elif action == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 400))]
        elif action == "token":
            data[at:at] = draw(st.sampled_from(TOKENS)) * draw(st.integers(1, 4))
        elif action == "bytes":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "nest":
            depth = draw(st.integers(1, 3000))
            data[at:at] = b"x = " + b"[" * depth + b"]" * draw(st.sampled_from([depth, depth - 1, 0])) + b"\n"
    return bytes(data)


def check_exits_0_or_2(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "hosts.toml"
    path.write_bytes(data)
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["inventory", "check", "-i", str(path)])
    assert time.monotonic() - started < TIME_LIMIT
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 2:      # `inventory check` reports every problem, one line each
        assert all(line.startswith("vmstation: ") for line in result.output.strip().splitlines()), result.output


@settings(max_examples=300, deadline=TIME_LIMIT * 1000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_inventories_exit_0_or_2(tmp_path, data):
    check_exits_0_or_2(tmp_path, data)


@settings(max_examples=200, deadline=TIME_LIMIT * 1000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=2000), st.lists(st.sampled_from(TOKENS), max_size=200).map(b"".join)))
def test_random_bytes_exit_0_or_2(tmp_path, data):
    check_exits_0_or_2(tmp_path, data)


@pytest.mark.parametrize("data", [
    b"", b"\xff\xfe", b"x = " + b"[" * 5000 + b"]" * 5000, b"a = {" * 3000, VALID.replace(b"[hosts.", b"[[hosts.", 1),
    VALID + b"\n[hosts.masternode]\n", VALID.replace(b'"', b"'"), VALID[: len(VALID) // 2],
])
def test_the_console_script_exits_0_or_2_within_the_limit(tmp_path, data):
    if not VMSTATION.exists():
        pytest.skip(f"{VMSTATION} is not installed (pip install -e .)")
    (tmp_path / "hosts.toml").write_bytes(data)
    result = subprocess.run([str(VMSTATION), "inventory", "check", "-i", "hosts.toml"], cwd=tmp_path,
                            capture_output=True, timeout=30)
    assert result.returncode in (0, 2) and b"Traceback" not in result.stderr, result.stderr
