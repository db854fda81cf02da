"""cert-manager on the Debian kubeadm cluster, and the homelab's own CA issuer (``vmstation cert-manager``).

    cert-manager.install  the release's static manifest (versions.CERT_MANAGER) on the control plane, applied
                          server-side when the cluster differs from it; its three deployments available
    cert-manager.issuers  a self-signed ClusterIssuer, the CA Certificate it signs, the CA ClusterIssuer

The manifest comes from ``artifacts_dir/cert-manager/cert-manager.yaml`` when the cluster has one (air-gapped:
uploaded, and the issuers checked here, before any host, against the OpenAPI schemas of the CRDs it carries);
otherwise the control plane downloads the pinned release once. Either way the API server checks the issuers
strictly (``--validate=strict``) against the same schemas.

This module is the worked example of docs/authoring.md: a phase module, its template and a version in
versions.py are all a new target needs; the registry gives it its CLI command and fab task.
"""

from __future__ import annotations

from pathlib import Path

from vmstation import versions
from vmstation.context import HostContext
from vmstation.graph import Phase, Target
from vmstation.operations import Command, File, sh, wait_until
from vmstation.phases.debian import KUBECTL, MANIFEST_DIR, control_planes

MANIFEST = f"{MANIFEST_DIR}/cert-manager-{versions.CERT_MANAGER}.yaml"
ISSUERS = f"{MANIFEST_DIR}/cert-manager-issuers.yaml"
DEPLOYMENTS = ("cert-manager", "cert-manager-cainjector", "cert-manager-webhook")


def install(ctx: HostContext):
    local = _local_manifest(ctx)
    if local is not None:
        yield File(MANIFEST, local.read_bytes(), mode="0600", source=f"artifacts_dir/cert-manager/{local.name}")
    else:
        yield Command(sh("curl -fsSL --retry 3 -o {} {}", MANIFEST, versions.CERT_MANAGER_MANIFEST_URL),
                      f"download cert-manager {versions.CERT_MANAGER}'s manifest", creates=MANIFEST)
    yield _applied(MANIFEST, f"cert-manager {versions.CERT_MANAGER}")
    for deployment in DEPLOYMENTS:
        yield wait_until(sh(f"{KUBECTL} -n cert-manager rollout status deployment/{{}} --timeout=10s", deployment),
                         f"{deployment} available", timeout=300, interval=5)


def issuers(ctx: HostContext):
    local = _local_manifest(ctx)
    crds = local.read_text(encoding="utf-8") if local is not None else None
    text = ctx.render("cert-manager/issuers.yaml.j2", checked_by=lambda text: check_against_crds(text, crds))
    yield File(ISSUERS, text, mode="0600", source="cert-manager/issuers.yaml.j2")
    yield _applied(ISSUERS, "the vmstation CA issuers")


def check_against_crds(text: str, crd_manifest: str | None) -> list[str]:
    """Problems of each custom resource in ``text`` against the openAPIV3Schema of its CRD in ``crd_manifest``
    (fields the schema does not name are problems, as ``--validate=strict`` makes them). Without a manifest
    here, only the shape is checked (YAML, apiVersion, kind, name); the API server checks the rest."""
    import jsonschema
    import yaml

    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
        schemas = _crd_schemas(crd_manifest) if crd_manifest else None
    except yaml.YAMLError as exc:
        return [f"not YAML: {' '.join(str(exc).split())}"]
    problems = []
    for number, document in enumerate(documents, start=1):
        if not isinstance(document, dict) or not document.get("kind") or not (document.get("metadata") or {}).get(
                "name"):
            problems.append(f"document {number}: not a Kubernetes object (apiVersion, kind, metadata.name)")
            continue
        where = f"document {number} ({document['kind']} {document['metadata']['name']})"
        if schemas is None:
            continue
        schema = schemas.get((document.get("apiVersion"), document["kind"]))
        if schema is None:
            problems.append(f"{where}: the manifest has no CRD serving {document.get('apiVersion')} {document['kind']}")
            continue
        for error in sorted(jsonschema.Draft7Validator(_strict(schema)).iter_errors(document), key=str):
            path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            problems.append(f"{where}: {path}: {' '.join(error.message.split())}")
    return problems


def _crd_schemas(manifest: str) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema, for every served version of every CRD in the manifest."""
    import yaml

    schemas = {}
    for document in yaml.safe_load_all(manifest):
        if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
            spec = document["spec"]
            for version in spec.get("versions", []):
                if version.get("served") and "schema" in version:
                    schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = \
                        version["schema"]["openAPIV3Schema"]
    return schemas


def _strict(schema):
    """The schema with unknown fields refused where it lists properties (the API server's strict validation)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema and \
            not schema.get("x-kubernetes-preserve-unknown-fields") and schema.get("type") == "object":
        strict["additionalProperties"] = False
        strict["properties"] = {**strict["properties"], **({"metadata": {"type": "object"}}
                                                           if "metadata" in strict["properties"] else {})}
    return strict


def _applied(path: str, what: str) -> Command:
    applied = sh(f"{KUBECTL} apply --server-side --force-conflicts --field-manager=vmstation --validate=strict "
                 "-f {}", path)
    return Command(applied, f"apply {what}",
                   unless=sh(f"{KUBECTL} diff --server-side --field-manager=vmstation -f {{}}", path))


def _local_manifest(ctx: HostContext) -> Path | None:
    base = ctx.cluster.artifacts_dir
    path = Path(base).expanduser() / "cert-manager" / "cert-manager.yaml" if base else None
    return path if path is not None and path.is_file() else None


PHASES = [
    Phase("cert-manager.install", f"cert-manager {versions.CERT_MANAGER} (static manifest), deployments available",
          control_planes, install, needs=("debian.nodes-ready",)),
    Phase("cert-manager.issuers", "self-signed and CA ClusterIssuers, the CA certificate", control_planes,
          issuers, needs=("cert-manager.install",)),
]

TARGETS = [
    Target("cert-manager", f"cert-manager {versions.CERT_MANAGER} and the homelab's CA issuers on the Debian cluster",
           ("cert-manager.issuers",),
           command="Install cert-manager on the Debian cluster (after deploy-debian's phases) with a CA issuer."),
]
