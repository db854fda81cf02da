"""The certificate expiry checks ahead of a deploy or an upgrade, kubeadm's and RKE2's: one operation, told how
the expiry is read. Decisions on a fixed moment; RKE2's probe run here on real certificate files (openssl)."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from tests.selfsigned import certificate_pem
from vmstation import certs
from vmstation.errors import HostError
from vmstation.phases import upgrade_rke2
from vmstation.phases.certs import KUBEADM, NOT_INITIALISED, RKE2, RKE2_DEPLOY_REFUSAL, CertificateExpiry

NOW = datetime(2026, 11, 28, 11, 0, tzinfo=timezone.utc)
TLS = certs.RKE2_TLS_DIR
DEPLOY = CertificateExpiry(RKE2, now=NOW, started_when_stopped="rke2-server", refusal=RKE2_DEPLOY_REFUSAL)
UPGRADE = CertificateExpiry(RKE2, now=NOW, refusal=upgrade_rke2.UPGRADE_REFUSAL)


def enddates(*rows: tuple[str, str]) -> str:
    return "".join(f"{TLS}/{name} notAfter={when}\n" for name, when in rows)


FINE = enddates(("serving-kube-apiserver.crt", "Nov 28 10:00:00 2027 GMT"),
                ("client-admin.crt", "Jun  1 10:00:00 2027 GMT"))
SOON = enddates(("serving-kube-apiserver.crt", "Nov 28 10:00:00 2027 GMT"),
                ("client-admin.crt", "Dec 10 10:00:00 2026 GMT"))
EXPIRED = enddates(("serving-kube-apiserver.crt", "Nov 28 10:00:00 2027 GMT"),
                   ("client-admin.crt", "Nov  1 10:00:00 2026 GMT"))


def test_before_the_first_start_there_is_nothing_to_judge():
    step = DEPLOY.decide(f"{NOT_INITIALISED}\nservice=inactive\n", frozenset())
    assert (step.status, step.reason) == ("skip", RKE2.not_yet)
    assert UPGRADE.decide(f"{NOT_INITIALISED}\n", frozenset()).status == "skip"


def test_valid_certificates_pass_and_the_soonest_is_named():
    step = DEPLOY.decide(FINE + "service=active\n", frozenset())
    assert step.status == "ok" and step.reason == "soonest: client-admin.crt on 2027-06-01 (185 days)"


def test_within_30_days_is_a_warning_that_says_what_renews_them():
    step = UPGRADE.decide(SOON, frozenset())
    assert step.status == "warn"
    assert step.reason == ("client-admin.crt expires on 2026-12-10 (12 days): run `vmstation certs renew rke2`, or "
                           "restart rke2-server on this server: RKE2 renews expired certificates whenever it starts")


def test_an_expired_running_server_refuses_the_deploy_with_what_to_run():
    with pytest.raises(HostError) as refused:
        DEPLOY.decide(EXPIRED + "service=active\n", frozenset())
    assert refused.value.message == (
        "the RKE2 server's certificates have expired (client-admin.crt expired on 2026-11-01: run `vmstation certs "
        "renew rke2`, or restart rke2-server on this server: RKE2 renews expired certificates whenever it starts); "
        "this deploy restarts rke2-server only when its config.yaml changes, so it would leave them expired")


def test_an_expired_stopped_server_is_a_warning_for_the_deploy_since_its_start_renews_them():
    step = DEPLOY.decide(EXPIRED + "service=inactive\n", frozenset())
    assert step.status == "warn" and step.reason.endswith(
        "rke2-server is not running: this run starts it, and RKE2 renews expired certificates when it starts")


@pytest.mark.parametrize("service", ["service=active\n", "service=inactive\n", ""])
def test_an_expired_server_refuses_the_upgrade_whether_it_runs_or_not(service):
    with pytest.raises(HostError, match=r"client-admin.crt expired on 2026-11-01.*the upgrade checks the nodes and "
                                        r"takes its etcd snapshot through them before it restarts anything"):
        UPGRADE.decide(EXPIRED + service, frozenset())


def test_nothing_readable_is_a_warning_not_a_pass():
    assert DEPLOY.decide("service=active\n", frozenset()).status == "warn"


def test_the_kubeadm_check_is_the_same_operation_with_its_own_reading():
    table = "admin.conf   Nov 01, 2026 10:00 UTC   <invalid>   ca   no\n"
    kubeadm = CertificateExpiry(now=NOW)
    assert kubeadm.reading is KUBEADM and kubeadm.probe(False) == KUBEADM.probe
    with pytest.raises(HostError) as refused:
        kubeadm.decide(table, frozenset())
    assert refused.value.message == ("the control plane's certificates have expired (admin.conf expired on "
                                     "2026-11-01: run `vmstation certs renew debian`); a deploy or an upgrade "
                                     "would leave it so")
    assert kubeadm.decide(f"{NOT_INITIALISED}\n", frozenset()).status == "skip"


def test_the_rke2_probe_reads_real_certificate_files_and_leaves_the_cas_out(tmp_path):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    tls = tmp_path / "tls"
    probe = DEPLOY.probe(False).replace(TLS, str(tls))
    assert run(probe).split()[0] == NOT_INITIALISED          # then the service's state (none here: no systemd)
    tls.mkdir()
    (tls / "client-admin.crt").write_bytes(certificate_pem("system:admin", now - timedelta(days=2)))
    (tls / "serving-kube-apiserver.crt").write_bytes(certificate_pem("kube-apiserver", now + timedelta(days=300)))
    (tls / "server-ca.crt").write_bytes(certificate_pem("rke2-server-ca", now - timedelta(days=9)))
    found = certs.parse_enddates(run(probe))
    assert sorted((c.name, c.expires) for c in found) == [("client-admin.crt", now - timedelta(days=2)),
                                                          ("serving-kube-apiserver.crt", now + timedelta(days=300))]
    with pytest.raises(HostError, match="client-admin.crt expired on"):
        CertificateExpiry(RKE2, refusal=upgrade_rke2.UPGRADE_REFUSAL).decide(run(probe), frozenset())


def test_the_embedded_etcds_certificates_count_too_named_with_their_directory(tmp_path):
    """tls/etcd/ holds etcd's client, server and peer certificates (rotated with the rest) and two CAs."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    tls = tmp_path / "tls"
    (tls / "etcd").mkdir(parents=True)
    (tls / "client-admin.crt").write_bytes(certificate_pem("system:admin", now + timedelta(days=200)))
    (tls / "client-ca.crt").write_bytes(certificate_pem("rke2-client-ca", now - timedelta(days=1)))
    etcd = {"client.crt": now + timedelta(days=150), "server-client.crt": now + timedelta(days=120),
            "peer-server-client.crt": now + timedelta(days=12)}
    for name, when in etcd.items():
        (tls / "etcd" / name).write_bytes(certificate_pem(f"etcd {name}", when))
    for ca in ("server-ca.crt", "peer-ca.crt"):
        (tls / "etcd" / ca).write_bytes(certificate_pem(f"etcd-{ca}", now - timedelta(days=1)))
    found = certs.parse_enddates(run(UPGRADE.probe(False).replace(TLS, str(tls))))
    assert sorted((c.name, c.expires) for c in found) == sorted(
        [("client-admin.crt", now + timedelta(days=200))] + [(f"etcd/{n}", when) for n, when in etcd.items()])
    step = CertificateExpiry(RKE2, refusal=upgrade_rke2.UPGRADE_REFUSAL).decide(
        run(UPGRADE.probe(False).replace(TLS, str(tls))), frozenset())
    assert step.status == "warn" and step.reason.startswith("etcd/peer-server-client.crt expires on ")
    assert "(12 days): run `vmstation certs renew rke2`" in step.reason


def test_a_server_without_an_etcd_directory_reads_the_rest_alone(tmp_path):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "client-admin.crt").write_bytes(certificate_pem("system:admin", now + timedelta(days=9)))
    output = run(certs.rke2_enddates_command().replace(TLS, str(tmp_path / "tls")))
    assert [c.name for c in certs.parse_enddates(output)] == ["client-admin.crt"]
    assert len(output.splitlines()) == 1                 # no line for the etcd pattern that matched nothing


def run(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False).stdout
