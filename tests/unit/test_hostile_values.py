"""Hostile strings in every string field of hosts.toml: refused with one line (exit 2), or rendered inert.

For each string field (and the table names, which become node names, paths and label values) a
hostile string is put in, alone or after a valid value: quotes with an apt directive, a systemd
directive after a line break (also U+0085 and U+2028, which YAML and Python count as line breaks),
a YAML key, a TOML table, a '%' specifier, shell command substitution, path climbing. Then either
loading the inventory fails with an InventoryError (the CLI's exit 2, checked through the CLI for
one value per field), or every file the deploy targets write renders with exactly the structure it
has for the valid inventory: the same parsed keys for YAML, TOML and JSON, the same directive on
every line for apt, systemd, sysctl and NetworkManager files, and the marker only inside single
quotes in shell scripts. Rendering is `vmstation render`'s: no host is asked anything.
"""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmstation import versions
from vmstation.cli import main as cli
from vmstation.errors import InputError, InventoryError
from vmstation.inventory import load_text
from vmstation.offline import operations_offline
from vmstation.operations import File

MARK = "pwned"
TARGETS = ("deploy-debian", "deploy-rke2")

# The valid inventory: table -> key -> value. Every string value here is a field under test.
BASE: dict[str, dict] = {
    "": {"vault": "secrets.vault", "known_hosts": "known_hosts"},
    "defaults": {"ssh_key": "~/.ssh/id_test"},
    "power": {"check_interval": "hourly", "wol_broadcast": "10.0.0.255", "wol_interface": "eno1",
              "jellyfin_url": "http://10.0.0.2:30096", "jellyfin_api_key": "vault:jellyfin_api_key"},
    "clusters.debian": {"kind": "kubeadm", "version": "1.29.15", "pod_cidr": "10.244.0.0/16",
                        "service_cidr": "10.96.0.0/12", "api_endpoint": "10.0.0.1:6443",
                        "cri_socket": "unix:///var/run/containerd/containerd.sock", "dns_domain": "cluster.local",
                        "containerd_source": "debian", "cni": "flannel", "accept_old_containerd": True},
    "clusters.rke2": {"kind": "rke2", "version": versions.RKE2, "firewall": "open-ports", "cni": "canal",
                      "artifacts_dir": "rke2-artifacts"},
    "hosts.cp": {"address": "10.0.0.1", "cluster": "debian", "roles": ["control-plane"], "always_on": True,
                 "interface": "eno1", "apt_proxy": "http://10.0.0.9:3142", "os_family": "debian"},
    "hosts.worker": {"address": "10.0.0.2", "cluster": "debian", "roles": ["worker", "jellyfin"],
                     "mac": "aa:bb:cc:dd:ee:02", "media_path": "/srv/media", "sleep_method": "shutdown",
                     "interface": "enp2s0", "ssh_user": "root"},
    "hosts.server": {"address": "10.0.0.3", "cluster": "rke2", "roles": ["server"], "ssh_user": "admin",
                     "become_password": "vault:server_sudo", "mac": "aa:bb:cc:dd:ee:03", "os_family": "rhel",
                     "interface": "ens3"},
}
FIELDS = [(table, key) for table, values in BASE.items() for key, value in values.items() if isinstance(value, str)]
NAMES = [("hosts", "worker"), ("clusters", "debian")]          # table names: they become paths and labels
LOCAL_PATHS = [("", "vault"), ("", "known_hosts"), ("defaults", "ssh_key"), ("clusters.rke2", "artifacts_dir")]

PAYLOADS = [
    f'/";APT::Update::Pre-Invoke {{"touch /tmp/{MARK}";}};//',          # the issue's apt_proxy, after a URL
    f'";APT::Update::Pre-Invoke {{"touch /tmp/{MARK}";}};//',
    f"\nExecStartPre=/bin/touch /tmp/{MARK}",
    f"\x85ExecStartPre=/bin/touch /tmp/{MARK}",
    f"\u2028{MARK}: injected",
    f'"\n{MARK}: injected\nx: "',
    f"'\n[{MARK}]\nx = 1",
    f"$(touch /tmp/{MARK})",
    f"`touch /tmp/{MARK}`",
    f"'; touch /tmp/{MARK}; '",
    f"%n%i{MARK}",
    f"/../../../tmp/{MARK}",
    f" {MARK}=1",
    f"#{MARK}",
    f'\\" {MARK}',
    f"\t{MARK}",
    f",interface-name:{MARK}",
    f"}}{{{{{MARK}}}}}",
]

