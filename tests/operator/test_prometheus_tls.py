"""Prometheus as a locked-down production one runs: https with a certificate from a private CA and basic auth
(its ``--web.config.file``), a real server. The right CA and credentials give readings; a wrong password, an
untrusted certificate or an unreadable Secret each show up as a condition with a clear message, never as a
number, and the weights are held. Credentials are read by the operator's own ServiceAccount token, bound to the
shipped RBAC (get on Secrets, nothing more), and never appear in its log, its status or its Events.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from zeta_dev.localcluster.certs import CertificateAuthority
from zeta_dev.localcluster.cluster import Cluster, scratch_dir
from zeta_dev.localcluster.fleet import (
    OperatorProcess,
    condition,
    events,
    operator_rbac,
    policy_status,
    read_table,
    start_operator,
)
from zeta_dev.localcluster.processes import metric_samples
from zeta_dev.localcluster.prometheus import Prometheus, WebSecurity
from zeta_dev.waiting import eventually
from zeta_operator.api.common import GROUP, VERSION
from zeta_operator.api.policy import PrometheusSettings, RoutingPolicySpec
from zeta_operator.operator.credentials import CredentialsError, resolve
from zeta_operator.operator.measure import ClientAuth, ClientTLS, MeasuredBackend, PrometheusSource, measure

USER, PASSWORD, WRONG = "zeta-reader", "correct-horse-battery-staple", "wrong-password-4711"
SECRET_VALUES = (PASSWORD, WRONG)


@dataclass
class Pki:
    trusted: CertificateAuthority  # signed the server's certificate
    untrusted: CertificateAuthority  # a CA nobody should accept the server's certificate from


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    work = scratch_dir("zeta-pki-")
    try:
        yield Pki(
            CertificateAuthority.create(work / "ca"), CertificateAuthority.create(work / "x", name="other")
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def secure_prom(pki: Pki) -> Iterator[Prometheus]:
    serving = pki.trusted.issue(pki.trusted.cert_file.parent / "server")
    web = WebSecurity(serving=serving, ca_file=pki.trusted.cert_file, users={USER: PASSWORD})
    with Prometheus.running(web=web) as prom:
        assert prom.url.startswith("https://")
        yield prom


# ---------------------------------------------------------------- the metrics provider, directly

CONSTANT = 'label_replace(vector({v}), "backend", "{b}", "", "")'


def _spec(**prometheus: Any) -> RoutingPolicySpec:
    return RoutingPolicySpec.model_validate(
        {
            "backends": {"names": ["a"]},
            "routingTable": {"configMapName": "t"},
            "classes": [{"name": "c", "taskType": "chat", "preferred": ["a"]}],
            "prometheus": {
                "queries": {
                    "requestRate": CONSTANT.format(v=3, b="a"),
                    "errorRate": CONSTANT.format(v=0, b="a"),
                },
                **prometheus,
            },
        }
    )


def _measure(prom: Prometheus, *, tls: ClientTLS, auth: ClientAuth) -> Any:
    source = PrometheusSource(prom.url, timeout=10, tls=tls, auth=auth)
    try:
        return measure(source, _spec(), namespace="n", backends=[MeasuredBackend("a", ("a-0",))])
    finally:
        source.close()


def _no_numbers(m: Any) -> bool:
    return all(r.value is None and r.state == "error" for sig in m.signals.values() for r in sig.values())


def test_the_right_ca_and_credentials_give_readings(secure_prom: Prometheus, pki: Pki) -> None:
    m = _measure(secure_prom, tls=ClientTLS(ca_pem=pki.trusted.pem), auth=ClientAuth(basic=(USER, PASSWORD)))
    assert m.errors == {} and m.failure_kind is None
    assert (m.signals["a"]["requestRate"].value, m.signals["a"]["errorRate"].value) == (3.0, 0.0)


def test_a_wrong_password_is_an_auth_failure_not_a_number(secure_prom: Prometheus, pki: Pki) -> None:
    m = _measure(secure_prom, tls=ClientTLS(ca_pem=pki.trusted.pem), auth=ClientAuth(basic=(USER, WRONG)))
    assert m.failure_kind == "auth" and m.errors == {"auth": 8}
    assert m.unreachable == f"{secure_prom.url} rejected the credentials (HTTP 401 Unauthorized)"
    assert _no_numbers(m)


def test_no_credentials_is_an_auth_failure(secure_prom: Prometheus, pki: Pki) -> None:
    m = _measure(secure_prom, tls=ClientTLS(ca_pem=pki.trusted.pem), auth=ClientAuth())
    assert m.failure_kind == "auth" and _no_numbers(m)


@pytest.mark.parametrize("trust", ["another CA", "the system's CAs"])
def test_an_untrusted_certificate_is_a_tls_failure(secure_prom: Prometheus, pki: Pki, trust: str) -> None:
    tls = ClientTLS(ca_pem=pki.untrusted.pem) if trust == "another CA" else ClientTLS()
    m = _measure(secure_prom, tls=tls, auth=ClientAuth(basic=(USER, PASSWORD)))
    assert m.failure_kind == "tls" and m.errors == {"tls": 8}
    assert m.unreachable == (
        f"TLS certificate of {secure_prom.url} not trusted: unable to get local issuer certificate"
    )
    assert _no_numbers(m)


def test_insecure_skip_verify_reads_and_says_so(secure_prom: Prometheus) -> None:
    tls = ClientTLS(insecure_skip_verify=True)
    m = _measure(secure_prom, tls=tls, auth=ClientAuth(basic=(USER, PASSWORD)))
    assert m.errors == {} and m.signals["a"]["requestRate"].value == 3.0
    assert PrometheusSource(secure_prom.url, timeout=1, tls=tls).tls_mode == "InsecureSkipVerify"
    assert PrometheusSource(secure_prom.url, timeout=1).tls_mode == "Verified"


@contextlib.contextmanager
def fake_token_checking_proxy(token: str) -> Iterator[str]:
    """Prometheus checks no bearer tokens itself (a proxy in front of it does, e.g. kube-rbac-proxy, which does
    not run here): this fake stands in for that proxy, answering an empty vector to the right token only."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.headers.get("Authorization") == f"Bearer {token}"
            body = (
                b'{"status":"success","data":{"resultType":"vector","result":[]}}' if ok else b"Unauthorized"
            )
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_bearer_token_is_sent_as_authorization() -> None:
    with fake_token_checking_proxy("t0ken") as url:
        for token, failure in (("t0ken", None), ("other", "auth")):
            source = PrometheusSource(url, timeout=10, auth=ClientAuth(bearer_token=token))
            m = measure(source, _spec(), namespace="n", backends=[MeasuredBackend("a", ("a-0",))])
            source.close()
            assert m.failure_kind == failure and m.queries == 8


