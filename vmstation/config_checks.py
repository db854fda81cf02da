"""Checks of rendered configuration files, run before a file is pushed and by the tests.

Each check takes the rendered text and returns a list of problems, one line each; an empty
list means the file is right. They catch what the tools themselves let through:

- kubeadm only warns about unknown fields, so a config with fields that v1beta3 no longer
  has (``dns.type``, ``apiServer.advertiseAddress``) is silently half-ignored. The field sets
  come from the Go types and ship as data: ``templates/kubeadm/v1beta3-fields.json`` and
  ``v1beta4-fields.json``. Given the cluster's Kubernetes version, the config's API version
  must be one that kubeadm release reads (v1beta4 from 1.31, v1beta3 before 1.36).
- containerd reads ``SystemdCgroup`` from a different section in config version 2 and 3 and
  ignores it anywhere else; a packaged config may disable the CRI plugin.
- Kubernetes manifests are checked against the 1.29 OpenAPI schemas in strict mode
  (unknown fields are errors) with kubernetes-validate.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from pathlib import Path

import yaml

from vmstation import versions
from vmstation.check_cache import remembered
from vmstation.support import minor_key, minor_of
from vmstation.templates import TEMPLATE_DIR

KUBEADM_FIELDS_FILE = Path(TEMPLATE_DIR) / "kubeadm" / "v1beta3-fields.json"
KUBEADM_V1BETA4_FIELDS_FILE = Path(TEMPLATE_DIR) / "kubeadm" / "v1beta4-fields.json"
KUBEADM_V1BETA3, KUBEADM_V1BETA4 = "kubeadm.k8s.io/v1beta3", "kubeadm.k8s.io/v1beta4"

# Where each containerd config version reads the runc options, and the plugin IDs that
# must not be disabled for the CRI to serve.
CONTAINERD_RUNC_OPTIONS = {
    2: ("plugins", "io.containerd.grpc.v1.cri", "containerd", "runtimes", "runc", "options"),
    3: ("plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes", "runc", "options"),
}
CONTAINERD_CRI_PLUGINS = {
    2: {"cri", "io.containerd.grpc.v1.cri"},
    3: {"cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"},
}

_OTHER_KUBEADM_VERSIONS = {
    "kubeadm.k8s.io/v1beta1": "removed in Kubernetes 1.22",
    "kubeadm.k8s.io/v1beta2": "removed in Kubernetes 1.26",
}
_TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_CA_CERT_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def kubeadm_api_version(kubernetes_version: str) -> str:
    """The kubeadm config API deploy-debian renders for a cluster at ``kubernetes_version`` (versions.py says why)."""
    minor = minor_of(kubernetes_version)
    return KUBEADM_V1BETA4 if minor and minor_key(minor) >= versions.KUBEADM_V1BETA4_SINCE else KUBEADM_V1BETA3


@remembered
def check_kubeadm_config(text: str, kubernetes_version: str | None = None) -> list[str]:
    """Problems of a kubeadm config file (all its YAML documents) against its kubeadm API (v1beta3 or v1beta4);
    with ``kubernetes_version``, also an API version that kubeadm release does not read."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return [f"not YAML: {_one_line(exc)}"]
    if not documents:
        return ["no YAML document"]
    problems: list[str] = []
    for number, document in enumerate(documents, start=1):
        problems += [f"document {number} {p}" for p in _check_kubeadm_document(document, kubernetes_version)]
    return problems


