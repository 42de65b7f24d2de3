"""Table store (validate, swap, count), credentials loading (through the kubernetes library) and the watch
backoff: pure, no network."""

from __future__ import annotations

import base64
import random
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_operator.api.table import CONFIGMAP_KEY
from zeta_operator.router.kubeapi import KubeConfigError, KubeCredentials, from_kubeconfig, load_credentials
from zeta_operator.router.metrics import RouterMetrics
from zeta_operator.router.payload import BadRequest, parse_request, prompt_view
from zeta_operator.router.snapshot import TableSnapshot
from zeta_operator.router.tables import ApiError, Backoff, TableStore, _ConfigMapWatch, _Gone

from .helpers import backend, table, task_class


def good(version: int) -> str:
    return table(
        [backend("a", ["http://a:1"])], [task_class("chat", "chat", {"a": 1.0})], version=version
    ).to_json()


def reloads(metrics: RouterMetrics, result: str) -> float:
    return metrics.table_reloads.labels(result)._value.get()


def test_store_swaps_valid_tables_and_keeps_the_last_good_one() -> None:
    metrics = RouterMetrics()
    swapped: list[int] = []
    store = TableStore(metrics, model=None, on_swap=lambda s: swapped.append(s.version))
    assert store.current is None
    assert store.offer(good(1), source="test")
    first = store.current
    assert not store.offer(good(1), source="test")  # unchanged: nothing to do, nothing counted
    assert not store.offer("{}", source="test")
    assert not store.offer(good(2).replace('"maxSize": 64', '"maxSize": 65'), source="test")  # hash mismatch
    assert store.current is first
    assert store.offer(good(2), source="test")
    assert store.current is not None and store.current.version == 2
    assert first is not None and first.version == 1  # a snapshot is never mutated: requests keep theirs
    assert swapped == [1, 2]
    assert (reloads(metrics, "ok"), reloads(metrics, "invalid")) == (2, 2)
    assert metrics.table_version._value.get() == 2


def _kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any], *, context: str = "x") -> Path:
    config = {
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _self_signed(tmp_path: Path) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) made by openssl."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=zeta-test",
         "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return (tmp_path / "c.pem").read_bytes(), (tmp_path / "k.pem").read_bytes()