def test_credentials_never_show_in_a_repr() -> None:
    auth = ClientAuth(basic=(USER, PASSWORD), bearer_token=WRONG)
    assert PASSWORD not in repr(auth) and WRONG not in repr(auth)


# ---------------------------------------------------------------- references, read with the operator's token


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _put_secret(cluster: Cluster, namespace: str, name: str, data: dict[str, str]) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    body = {"metadata": {"name": name}, "data": {k: _b64(v) for k, v in data.items()}}
    try:
        core.replace_namespaced_secret(name, namespace, body)
    except ApiException as e:
        if e.status != 404:
            raise
        core.create_namespaced_secret(namespace, body)


def _put_config_map(cluster: Cluster, namespace: str, name: str, data: dict[str, str]) -> None:
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    body = {"metadata": {"name": name}, "data": data}
    try:
        core.replace_namespaced_config_map(name, namespace, body)
    except ApiException as e:
        if e.status != 404:
            raise
        core.create_namespaced_config_map(namespace, body)


def _as_operator(cluster: Cluster, namespace: str) -> kubernetes.client.ApiClient:
    """A client holding a real TokenRequest token of the operator's ServiceAccount, bound to the shipped RBAC."""
    cluster.kubectl("apply", "-f", "-", input=operator_rbac(namespace))
    return cluster.client_for_token(cluster.service_account_token(namespace, "zeta-operator"))


def _settings(**extra: Any) -> PrometheusSettings:
    return PrometheusSettings.model_validate({"address": "https://prometheus.example:9090", **extra})


BASIC_AUTH = {
    "basicAuth": {
        "username": {"name": "prom-auth", "key": "username"},
        "password": {"name": "prom-auth", "key": "password"},
    }
}


