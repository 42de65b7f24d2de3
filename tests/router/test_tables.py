"""Table store (validate, swap, count), kubeconfig parsing and the watch backoff: pure, no network."""

from __future__ import annotations

import base64
import random
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_operator.api.table import CONFIGMAP_KEY
from zeta_operator.router.kubeapi import KubeConfigError, KubeCredentials, from_kubeconfig
from zeta_operator.router.metrics import RouterMetrics
from zeta_operator.router.payload import BadRequest, parse_request, prompt_view
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


def test_kubeconfig_with_inline_ca_and_token_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret-token\n")
    config: dict[str, Any] = {
        "clusters": [
            {"name": "c", "cluster": {"server": "https://10.0.0.1:6443/", "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {"tokenFile": "token"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    creds = from_kubeconfig(path)
    assert creds.server == "https://10.0.0.1:6443"
    assert creds.headers() == {"Authorization": "Bearer s3cret-token"}
    assert "s3cret" not in repr(creds)
    config["clusters"][0]["cluster"] = {
        "server": "https://h",
        "certificate-authority-data": base64.b64encode(b"junk").decode(),
    }
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ssl.SSLError):
        from_kubeconfig(path)
    config["current-context"] = "missing"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(KubeConfigError, match="no context named 'missing'"):
        from_kubeconfig(path)


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
    creds = KubeCredentials(server="https://k", ssl_context=ssl.create_default_context(), token="t")
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