hostile = st.tuples(st.sampled_from(PAYLOADS), st.booleans(),
                    st.text(alphabet=" ;:/\"'$%{}[]=\\\n#-.", max_size=3))


def toml_text(tables: dict[str, dict]) -> str:
    lines = []
    for table, values in tables.items():
        if table:
            lines.append("[" + ".".join(json.dumps(part) for part in _table_parts(table)) + "]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def _table_parts(table: str) -> list[str]:
    kind, _, name = table.partition(".")
    return [kind, name] if name else [kind]


def with_value(table: str, key: str, value: str) -> dict[str, dict]:
    tables = {t: dict(v) for t, v in BASE.items()}
    tables[table][key] = value
    return tables


def with_name(kind: str, old: str, new: str) -> dict[str, dict]:
    tables = {}
    for table, values in BASE.items():
        values = dict(values)
        if kind == "clusters" and values.get("cluster") == old:
            values["cluster"] = new
        tables[f"{kind}.{new}" if table == f"{kind}.{old}" else table] = values
    return tables


def rendered_files(text: str) -> dict[str, bytes] | None:
    """Every file the deploy targets write, by host and path; None when the inventory is refused."""
    try:
        inventory = load_text(text, "hosts.toml")
        files = {}
        for target in TARGETS:
            for _phase, host, operations in operations_offline(inventory, target):
                for operation in operations if isinstance(operations, list) else ():
                    if isinstance(operation, File):
                        files[f"{host.name}:{operation.path}"] = operation.data
        return files
    except (InventoryError, InputError):
        return None


BASELINE: dict[str, bytes] = {}


@pytest.fixture(scope="module", autouse=True)
def baseline():
    files = rendered_files(toml_text(BASE))
    assert files, "the valid inventory must load and render"
    BASELINE.update(files)


@pytest.mark.parametrize("field", FIELDS + NAMES, ids=lambda f: ".".join(f) if isinstance(f, tuple) else f)
def test_every_payload_in_every_field_is_refused_or_renders_inert(field):
    # Paths on the operator's machine are accepted as any string and rendered nowhere: one render with
    # every payload at once proves that (a render takes about a second).
    payloads = ["".join(PAYLOADS)] if field in LOCAL_PATHS else PAYLOADS
    for payload in payloads:
        for after_valid in (False, True):
            check_field(field, payload, after_valid, "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from([f for f in FIELDS + NAMES if f not in LOCAL_PATHS]), attack=hostile)
def test_hostile_strings_with_random_noise_are_refused_or_render_inert(field, attack):
    check_field(field, *attack)


def check_field(field, payload: str, after_valid: bool, noise: str) -> None:
    if field in NAMES:
        kind, old = field
        value = (old if after_valid else "") + payload + noise
        files = rendered_files(toml_text(with_name(kind, old, value)))
    else:
        table, key = field
        value = (BASE[table][key] if after_valid else "") + payload + noise
        files = rendered_files(toml_text(with_value(table, key, value)))
    if files is None:
        return                                   # refused: one InventoryError, the CLI's exit 2
    RENDERED.append(field)
    for name, content in files.items():
        assert_inert(name, content, BASELINE.get(_baseline_name(name, field)))


RENDERED: list = []


def _baseline_name(name: str, field) -> str:
    host, _, path = name.partition(":")
    if field == ("hosts", "worker") and host not in ("cp", "server"):
        host = "worker"
    return f"{host}:{path}"


def assert_inert(name: str, content: bytes, baseline: bytes | None) -> None:
    text = content.decode("utf-8", "replace")
    path = name.partition(":")[2]
    if re.search(r"\.ya?ml$", path):
        documents = list(yaml.safe_load_all(text))
        assert not any(MARK in key for key in _keys(documents)), f"{name}: a YAML key was injected"
        if baseline is not None:
            assert _keys(documents) == _keys(list(yaml.safe_load_all(baseline.decode()))), name
    elif path.endswith(".toml"):
        assert _keys(tomllib.loads(text)) == _keys(tomllib.loads(baseline.decode())) if baseline else True, name
    elif path.endswith(".json"):
        assert _keys(json.loads(text)) == _keys(json.loads(baseline.decode())) if baseline else True, name
    elif text.startswith("#!") or path.endswith(".sh"):
        for line in text.splitlines():
            assert _outside_single_quotes(line) is False, f"{name}: {MARK!r} outside single quotes: {line!r}"
    else:
        lines = text.splitlines()                # also splits at U+0085 and U+2028: stricter than systemd
        assert not any(re.search(r"(Pre|Post)-Invoke|^\s*Exec", line) and MARK in line for line in lines), name
        if baseline is not None:
            assert [_directive(line) for line in lines] == \
                [_directive(line) for line in baseline.decode().splitlines()], f"{name}: directives changed"


def _keys(value, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return {f"{prefix}/{k}" for k in value} | {p for k, v in value.items() for p in _keys(v, f"{prefix}/{k}")}
    if isinstance(value, list):
        return {p for item in value for p in _keys(item, prefix + "/*")}
    return set()


def _directive(line: str) -> str:
    """What a config line is: a comment, a section, or the key before '=', ':' or white space."""
    stripped = line.strip()
    if not stripped or stripped.startswith(("#", ";", "//")):
        return "comment"
    return re.match(r"[^=:\s]*", stripped)[0]


def _outside_single_quotes(line: str) -> bool:
    """Whether MARK appears anywhere in ``line`` that a POSIX shell would not read literally."""
    quoted, index = False, 0
    while index < len(line):
        if line[index] == "'":
            quoted = not quoted
        elif not quoted and line.startswith(MARK, index):
            return True
        elif not quoted and line[index] == "\\":
            index += 1
        index += 1
    return False


@pytest.mark.parametrize("field", FIELDS + NAMES, ids=lambda f: ".".join(f) if isinstance(f, tuple) else f)
def test_every_field_refuses_the_apt_injection_of_the_issue_or_keeps_it_inert_through_the_cli(field, tmp_path):
    """One value per field through `vmstation inventory check`: exit 0 (then renders inert) or 2, one line each."""
    payload = PAYLOADS[0]
    if field in NAMES:
        tables = with_name(field[0], field[1], field[1] + payload)
    else:
        tables = with_value(field[0], field[1], BASE[field[0]][field[1]] + payload)
    (tmp_path / "hosts.toml").write_text(toml_text(tables))
    result = CliRunner().invoke(cli, ["inventory", "check", "-i", str(tmp_path / "hosts.toml")])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if result.exit_code == 2:      # `inventory check` reports every problem: one line each
        assert all(line.startswith("vmstation: ") and "hosts.toml" in line
                   for line in result.output.strip().splitlines()), result.output
    else:
        for name, content in (rendered_files(toml_text(tables)) or {}).items():
            assert_inert(name, content, BASELINE.get(name))


def test_the_apt_proxy_of_the_issue_is_refused_and_a_good_one_rendered_from_its_parts():
    tables = with_value("hosts.cp", "apt_proxy",
                        'http://10.0.0.1:3142/";APT::Update::Pre-Invoke {"touch /tmp/pwned-by-apt";};//')
    with pytest.raises(InventoryError, match="key 'apt_proxy': .* is not a proxy URL of the form"):
        load_text(toml_text(tables), "hosts.toml")
    files = rendered_files(toml_text(with_value("hosts.cp", "apt_proxy", "HTTP://Proxy.LAN:3142/")))
    assert files is None       # scheme must be lower-case http or https
    files = rendered_files(toml_text(with_value("hosts.cp", "apt_proxy", "https://proxy.lan:3142/")))
    assert files["cp:/etc/apt/apt.conf.d/90vmstation-proxy"].decode().splitlines()[1:] == [
        'Acquire::http::Proxy "https://proxy.lan:3142";', 'Acquire::https::Proxy "https://proxy.lan:3142";']