def test_operator_reads_the_referenced_secret_and_config_map_and_may_not_list_secrets(
    crds: Cluster, namespace: str, pki: Pki
) -> None:
    _put_secret(crds, namespace, "prom-auth", {"username": USER, "password": PASSWORD + "\n"})
    _put_secret(crds, namespace, "prom-token", {"token": "  t0ken\n"})
    _put_secret(crds, namespace, "prom-ca-secret", {"ca.crt": pki.trusted.pem})
    _put_config_map(crds, namespace, "prom-ca", {"ca.crt": pki.trusted.pem})
    _put_secret(crds, namespace, "unrelated", {"k": "v"})
    api = _as_operator(crds, namespace)

    ca_ref = {"tls": {"ca": {"configMap": {"name": "prom-ca", "key": "ca.crt"}}}}
    tls, auth = resolve(api, namespace, _settings(**ca_ref, **BASIC_AUTH))
    assert tls == ClientTLS(ca_pem=pki.trusted.pem)
    assert auth.basic == (USER, PASSWORD)  # the trailing newline of `echo > file` is dropped
    tls, auth = resolve(
        api,
        namespace,
        _settings(
            tls={"ca": {"secret": {"name": "prom-ca-secret", "key": "ca.crt"}}},
            bearerToken={"name": "prom-token", "key": "token"},
        ),
    )
    assert tls.ca_pem == pki.trusted.pem and auth.bearer_token == "t0ken" and auth.kind == "BearerToken"

    # Least privilege: it can read a Secret it is told the name of, but never find others.
    core = kubernetes.client.CoreV1Api(api)
    who = f"system:serviceaccount:{namespace}:zeta-operator"
    for what, call in {
        "list Secrets": lambda: core.list_namespaced_secret(namespace),
        "watch Secrets": lambda: core.list_namespaced_secret(namespace, watch=True, timeout_seconds=1),
        "list Secrets cluster-wide": lambda: core.list_secret_for_all_namespaces(),
        "update a Secret": lambda: core.patch_namespaced_secret("prom-auth", namespace, {"data": {}}),
        "create a Secret": lambda: core.create_namespaced_secret(namespace, {"metadata": {"name": "new"}}),
        "delete a Secret": lambda: core.delete_namespaced_secret("unrelated", namespace),
    }.items():
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 403, f"{what}: {err.value.status}"
        assert who in err.value.body


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {
                "basicAuth": {
                    "username": {"name": "gone", "key": "u"},
                    "password": {"name": "gone", "key": "p"},
                }
            },
            "Secret gone not found in namespace {ns}",
        ),
        (
            {"bearerToken": {"name": "prom-auth", "key": "token"}},
            "Secret prom-auth has no key token (keys: password, username)",
        ),
        (
            {"tls": {"ca": {"configMap": {"name": "not-a-ca", "key": "ca.crt"}}}},
            "ConfigMap not-a-ca key ca.crt holds no usable PEM certificate",
        ),
        (
            {"tls": {"ca": {"configMap": {"name": "prom-ca", "key": "tls.crt"}}}},
            "ConfigMap prom-ca has no key tls.crt (keys: ca.crt)",
        ),
    ],
)
def test_unusable_references_are_named_and_their_values_never_shown(
    crds: Cluster, namespace: str, pki: Pki, extra: dict[str, Any], message: str
) -> None:
    _put_secret(crds, namespace, "prom-auth", {"username": USER, "password": PASSWORD})
    _put_config_map(crds, namespace, "prom-ca", {"ca.crt": pki.trusted.pem})
    _put_config_map(crds, namespace, "not-a-ca", {"ca.crt": f"not a certificate {PASSWORD}"})
    with pytest.raises(CredentialsError) as err:
        resolve(_as_operator(crds, namespace), namespace, _settings(**extra))
    assert str(err.value) == message.format(ns=namespace)
    assert PASSWORD not in str(err.value)


# ---------------------------------------------------------------- the operator, end to end


@dataclass
class SecureSetup:
    cluster: Cluster
    namespace: str
    prometheus: Prometheus
    operator: OperatorProcess
    workdir: Path


