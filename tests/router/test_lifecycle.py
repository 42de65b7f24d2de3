"""Readiness with and without a valid table, and graceful shutdown on SIGTERM (drain delay, then grace)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
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


class FreshConnectionLoad:
    """Clients that open a new connection for every request, as kube-proxy hands them out until the endpoint
    is removed; counts every outcome (connection refused and reset included)."""

    def __init__(self, url: str, *, clients: int = 4) -> None:
        self._url = url
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.outcomes: list[tuple[float, str]] = []  # (monotonic send time, "200" | status | error name)
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> FreshConnectionLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _client(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                response = requests.post(self._url, json=chat(), headers={"Connection": "close"}, timeout=60)
                outcome = str(response.status_code)
            except requests.RequestException as e:
                outcome = type(e).__name__
            with self._lock:
                self.outcomes.append((sent, outcome))

    def count(self, *, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for sent, _ in self.outcomes if sent >= since)

    def failures(self) -> list[str]:
        with self._lock:
            return [outcome for _, outcome in self.outcomes if outcome != "200"]


def test_sigterm_under_load_loses_no_request_and_finishes_the_stream(
    sim: RunningSim, router_factory: StartRouter
) -> None:
    """A rollout: SIGTERM while clients keep opening connections (kube-proxy sends them until the endpoint
    update reaches it) and a stream is in flight. Readiness fails at once, the listener keeps serving through
    the drain delay, then closes, and the stream still completes before the process exits 0.

    The drain delay is long (60 s) and a second SIGTERM ends it once the load has stopped, so the test never
    depends on how fast the machine is. The streaming backend is frozen (the simulator's hang fault) until the
    listener has closed, so the stream is certainly in flight during the grace period."""
    with start_sims([SimSpec(model="s", size_b=4, time_scale=0.05, seed=2)]) as (streamer,):
        router = router_factory(
            table(
                [backend("m", [sim]), backend("s", [streamer], tasks=("code",))],
                [task_class("chat", "chat", {"m": 1.0}), task_class("code", "code", {"s": 1.0})],
            ),
            "--drain-delay",
            "60s",
            "--shutdown-grace",
            "60s",
        )
        with FreshConnectionLoad(f"{router.url}/v1/chat/completions") as load:
            eventually(lambda: load.count() >= 20, what="steady load before SIGTERM")
            with requests.post(
                f"{router.url}/v1/chat/completions",
                json=chat(stream=True, max_tokens=50),
                headers={"X-Zeta-Task": "code"},
                stream=True,
                timeout=120,
            ) as stream:
                chunks = stream.iter_content(chunk_size=None)
                received = next(chunks)
                streamer.set_faults(hang=True)

                signalled = time.monotonic()
                os.kill(router.process.pid, signal.SIGTERM)
                eventually(lambda: router.status("/readyz") == 503, what="readiness to fail")
                eventually(lambda: load.count(since=signalled) >= 40, what="load served while draining")
                with requests.Session() as keep_alive:  # a pooled client is told to reconnect (elsewhere)
                    during = keep_alive.post(f"{router.url}/v1/chat/completions", json=chat(), timeout=60)
                assert (during.status_code, during.headers.get("Connection")) == (200, "close")
                load.stop()

                os.kill(router.process.pid, signal.SIGTERM)  # ends the drain delay: the listener closes
                eventually(lambda: refuses_connections(router.port), what="the listener to close")
                assert router.process.alive()  # waiting for the stream
                streamer.set_faults(hang=False)
                received += b"".join(chunks)

        assert load.failures() == []
        assert load.count(since=signalled) >= 40
        assert received.rstrip().endswith(b"data: [DONE]")
        assert router.process.popen.wait(60) == 0
        log = router.process.log.read_text()
        assert log.index('"msg": "draining"') < log.index('"msg": "closing the listener"')
        assert '"msg": "stopped"' in log


def test_the_grace_period_bounds_the_drain(sim: RunningSim, router_factory: StartRouter) -> None:
    router = router_factory(
        table([backend("m", [sim])], [task_class("chat", "chat", {"m": 1.0})]),
        "--drain-delay",
        "0",
        "--shutdown-grace",
        "0.5s",
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
