"""What a host sends back is data, never code for the operator's machine.

A kubeconfig fetched from a control plane (admin.conf, rke2.yaml) is written to the
operator's machine and used there with kubectl. A compromised host could put an
``exec`` credential plugin or an ``auth-provider`` into it: kubectl would then run a
command of the host's choosing on the operator's machine, or send its requests
through a ``proxy-url`` of the host's choosing. So a fetched kubeconfig must parse as
one, and carry certificates, keys and tokens only.
"""

from __future__ import annotations

from vmstation.errors import HostError

_CODE_KEYS = {"exec": "an exec credential plugin (a command kubectl would run here)",
              "auth-provider": "an auth-provider (a plugin kubectl would load here)"}
_FILE_KEYS = ("tokenFile", "client-certificate", "client-key", "certificate-authority")


def check_kubeconfig(content: bytes, host: str, path: str) -> bytes:
    """``content`` unchanged when it is a plain kubeconfig; HostError naming what it carries otherwise."""
    import yaml

    try:
        config = yaml.safe_load(content)
    except (yaml.YAMLError, RecursionError):
        raise HostError(host, f"{path} fetched from the host is not YAML: not written here") from None
    if not isinstance(config, dict) or config.get("kind", "Config") != "Config":
        raise HostError(host, f"{path} fetched from the host is not a kubeconfig: not written here")
    for problem in _problems(config):
        raise HostError(host, f"{path} fetched from the host carries {problem}: refused, not written here")
    return content


def _problems(config: dict):
    for entry in _entries(config, "users"):
        user = entry.get("user")
        if isinstance(user, dict):
            yield from (described for key, described in _CODE_KEYS.items() if key in user)
            yield from (f"a path to a file on this machine ({key})" for key in _FILE_KEYS if key in user)
    for entry in _entries(config, "clusters"):
        cluster = entry.get("cluster")
        if isinstance(cluster, dict):
            if "proxy-url" in cluster:
                yield "a proxy-url (kubectl would send its requests through it)"
            yield from (f"a path to a file on this machine ({key})" for key in _FILE_KEYS if key in cluster)


def _entries(config: dict, key: str) -> list[dict]:
    value = config.get(key) or []
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []
