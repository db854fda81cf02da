"""Checks of an RKE2 config.yaml (server or agent) before it is written: RKE2 would start with a wrong key.

``check_rke2_config(text)`` returns the problems found, one line each, [] for a good file. It knows
the documented server keys, the shapes of the values vmstation writes, and the CNI values RKE2 takes.
"""

from __future__ import annotations

import ipaddress

from vmstation.check_cache import remembered

# Every flag of `rke2 server`, as config-file keys. Source: the RKE2 Server Configuration Reference,
# docs.rke2.io/reference/server_config (rancher/rke2-docs, docs/reference/server_config.md), all its
# tables, union of the v1.29-era page and the current one. A key may end in "+" to append to a
# value set in an earlier file of config.yaml.d (docs.rke2.io/install/configuration).
DOCUMENTED_SERVER_KEYS = frozenset({
    # common, listener
    "config", "debug", "data-dir", "bind-address", "advertise-address", "tls-san", "tls-san-security",
    # networking
    "cluster-cidr", "service-cidr", "service-node-port-range", "cluster-dns", "cluster-domain",
    "egress-selector-mode", "servicelb-namespace", "cni",
    # client, helm, cluster
    "write-kubeconfig", "write-kubeconfig-mode", "helm-job-image",
    "token", "token-file", "agent-token", "agent-token-file", "server", "cluster-reset",
    # database
    "cluster-reset-restore-path", "etcd-expose-metrics", "etcd-disable-snapshots", "etcd-snapshot-name",
    "etcd-snapshot-schedule-cron", "etcd-snapshot-retention", "etcd-snapshot-dir", "etcd-snapshot-compress",
    "etcd-s3", "etcd-s3-endpoint", "etcd-s3-endpoint-ca", "etcd-s3-skip-ssl-verify", "etcd-s3-access-key",
    "etcd-s3-secret-key", "etcd-s3-session-token", "etcd-s3-bucket", "etcd-s3-bucket-lookup-type",
    "etcd-s3-region", "etcd-s3-folder", "etcd-s3-retention", "etcd-s3-proxy", "etcd-s3-config-secret",
    "etcd-s3-insecure", "etcd-s3-timeout",
    # flags passed through to components
    "kube-apiserver-arg", "etcd-arg", "kube-controller-manager-arg", "kube-scheduler-arg",
    "kube-cloud-controller-manager-arg", "kubelet-arg", "kube-proxy-arg",
    # components
    "disable", "disable-scheduler", "disable-cloud-controller", "disable-kube-proxy", "enable-servicelb",
    "control-plane-resource-requests", "control-plane-resource-limits", "control-plane-probe-configuration",
    "kube-apiserver-extra-mount", "kube-scheduler-extra-mount", "kube-controller-manager-extra-mount",
    "kube-proxy-extra-mount", "etcd-extra-mount", "cloud-controller-manager-extra-mount",
    "kube-apiserver-extra-env", "kube-scheduler-extra-env", "kube-controller-manager-extra-env",
    "kube-proxy-extra-env", "etcd-extra-env", "cloud-controller-manager-extra-env", "ingress-controller",
    # images
    "kube-apiserver-image", "kube-controller-manager-image", "cloud-controller-manager-image",
    "kube-proxy-image", "kube-scheduler-image", "pause-image", "runtime-image", "etcd-image",
    # cloud provider, security, experimental
    "cloud-provider-name", "cloud-provider-config", "profile", "audit-policy-file",
    "pod-security-admission-config-file", "secrets-encryption-provider",
    "embedded-registry", "enable-pprof", "kubelet-path",
    # agent: node, runtime, containerd, networking
    "node-name", "with-node-id", "node-label", "node-taint", "image-credential-provider-bin-dir",
    "image-credential-provider-config", "protect-kernel-defaults", "selinux", "lb-server-port",
    "container-runtime-endpoint", "default-runtime", "snapshotter", "private-registry",
    "system-default-registry", "disable-default-registry-endpoint",
    "node-ip", "node-external-ip", "resolv-conf",
})

# Every flag of `rke2 agent`: docs.rke2.io/reference/linux_agent_config (rancher/rke2-docs,
# docs/reference/linux_agent_config.md at 9477b7b1, 2026-08, all its tables). An agent given a server-only
# key (cni, tls-san, cluster-cidr) would take it for a typo; vmstation writes agents only these.
DOCUMENTED_AGENT_KEYS = frozenset({
    "config", "debug", "data-dir", "token", "token-file", "server", "bind-address",
    "kube-apiserver-image", "kube-controller-manager-image", "cloud-controller-manager-image", "kube-proxy-image",
    "kube-scheduler-image", "pause-image", "runtime-image", "etcd-image", "cloud-provider-name",
    "cloud-provider-config", "node-name-from-cloud-provider-metadata", "profile", "audit-policy-file",
    "pod-security-admission-config-file", "control-plane-resource-requests", "control-plane-resource-limits",
    "control-plane-probe-configuration", "kube-apiserver-extra-mount", "kube-scheduler-extra-mount",
    "kube-controller-manager-extra-mount", "kube-proxy-extra-mount", "etcd-extra-mount",
    "cloud-controller-manager-extra-mount", "kube-apiserver-extra-env", "kube-scheduler-extra-env",
    "kube-controller-manager-extra-env", "kube-proxy-extra-env", "etcd-extra-env",
    "cloud-controller-manager-extra-env", "node-name", "with-node-id", "node-label", "node-taint",
    "image-credential-provider-bin-dir", "image-credential-provider-config", "selinux", "lb-server-port",
    "protect-kernel-defaults", "container-runtime-endpoint", "default-runtime", "snapshotter", "private-registry",
    "disable-default-registry-endpoint", "nonroot-devices", "node-ip", "node-external-ip", "node-internal-dns",
    "node-external-dns", "resolv-conf", "kubelet-arg", "kube-proxy-arg", "enable-pprof", "kubelet-path",
})