@pytest.fixture(scope="module")
def setup(crds: Cluster, secure_prom: Prometheus, pki: Pki) -> Iterator[SecureSetup]:
    namespace = f"tls-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api(crds.api_client())
    core.create_namespace({"metadata": {"name": namespace}})
    workdir = scratch_dir("zeta-tlstest-")
    try:
        for name in ("small", "large"):
            crds.apply([_backend(name)], namespace=namespace)
        _put_config_map(crds, namespace, "prom-ca", {"ca.crt": pki.trusted.pem})
        _put_config_map(crds, namespace, "other-ca", {"ca.crt": pki.untrusted.pem})
        _put_secret(crds, namespace, "prom-auth", {"username": USER, "password": PASSWORD})
        operator = start_operator(crds, namespace, workdir)
        try:
            yield SecureSetup(crds, namespace, secure_prom, operator, workdir)
        finally:
            operator.process.stop()
    finally:
        core.delete_namespace(namespace)
        shutil.rmtree(workdir, ignore_errors=True)


def _backend(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelBackend",
        "metadata": {"name": name},
        "spec": {
            "model": name,
            "endpoints": {"static": [f"http://127.0.0.1:{9 if name == 'small' else 10}"]},
            "capabilities": {"tasks": ["chat"], "maxComplexity": 5},
        },
    }


def _policy(prom_url: str, **prometheus: Any) -> dict[str, Any]:
    queries = {
        # Constant readings through the real TLS + auth path: "small" overloaded (errors count as load).
        "requestRate": CONSTANT.format(v=5, b="small") + " or " + CONSTANT.format(v=1, b="large"),
        "errorRate": CONSTANT.format(v=0.3, b="small") + " or " + CONSTANT.format(v=0, b="large"),
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RoutingPolicy",
        "metadata": {"name": "secure"},
        "spec": {
            "backends": {"names": ["small", "large"]},
            "routingTable": {"configMapName": "routes-secure"},
            "classes": [{"name": "chat", "taskType": "chat", "preferred": ["small", "large"]}],
            "prometheus": {"address": prom_url, "timeout": "10s", "window": "500ms", "queries": queries,
                           **prometheus},
            "adaptation": {"interval": "1s", "staleAfter": "1h", "hysteresis": 0.01, "blackout": "1s"},
        },
    }  # fmt: skip


def _apply(s: SecureSetup, **prometheus: Any) -> None:
    s.cluster.apply([_policy(s.prometheus.url, **prometheus)], namespace=s.namespace)


def _metrics_condition(s: SecureSetup, status: str, reason: str) -> dict[str, Any] | None:
    def check() -> dict[str, Any] | None:
        st = policy_status(s.cluster, s.namespace, "secure")
        c = condition(st, "MetricsAvailable")
        return st if c and (c["status"], c["reason"]) == (status, reason) else None

    return eventually(
        check, timeout=90, what=f"MetricsAvailable={status} ({reason})", process=s.operator.process
    )


def _cycles(s: SecureSetup) -> float:
    return sum(
        metric_samples(
            s.operator.metrics(), "zeta_operator_cycles_total", {"policy": f"{s.namespace}/secure"}
        )
    )


def _weights(s: SecureSetup) -> dict[str, float]:
    table = read_table(s.cluster, s.namespace, "routes-secure")
    assert table is not None
    return dict(next(c for c in table.classes if c.name == "chat").weights)


CA = {"tls": {"ca": {"configMap": {"name": "prom-ca", "key": "ca.crt"}}}}