def test_kubeconfig_token_file_is_read_again_on_reload(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret-token\n")
    path = _kubeconfig(
        tmp_path / "kubeconfig",
        {"server": "https://10.0.0.1:6443/", "insecure-skip-tls-verify": True},
        {"tokenFile": "token"},  # relative to the kubeconfig's directory
    )
    creds = from_kubeconfig(path)
    assert creds.server == "https://10.0.0.1:6443"
    assert creds.headers() == {"Authorization": "Bearer s3cret-token"}
    assert creds.ssl_context.verify_mode == ssl.CERT_NONE  # the kubeconfig's explicit choice
    assert "s3cret" not in repr(creds) and "s3cret" not in repr(vars(creds).get("source"))
    assert not creds.reload()  # what the watch does after a 401: nothing new, so it waits its backoff
    (tmp_path / "token").write_text("rotated\n")
    assert creds.reload()  # a rotated token: the watch tries it at once
    assert creds.headers() == {"Authorization": "Bearer rotated"}


def test_kubeconfig_inline_client_certificate_and_ca(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    path = _kubeconfig(
        tmp_path / "kubeconfig",
        {"server": "https://h:6443", "certificate-authority-data": base64.b64encode(cert).decode()},
        {
            "client-certificate-data": base64.b64encode(cert).decode(),
            "client-key-data": base64.b64encode(key).decode(),
        },
    )
    creds = from_kubeconfig(path)
    assert creds.headers() == {}  # the certificate authenticates
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in creds.ssl_context.get_ca_certs()] == [((("commonName", "zeta-test"),),)]


def test_kubeconfig_from_the_environment_and_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _kubeconfig(tmp_path / "one", {"server": "https://one:6443"}, {"token": "t1"})
    monkeypatch.setenv("KUBECONFIG", str(first))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # $KUBECONFIG wins over in-cluster
    creds = load_credentials()
    assert (creds.server, creds.headers()) == ("https://one:6443", {"Authorization": "Bearer t1"})

    junk_ca = {"server": "https://h", "certificate-authority-data": base64.b64encode(b"junk").decode()}
    with pytest.raises(KubeConfigError, match="cannot load Kubernetes credentials"):
        from_kubeconfig(_kubeconfig(tmp_path / "two", junk_ca, {"token": "s3cret"}))
    with pytest.raises(KubeConfigError, match="missing") as err:
        from_kubeconfig(
            _kubeconfig(tmp_path / "three", {"server": "https://h"}, {"token": "s3cret"}, context="missing")
        )
    assert "s3cret" not in str(err.value)

    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config either
    with pytest.raises(KubeConfigError, match="pass --kubeconfig or set \\$KUBECONFIG"):
        load_credentials()


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    backoff = Backoff(first=0.5, cap=4.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(6)]
    assert 0.4 <= delays[0] <= 0.6
    assert all(d <= 4.0 * 1.2 for d in delays)
    assert delays[-1] >= 4.0 * 0.8
    backoff.reset()
    assert backoff.next() <= 0.6


def test_payload_prompt_shapes() -> None:
    completion = parse_request(b'{"model": "m", "prompt": [[1, 2, 3], [4]]}', "completion")
    assert completion.prompt.tokens == 4
    parts = parse_request(
        b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Refactor"},'
        b' {"type": "image_url", "image_url": {"url": "http://x"}}]}]}',
        "chat",
    )
    assert parts.prompt.text == "refactor"
    assert prompt_view(["a" * 40]).tokens == 10
    with pytest.raises(BadRequest, match="token ids"):
        parse_request(b'{"model": "m", "prompt": [true]}', "completion")


def test_watch_events_410_means_list_again_and_deleted_keeps_the_table() -> None:
    metrics = RouterMetrics()
    store = TableStore(metrics, model=None)
    creds = KubeCredentials(lambda config: setattr(config, "host", "https://k"), source="test")
    watch = _ConfigMapWatch(None, creds, "ns", "routes", store, "test", 60)  # type: ignore[arg-type]
    added = {"metadata": {"resourceVersion": "5"}, "data": {CONFIGMAP_KEY: good(1)}}
    assert watch._event({"type": "ADDED", "object": added}, "4") == "5"
    assert store.current is not None and store.current.version == 1
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}
    assert watch._event(bookmark, "5") == "9"
    assert watch._event({"type": "DELETED", "object": {"metadata": {"resourceVersion": "10"}}}, "9") == "10"
    assert store.current.version == 1
    with pytest.raises(_Gone):
        watch._event({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}, "10")
    with pytest.raises(ApiError, match="403"):
        watch._event({"type": "ERROR", "object": {"code": 403, "message": "forbidden"}}, "10")
    watch._event({"type": "MODIFIED", "object": {"metadata": {"resourceVersion": "11"}, "data": {}}}, "10")
    assert reloads(metrics, "invalid") == 1


def test_router_replicas_share_each_endpoints_cap() -> None:
    """N replicas each admit ceil(maxConcurrency / N) per endpoint (at least 1); one replica the whole cap."""
    routes = table(
        [backend("b", ["http://e1:8000"], max_concurrency=16)], [task_class("chat", "chat", {"b": 1.0})]
    )

    def cap(replicas: int) -> int:
        route = TableSnapshot.build(routes, model=None, replicas=replicas).routes["chat"]
        return route.weighted[0][0].endpoints[0].max_concurrency

    assert [cap(n) for n in (1, 2, 3, 4, 40)] == [16, 8, 6, 4, 1]
    assert (
        TableSnapshot.build(routes, model=None, replicas=4).table == routes
    )  # the table itself is untouched
