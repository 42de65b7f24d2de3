"""Readiness with and without a valid table, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims

from .conftest import StartRouter
from .helpers import backend, chat, eventually, post_chat, table, task_class, write_table


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    with start_sims([SimSpec(model="m", size_b=4, max_seqs=8, time_scale=0.05, seed=1)]) as (started,):
        yield started


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_ready_only_with_a_valid_table(
    sim: RunningSim, router_factory: StartRouter, table_path: Path
) -> None:
    router = router_factory(None, wait_ready=False)
    assert router.status("/healthz") == 200
    assert router.status("/readyz") == 503
    early = post_chat(router)
    assert (early.status_code, early.json()["error"]["code"]) == (503, "not_ready")
    assert early.headers["Retry-After"] == "1"
    write_table(table_path, '{"kind": "RoutingTable"}')
    eventually(
        lambda: router.metric("zeta_router_table_reloads_total", result="invalid") == 1, what="rejection"
    )
    assert router.status("/readyz") == 503
    write_table(table_path, table([backend("m", [sim])], [task_class("chat", "chat", {"m": 1.0})], version=4))
    eventually(lambda: router.status("/readyz") == 200, what="ready")
    assert router.metric("zeta_router_table_version") == 4
    assert post_chat(router).status_code == 200


def test_sigterm_drains_streams_in_flight_then_exits_0(sim: RunningSim, router_factory: StartRouter) -> None:
    router = router_factory(
        table([backend("m", [sim])], [task_class("chat", "chat", {"m": 1.0})]), "--shutdown-grace", "30s"
    )
    with requests.post(
        f"{router.url}/v1/chat/completions", json=chat(stream=True, max_tokens=3000), stream=True, timeout=30
    ) as response:
        chunks = response.iter_content(chunk_size=None)
        received = next(chunks)
        os.kill(router.process.pid, signal.SIGTERM)
        eventually(lambda: refuses_connections(router.port), what="the listener to close")
        assert router.process.alive()  # still draining the stream
        received += b"".join(chunks)
    assert received.rstrip().endswith(b"data: [DONE]")
    assert router.process.popen.wait(15) == 0
    log = router.process.log.read_text()
    assert '"msg": "draining"' in log and '"msg": "stopped"' in log


def test_the_grace_period_bounds_the_drain(sim: RunningSim, router_factory: StartRouter) -> None:
    router = router_factory(
        table([backend("m", [sim])], [task_class("chat", "chat", {"m": 1.0})]), "--shutdown-grace", "0.5s"
    )
    with requests.post(
        f"{router.url}/v1/chat/completions", json=chat(stream=True, max_tokens=8000), stream=True, timeout=30
    ) as response:
        chunks = response.iter_content(chunk_size=None)
        received = next(chunks)
        os.kill(router.process.pid, signal.SIGTERM)
        assert router.process.popen.wait(15) == 0
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for chunk in chunks:
                received += chunk
    assert b"[DONE]" not in received
    eventually(lambda: sim.metric("vllm:num_requests_running") == 0, what="the cut stream to stop upstream")
