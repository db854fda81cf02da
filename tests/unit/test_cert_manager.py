"""The cert-manager phases (the worked example of docs/authoring.md): pure descriptions, the issuers checked
against the CRD schemas a manifest carries, the target's command and fab task derived from the registry."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from vmstation import versions
from vmstation.context import HostContext, RunContext
from vmstation.errors import InputError
from vmstation.offline import assumed_facts
from vmstation.operations import Command, File
from vmstation.phases import cert_manager


def crd(kind: str, plural: str, scope: str, spec_properties: dict) -> dict:
    """A CustomResourceDefinition written for this test in the shape cert-manager's manifest has (one served
    version, a structural openAPIV3Schema)."""
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.cert-manager.io"},
            "spec": {"group": "cert-manager.io", "scope": scope,
                     "names": {"kind": kind, "plural": plural},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object",
                         "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                        "metadata": {"type": "object"},
                                        "spec": {"type": "object", "properties": spec_properties},
                                        "status": {"type": "object"}}}}}]}}


ISSUER_SPEC = {"selfSigned": {"type": "object", "properties": {"crlDistributionPoints": {"type": "array"}}},
               "ca": {"type": "object", "required": ["secretName"], "properties": {"secretName": {"type": "string"}}}}
CERTIFICATE_SPEC = {name: {"type": kind} for name, kind in (
    ("isCA", "boolean"), ("commonName", "string"), ("secretName", "string"), ("duration", "string"))} | {
    "privateKey": {"type": "object", "properties": {"algorithm": {"type": "string", "enum": ["RSA", "ECDSA",
                                                                                              "Ed25519"]},
                                                    "size": {"type": "integer"}}},
    "issuerRef": {"type": "object", "required": ["name"], "properties": {
        "group": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"}}}}
MANIFEST = yaml.safe_dump_all([crd("ClusterIssuer", "clusterissuers", "Cluster", ISSUER_SPEC),
                               crd("Certificate", "certificates", "Namespaced", CERTIFICATE_SPEC)])


def context(inventory, tmp_path, artifacts: str | None = None) -> HostContext:
    cluster = dataclasses.replace(inventory.cluster("debian"), artifacts_dir=artifacts)
    inventory = dataclasses.replace(inventory, clusters=(cluster, inventory.cluster("rke2")))
    run = RunContext(inventory, plan=True, artifacts_dir=tmp_path / "artifacts")
    return HostContext(run, inventory.host("masternode"), None, facts_source=lambda: assumed_facts("debian"))


def test_the_issuers_pass_the_schemas_and_an_unknown_field_or_kind_does_not(homelab, tmp_path):
    text = context(homelab, tmp_path).render("cert-manager/issuers.yaml.j2")
    assert cert_manager.check_against_crds(text, MANIFEST) == []
    typo = text.replace("secretName: vmstation-ca\n", "secretNam: vmstation-ca\n", 1)
    problems = cert_manager.check_against_crds(typo, MANIFEST)
    assert any("Certificate vmstation-ca" in p and "'secretNam' was unexpected" in p for p in problems), problems
    assert any("no CRD serving" in p for p in cert_manager.check_against_crds(
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: x}\n", MANIFEST))
    assert cert_manager.check_against_crds(text, None) == []          # no manifest here: the API server checks


def test_without_a_manifest_the_control_plane_downloads_the_pinned_release_once(homelab, tmp_path):
    ops = list(cert_manager.install(context(homelab, tmp_path)))
    download = ops[0]
    assert isinstance(download, Command) and versions.CERT_MANAGER_MANIFEST_URL in download.script
    assert download.creates == cert_manager.MANIFEST and versions.CERT_MANAGER in cert_manager.MANIFEST
    assert "--validate=strict" in ops[1].script and ops[1].unless.startswith("kubectl --kubeconfig")
    assert [op.description for op in ops[2:]] == [f"wait for {d} available (up to 300s)"
                                                  for d in cert_manager.DEPLOYMENTS]


def test_air_gapped_the_manifest_is_uploaded_and_the_issuers_are_checked_before_any_host(homelab, tmp_path):
    (tmp_path / "cert-manager").mkdir()
    (tmp_path / "cert-manager" / "cert-manager.yaml").write_text(MANIFEST)
    ctx = context(homelab, tmp_path, artifacts=str(tmp_path))
    upload = next(iter(cert_manager.install(ctx)))
    assert isinstance(upload, File) and upload.data == MANIFEST.encode() and upload.mode == "0600"
    assert isinstance(next(iter(cert_manager.issuers(ctx))), File)
    without_ca = MANIFEST.replace("ca:", "caa:")          # a release whose ClusterIssuer has no `ca`
    (tmp_path / "cert-manager" / "cert-manager.yaml").write_text(without_ca)
    with pytest.raises(InputError, match="templates/cert-manager/issuers.yaml.j2 for masternode: .*'ca' was "
                                         "unexpected"):
        list(cert_manager.issuers(ctx))


def test_the_target_has_its_command_and_fab_task_from_the_registry_alone():
    from vmstation.cli import main
    from vmstation.fab_tasks import build_namespace
    from vmstation.targets import build_graph

    assert [p.name for p in build_graph().order("cert-manager")][-2:] == ["cert-manager.install",
                                                                           "cert-manager.issuers"]
    command = main.get_command(None, "cert-manager")
    assert command is not None and {"plan", "limit", "only"} <= {p.name for p in command.params}
    assert "cert-manager" in build_namespace().task_names