@remembered
def check_containerd_config(text: str, version: int) -> list[str]:
    """Problems of /etc/containerd/config.toml for config ``version`` (2: containerd 1.x, 3: 2.x)."""
    if version not in CONTAINERD_RUNC_OPTIONS:
        return [f"containerd config version {version!r} is not 2 or 3"]
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"not TOML: {exc}"]
    problems = []
    if config.get("version") != version:
        problems.append(f"version = {config.get('version')!r}, expected {version}")
    disabled = set(config.get("disabled_plugins", [])) & CONTAINERD_CRI_PLUGINS[version]
    if disabled:
        problems.append(f"disabled_plugins disables the CRI: {', '.join(sorted(disabled))}")
    section = CONTAINERD_RUNC_OPTIONS[version]
    if _lookup(config, section).get("SystemdCgroup") is not True:
        problems.append(f"SystemdCgroup is not true in [{_toml_path(section)}]")
    for other, other_section in CONTAINERD_RUNC_OPTIONS.items():
        if other != version and "SystemdCgroup" in _lookup(config, other_section):
            problems.append(f"SystemdCgroup in [{_toml_path(other_section)}] is ignored by config version {version}")
    return problems


@remembered
def check_manifests(text: str, kubernetes_version: str = "1.29.0") -> list[str]:
    """Problems of a multi-document manifest against the Kubernetes schemas, unknown fields included."""
    import kubernetes_validate

    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return [f"not YAML: {_one_line(exc)}"]
    problems: list[str] = []
    seen: set[tuple] = set()
    for number, document in enumerate(documents, start=1):
        if not isinstance(document, dict) or "apiVersion" not in document or "kind" not in document:
            problems.append(f"document {number}: not a Kubernetes object (no apiVersion/kind)")
            continue
        where = f"document {number} ({_object_name(document)})"
        identity = _object_identity(document)
        if identity in seen:
            problems.append(f"{where}: defined twice in this file")
        seen.add(identity)
        problems += [f"{where}: {p}" for p in _schema_problems(kubernetes_validate, document, kubernetes_version)]
    return problems


# ---------------------------------------------------------------------------
# kubeadm
# ---------------------------------------------------------------------------


def _check_kubeadm_document(document, kubernetes_version: str | None) -> list[str]:
    if not isinstance(document, dict):
        return ["is not a mapping"]
    api_version, kind = document.get("apiVersion"), document.get("kind")
    fields = _kubeadm_fields(api_version)
    wanted = kubeadm_api_version(kubernetes_version) if kubernetes_version else KUBEADM_V1BETA4
    if api_version in _OTHER_KUBEADM_VERSIONS:
        why = _OTHER_KUBEADM_VERSIONS[api_version]
        return [f"({kind}): apiVersion {api_version} is {why}; use {wanted}"]
    unread = _unread_by(api_version, kubernetes_version) if kubernetes_version else ""
    if unread:
        return [f"({kind}): apiVersion {api_version} {unread}; use {wanted}"]
    if api_version not in fields["kinds"]:
        return [f"({kind}): unknown apiVersion {api_version!r}"]
    if kind not in fields["kinds"][api_version]:
        known = ", ".join(fields["kinds"][api_version])
        return [f"({kind}): kind {kind!r} is not one of {api_version}: {known}"]
    problems = [f"({kind}): {p}" for p in _field_problems(document, kind, kind, fields)]
    return problems + [f"({kind}): {p}" for p in _value_problems(document, kind)]


def _field_problems(value: dict, type_name: str, path: str, fields: dict) -> list[str]:
    """Unknown and removed fields of ``value`` (an object of ``type_name``), recursively."""
    known = fields["types"][type_name]
    problems = []
    for key, child in value.items():
        child_path = f"{path}.{key}"
        if child_path in fields["removed"]:
            problems.append(f"{_relative(child_path)}: {fields['removed'][child_path]}")
        elif key not in known:
            problems.append(f"{_relative(child_path)}: unknown field of {type_name}")
        elif known[key] is not None:
            problems += _nested_problems(child, known[key], child_path, fields)
    return problems


def _nested_problems(value, field_type: str, path: str, fields: dict) -> list[str]:
    if field_type.startswith("[]"):
        if not isinstance(value, list):
            return [f"{_relative(path)}: expected a list"]
        items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
        field_type = field_type[2:]
    else:
        items = [(path, value)]
    problems = []
    for item_path, item in items:
        if not isinstance(item, dict):
            problems.append(f"{_relative(item_path)}: expected a mapping ({field_type})")
        else:
            problems += _field_problems(item, field_type, item_path, fields)
    return problems


