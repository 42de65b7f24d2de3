"""The router's metric series follow the routing table: a backend, task class or endpoint removed from the
table disappears from /metrics (dashboards and alerts stop seeing it), while what remains keeps counting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from zeta_dev.launch.router import RunningRouter
from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims

from .conftest import StartRouter
from .helpers import backend, chat, eventually, post_chat, table, task_class, write_table


@pytest.fixture(scope="module")
def sims() -> Iterator[list[RunningSim]]:
    specs = [
        SimSpec(model="a", size_b=4, time_scale=0.05, seed=1),
        SimSpec(model="b", size_b=4, time_scale=0.05, seed=2),
    ]
    with start_sims(specs) as started:
        yield started


def labels_in_use(router: RunningRouter, name: str) -> set[str]:
    """Every value of label ``name`` on the router's zeta_router_* series."""
    families = text_string_to_metric_families(router.metrics_text())
    return {
        s.labels[name]
        for f in families
        for s in f.samples
        if name in s.labels and s.name.startswith("zeta_router_")
    }


def test_series_of_removed_backends_classes_and_endpoints_go_away(
    sims: list[RunningSim], router_factory: StartRouter, table_path: Path
) -> None:
    a, b = sims
    router = router_factory(
        table(
            [backend("a", [a]), backend("b", [b], tasks=("code",))],
            [task_class("chat", "chat", {"a": 1.0}), task_class("code", "code", {"b": 1.0})],
        )
    )
    assert post_chat(router).headers["X-Zeta-Backend"] == "a"
    assert post_chat(router, headers={"X-Zeta-Task": "code"}).headers["X-Zeta-Backend"] == "b"
    rejected = requests.post(f"{router.url}/v1/chat/completions", data=b"{not json", timeout=30)
    assert rejected.status_code == 400
    assert labels_in_use(router, "backend") >= {"a", "b"}
    assert labels_in_use(router, "task_class") >= {"chat", "code"}

    write_table(table_path, table([backend("a", [a])], [task_class("chat", "chat", {"a": 1.0})], version=2))
    eventually(lambda: router.metric("zeta_router_table_version") == 2, what="table version 2")

    assert "b" not in labels_in_use(router, "backend")
    assert "code" not in labels_in_use(router, "task_class")
    assert b.url not in labels_in_use(router, "endpoint")
    # what is still in the table keeps its counts; so do requests rejected before any backend was chosen
    assert router.metric("zeta_router_requests_total", backend="a", task_class="chat") == 1
    assert router.metric("zeta_router_requests_total", backend="none") == 1
    assert post_chat(router, chat()).status_code == 200
    assert router.metric("zeta_router_requests_total", backend="a", task_class="chat") == 2