# The `cni` flag: "one of none, calico, canal, cilium" (server_config), flannel since RKE2 v1.27,
# optionally with multus first ("multus,canal" or [multus, canal]).
CNI_PLUGINS = frozenset({"canal", "calico", "cilium", "flannel", "none"})

_LIST_KEYS = ("tls-san", "disable", "node-label", "node-taint", "kubelet-arg", "kube-apiserver-arg")
_BOOL_KEYS = ("selinux", "debug", "disable-kube-proxy", "disable-cloud-controller", "protect-kernel-defaults")
_CIDR_KEYS = ("cluster-cidr", "service-cidr")
_IP_KEYS = ("node-ip", "node-external-ip", "advertise-address")


@remembered
def check_rke2_config(text: str, role: str = "server", joining: bool = False) -> list[str]:
    """Problems of an RKE2 config.yaml of a ``role`` ("server" | "agent") node, one line each; [] when good.

    ``joining``: a node that joins an existing cluster (another server, any agent) needs `server` and `token`
    (docs.rke2.io/install/ha, "Launch additional server nodes"); the first server needs neither.
    """
    import yaml

    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [f"config.yaml: not YAML: {str(exc).splitlines()[0]}"]
    if not isinstance(config, dict):
        return ["config.yaml: the top level must be a mapping of flag names to values"]
    return (_unknown_keys(config, role) + _type_problems(config) + _cni_problems(config.get("cni"))
            + _address_problems(config) + _mode_problems(config.get("write-kubeconfig-mode"))
            + _join_problems(config, joining))


def _unknown_keys(config: dict, role: str) -> list[str]:
    known, page = ((DOCUMENTED_AGENT_KEYS, "linux_agent_config") if role == "agent"
                   else (DOCUMENTED_SERVER_KEYS, "server_config"))
    return [f"config.yaml: key {key!r} is not an RKE2 {role} flag (docs.rke2.io/reference/{page})"
            for key in config if str(key).rstrip("+") not in known]


def _join_problems(config: dict, joining: bool) -> list[str]:
    present = [key for key in ("server", "token") if config.get(key)]
    if joining and len(present) < 2:
        return ["config.yaml: a joining node needs both 'server' (https://FIRST:9345) and 'token'"]
    if not joining and "server" in present:
        return ["config.yaml: the first server must not name a 'server' to join"]
    server = config.get("server")
    if server and not (isinstance(server, str) and server.startswith("https://") and server.endswith(":9345")):
        return ["config.yaml: key 'server' must be the supervisor URL https://HOST:9345"]
    return []


def _type_problems(config: dict) -> list[str]:
    problems = []
    for key in _LIST_KEYS:
        value = config.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            problems.append(f"config.yaml: key {key!r} must be a list of strings, not {type(value).__name__}")
    for key in _BOOL_KEYS:
        if key in config and not isinstance(config[key], bool):
            problems.append(f"config.yaml: key {key!r} must be true or false, not {config[key]!r}")
    for key in ("node-name", "token", "server", "cluster-domain", *_CIDR_KEYS):
        if key in config and not isinstance(config[key], str):
            problems.append(f"config.yaml: key {key!r} must be a string, not {type(config[key]).__name__}")
    return problems


def _cni_problems(cni: object) -> list[str]:
    if cni is None:
        return []
    names = cni if isinstance(cni, list) else str(cni).split(",") if isinstance(cni, str) else None
    if names is None or not all(isinstance(n, str) for n in names):
        return [f"config.yaml: key 'cni' must be a string or a list of strings, not {cni!r}"]
    names = [n.strip() for n in names]
    plugins = names[1:] if names[:1] == ["multus"] else names
    if len(plugins) != 1 or plugins[0] not in CNI_PLUGINS:
        allowed = ", ".join(sorted(CNI_PLUGINS))
        return [f"config.yaml: key 'cni' is {cni!r}: expected one of {allowed}, optionally after multus"]
    return []


def _address_problems(config: dict) -> list[str]:
    problems = []
    for key in _CIDR_KEYS:
        for part in _comma_parts(config.get(key)):
            try:
                ipaddress.ip_network(part)
            except ValueError:
                problems.append(f"config.yaml: key {key!r}: {part!r} is not a network CIDR")
    for key in _IP_KEYS:
        for part in _comma_parts(config.get(key)):
            try:
                ipaddress.ip_address(part)
            except ValueError:
                problems.append(f"config.yaml: key {key!r}: {part!r} is not an IP address")
    return problems


def _mode_problems(mode: object) -> list[str]:
    # Unquoted 0600 is YAML 1.1 octal (the number 384) and 600 is decimal: both end up as the wrong mode.
    if mode is None or (isinstance(mode, str) and len(mode) in (3, 4) and set(mode) <= set("01234567")):
        return []
    return [f"config.yaml: key 'write-kubeconfig-mode' must be a quoted octal string like \"0600\", not {mode!r}"]


def _comma_parts(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return []