def _value_problems(document: dict, kind: str) -> list[str]:
    """Value shapes that kubeadm would only reject late, on the host."""
    problems = []
    if kind == "ClusterConfiguration":
        version = str(document.get("kubernetesVersion", ""))
        if version and not re.match(r"^v\d+\.\d+\.\d+$", version):
            problems.append(f"kubernetesVersion {version!r} is not like v1.29.15")
    if kind == "JoinConfiguration":
        token_discovery = (document.get("discovery") or {}).get("bootstrapToken") or {}
        if "token" in token_discovery and not _TOKEN.match(str(token_discovery["token"])):
            # The token itself is a secret: never repeat it.
            problems.append("discovery.bootstrapToken.token is not of the form [a-z0-9]{6}.[a-z0-9]{16}")
        for ca_hash in token_discovery.get("caCertHashes") or []:
            if not _CA_CERT_HASH.match(str(ca_hash)):
                problems.append(f"discovery.bootstrapToken.caCertHashes: {ca_hash!r} is not sha256:<64 hex>")
    return problems


def _unread_by(api_version: str, kubernetes_version: str) -> str:
    """Why kubeadm of ``kubernetes_version`` does not read ``api_version`` ("" when it does)."""
    minor = minor_of(kubernetes_version)
    if not minor:
        return ""
    since, removed = versions.KUBEADM_V1BETA4_SINCE, versions.KUBEADM_V1BETA3_REMOVED_IN
    if api_version == KUBEADM_V1BETA4 and minor_key(minor) < since:
        return f"needs Kubernetes {since[0]}.{since[1]} or later (the cluster is {minor})"
    if api_version == KUBEADM_V1BETA3 and minor_key(minor) >= removed:
        return f"was removed in Kubernetes {removed[0]}.{removed[1]} (the cluster is {minor})"
    return ""


def _kubeadm_fields(api_version) -> dict:
    """The field set of ``api_version``'s file: v1beta4's, or v1beta3's (which also holds kubelet and kube-proxy)."""
    return _fields_file(KUBEADM_V1BETA4_FIELDS_FILE if api_version == KUBEADM_V1BETA4 else KUBEADM_FIELDS_FILE)


@functools.lru_cache(maxsize=2)
def _fields_file(path: Path) -> dict:
    return json.loads(path.read_text())


def _relative(path: str) -> str:
    """``ClusterConfiguration.dns.type`` -> ``dns.type`` (the kind is already in the message)."""
    return path.split(".", 1)[1]


# ---------------------------------------------------------------------------
# containerd and manifests
# ---------------------------------------------------------------------------


def _lookup(config: dict, section: tuple[str, ...]) -> dict:
    for key in section:
        config = config.get(key, {}) if isinstance(config, dict) else {}
    return config if isinstance(config, dict) else {}


def _toml_path(section: tuple[str, ...]) -> str:
    return ".".join(f'"{key}"' if "." in key else key for key in section)


def _schema_problems(kubernetes_validate, document: dict, kubernetes_version: str) -> list[str]:
    try:
        kubernetes_validate.validate(document, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(top level)"
        if document.get("kind") == "Secret":
            # jsonschema's message quotes the offending value, which may be the secret.
            return [f"{path}: fails the schema's {exc.validator!r} rule"]
        return [f"{path}: {_one_line(exc.message)}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


def _object_name(document: dict) -> str:
    metadata = document.get("metadata") or {}
    namespace = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    return f"{document.get('kind')} {namespace}{metadata.get('name')}"


def _object_identity(document: dict) -> tuple:
    metadata = document.get("metadata") or {}
    group = str(document.get("apiVersion")).rpartition("/")[0]
    return group, document.get("kind"), metadata.get("namespace"), metadata.get("name")


def _one_line(message) -> str:
    return " ".join(str(message).split())