def test_operator_reads_through_tls_and_basic_auth_then_reports_each_failure(setup: SecureSetup) -> None:
    s = setup
    _apply(s, **CA, **BASIC_AUTH)
    st = _metrics_condition(s, "True", "Measured")
    assert st["prometheus"] == {"tls": "Verified", "auth": "BasicAuth"}
    eventually(
        lambda: (w := _weights(s)) and w["small"] < w["large"], timeout=90, what="weights from readings"
    )  # the busier backend gets less: the readings went into the decision

    def held() -> None:
        """Degraded says why, and three more cycles leave the weights where they were, none at zero."""
        st = policy_status(s.cluster, s.namespace, "secure")
        degraded = condition(st, "Degraded")
        assert degraded and (degraded["status"], degraded["reason"]) == ("True", "HoldingWeights")
        before, cycles = _weights(s), _cycles(s)
        eventually(lambda: _cycles(s) >= cycles + 3, timeout=60, what="three more cycles")
        after = _weights(s)
        assert after == before and min(after.values()) > 0 and after["small"] < after["large"]

    # A wrong password.
    _put_secret(s.cluster, s.namespace, "prom-auth", {"username": USER, "password": WRONG})
    st = _metrics_condition(s, "False", "PrometheusAuthFailed")
    assert condition(st, "MetricsAvailable")["message"] == (  # type: ignore[index]
        f"{s.prometheus.url} rejected the credentials (HTTP 401 Unauthorized)"
    )
    held()

    # The right password again, then a CA that did not sign the server's certificate.
    _put_secret(s.cluster, s.namespace, "prom-auth", {"username": USER, "password": PASSWORD})
    _metrics_condition(s, "True", "Measured")
    _apply(s, tls={"ca": {"configMap": {"name": "other-ca", "key": "ca.crt"}}}, **BASIC_AUTH)
    st = _metrics_condition(s, "False", "PrometheusTLSFailed")
    assert condition(st, "MetricsAvailable")["message"] == (  # type: ignore[index]
        f"TLS certificate of {s.prometheus.url} not trusted: unable to get local issuer certificate"
    )
    held()

    # A Secret key that does not exist: nothing is asked without credentials.
    wrong_key = {
        "username": {"name": "prom-auth", "key": "username"},
        "password": {"name": "prom-auth", "key": "pw"},
    }
    _apply(s, **CA, basicAuth=wrong_key)
    st = _metrics_condition(s, "False", "CredentialsUnavailable")
    assert condition(st, "MetricsAvailable")["message"] == (  # type: ignore[index]
        "Secret prom-auth has no key pw (keys: password, username)"
    )
    held()

    # Verification turned off on purpose: readings, and it is said in status and by a Warning Event.
    _apply(s, tls={"insecureSkipVerify": True}, **BASIC_AUTH)
    st = eventually(
        lambda: (
            (st := policy_status(s.cluster, s.namespace, "secure"))
            and st.get("prometheus", {}).get("tls") == "InsecureSkipVerify"
            and condition(st, "MetricsAvailable")["status"] == "True"  # type: ignore[index]
            and st
        ),
        timeout=90,
        what="InsecureSkipVerify in status with readings",
    )
    warning = eventually(
        lambda: [e for e in events(s.cluster, s.namespace) if e["reason"] == "InsecureSkipVerify"],
        timeout=60,
        what="an InsecureSkipVerify Event",
    )
    assert "verification of " + s.prometheus.url + " is off" in warning[0]["message"]

    # Credentials over plain http: said too (this server speaks only https, so it also answers nothing useful).
    s.cluster.apply(
        [_policy(s.prometheus.url.replace("https://", "http://"), **BASIC_AUTH)], namespace=s.namespace
    )
    eventually(
        lambda: (
            policy_status(s.cluster, s.namespace, "secure").get("prometheus", {}).get("tls") == "Plaintext"
        ),
        timeout=60,
        what="Plaintext in status",
    )
    plaintext = eventually(
        lambda: [e for e in events(s.cluster, s.namespace) if e["reason"] == "PlaintextCredentials"],
        timeout=60,
        what="a PlaintextCredentials Event",
    )
    assert plaintext[0]["message"].startswith("BasicAuth credentials go to http://")

    # Each refusal was also said by a Warning Event, with its reason.
    said = [e["message"] for e in events(s.cluster, s.namespace) if e["reason"] == "MetricsUnavailable"]
    for refusal in ("rejected the credentials", "not trusted", "has no key pw"):
        assert any(refusal in m and m.endswith("holding the last good weights") for m in said), (
            refusal,
            said,
        )

    # Nothing secret in what anyone with read access to the policy sees, nor in the operator's log (which does
    # name every refusal).
    seen = str(policy_status(s.cluster, s.namespace, "secure")) + str(events(s.cluster, s.namespace))
    log = (s.workdir / "operator.log").read_text(errors="replace")
    assert "rejected the credentials" in log and "has no key pw" in log
    assert not [v for v in SECRET_VALUES if v in seen + log]
