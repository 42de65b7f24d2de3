"""The engines' own occupancy: reading it from a /metrics page, estimating it between readings, and the
balancer judging room by it (what the other replicas and clients that bypass the routers put on an engine)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from zeta_operator.api.table import RoutingTable
from zeta_operator.router import balancer
from zeta_operator.router.endpoints import EndpointTracker
from zeta_operator.router.metrics import RouterMetrics
from zeta_operator.router.occupancy import MAX_METRICS_BYTES, Occupancy, poll_engines, read_occupancy
from zeta_operator.router.settings import Ejection
from zeta_operator.router.tables import TableStore

from .helpers import backend, table, task_class
from .test_balancer import Clock

VLLM_PAGE = b"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen 7b {coder}"} 3.0
vllm:num_requests_running{engine="1",model_name="qwen 7b {coder}"} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen 7b {coder}"} 2.0
vllm:num_requests_waiting_by_reason{reason="capacity"} 40.0
vllm:num_requests_running_total 99.0
vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="qwen"} 7.0
"""


def test_reads_running_and_waiting_summed_over_series() -> None:
    assert read_occupancy(VLLM_PAGE) == 6  # not the _by_reason or _total look-alikes


def test_reads_sglang_names_and_unlabelled_samples_with_a_timestamp() -> None:
    page = b'sglang:num_running_reqs 4 1733390000000\nsglang:num_queue_reqs{tp_rank="0"} 1\n'
    assert read_occupancy(page) == 5


def test_a_page_without_the_gauges_is_no_reading() -> None:
    assert read_occupancy(b"# nothing here\nprocess_cpu_seconds_total 12.0\n") is None
    assert read_occupancy(b"") is None
    assert read_occupancy(b'vllm:num_requests_running{a="b"} not-a-number\n') is None


def test_a_reading_adds_what_others_hold_and_never_lets_a_replica_past_its_share() -> None:
    tracker, clock = EndpointTracker(Ejection()), Clock()
    view = Occupancy(tracker, replicas=2, max_age=3.0, clock=clock)
    url = "http://a:8000"
    tracker.acquire(url)
    assert view.inflight(url) == 2  # no reading yet: its share of the cap, as if its peer did the same
    view.report(url, 5)  # the engine holds 5: this replica's 1 and 4 from elsewhere
    assert view.inflight(url) == 5
    tracker.acquire(url)
    assert view.inflight(url) == 7  # one more of its own, counted for both replicas
    tracker.release(url)
    tracker.release(url)
    assert view.inflight(url) == 3  # two fewer since the reading, likewise
    view.report(url, 0)
    tracker.acquire(url)
    view.report(url, 0)  # read before the request reached the engine, or the peer idle: never past its share
    assert view.inflight(url) == 2
    clock.now += 3.5
    assert not view.fresh(url)
    assert view.inflight(url) == 2  # too old: back to the share rule


def test_the_balancer_sees_an_engine_filled_by_clients_that_bypass_the_router() -> None:
    routes = RoutingTable.model_validate(
        table(
            [
                backend("busy", ["http://busy:8000"], max_concurrency=4),
                backend("spare", ["http://spare:8000"], max_concurrency=4),
            ],
            [task_class("chat", "chat", {"busy": 1.0})],
        )
    )
    route = balancer.ClassRoute.build(routes.classes[0], routes.backends)
    eligible = route.eligible(complexity=1, tokens=10)
    tracker = EndpointTracker(Ejection())
    view = Occupancy(tracker, replicas=1, max_age=3.0)
    rng = random.Random(1)
    assert balancer.choose(eligible, view, rng).backend.name == "busy"  # type: ignore[union-attr]
    view.report("http://busy:8000", 4)  # a batch job fills it through its Service
    choice = balancer.choose(eligible, view, rng)
    assert choice is not None and (choice.backend.name, choice.reason) == ("spare", "fallback")
    assert balancer.choose(eligible, tracker, rng).backend.name == "busy"  # type: ignore[union-attr]


@dataclass
class Hold:
    arrived: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    released: asyncio.Event = field(default_factory=asyncio.Event)


async def _metrics_server(
    page: bytes | None, *, chunked: bool = False, hold: Hold | None = None
) -> tuple[web.AppRunner, str]:
    """An HTTP server whose /metrics is ``page`` (None: 404), with a Content-Length or chunked (no length);
    with ``hold``, each request says it arrived and its answer waits for the hold's release."""

    async def metrics(request: web.Request) -> web.StreamResponse:
        if hold is not None:
            hold.arrived.release()
            await hold.released.wait()
        if page is None:
            raise web.HTTPNotFound()
        if not chunked:
            return web.Response(body=page)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(page), 1 << 20):
            await response.write(page[start : start + (1 << 20)])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def test_the_poller_reports_what_it_can_read_and_keeps_the_rest_until_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A vLLM page is read (also chunked); a 404, a page over the size limit (with a length, or chunked) and
    a closed port are not: an earlier reading of one of them stays while it is fresh (an engine too busy to
    answer in time is the one to hold back from), and one already stale is forgotten, gauge and all (back to
    the share rule).

    Each read may take the interval: a long one, so that a busy machine cannot make a good page look unreadable
    (it did at 0.05 s under `make test`), and no wait before the first round (it starts after a random part of
    the interval), so the test waits only for the reads themselves."""
    monkeypatch.setattr(random, "random", lambda: 0.0)
    metrics = RouterMetrics()
    clock = Clock()
    view = Occupancy(EndpointTracker(Ejection()), replicas=2, max_age=30.0, clock=clock)

    async def scenario() -> list[str]:
        huge = VLLM_PAGE + b"#" * MAX_METRICS_BYTES
        servers = [
            await _metrics_server(VLLM_PAGE),
            await _metrics_server(VLLM_PAGE, chunked=True),
            await _metrics_server(None),
            await _metrics_server(huge),
            await _metrics_server(huge, chunked=True),
        ]
        urls = [url for _, url in servers] + ["http://127.0.0.1:1"]
        routes = table(
            [backend("good", urls[:2]), backend("bad", urls[2:])],
            [task_class("chat", "chat", {"good": 1.0})],
        )
        store = TableStore(metrics, model=None)
        sealed = RoutingTable.model_validate(routes).sealed(version=1, generated_at="")
        assert store.offer(sealed.to_json(), source="test")
        for url in urls[2:4]:  # earlier readings that can no longer be renewed: the first stale by now
            clock.now += 31.0
            view.report(url, 9)
            metrics.engine_occupancy.labels("bad", url).set(9)
        readings = asyncio.Event()
        try:
            async with aiohttp.ClientSession() as session:
                poll = asyncio.create_task(
                    poll_engines(session, store, view, metrics, interval=60.0, on_reading=readings.set)
                )
                await readings.wait()
                poll.cancel()
        finally:
            for runner, _ in servers:
                await runner.cleanup()
        return urls

    urls = asyncio.run(scenario())
    good, stale, kept, never = urls[:2], urls[2], urls[3], urls[4:]
    assert all(view.fresh(url) and view.inflight(url) == 6 for url in good)
    assert not any(view.fresh(url) for url in [stale, *never])
    assert view.fresh(kept) and view.inflight(kept) == 9
    gauge = {s.labels["endpoint"]: s.value for s in metrics.engine_occupancy.collect()[0].samples}
    assert gauge == {good[0]: 6, good[1]: 6, kept: 9}
    assert metrics.engine_reads.labels("ok")._value.get() == 2
    assert metrics.engine_reads.labels("unreadable")._value.get() == 4


def test_a_reading_that_ends_after_a_table_swap_leaves_no_series_of_what_the_swap_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reads started under one table and answered after the next one removed their endpoint report nothing:
    neither to the balancer nor as a gauge series the swap had just removed (CI saw backend "b" come back)."""
    monkeypatch.setattr(random, "random", lambda: 0.0)
    metrics = RouterMetrics()
    view = Occupancy(EndpointTracker(Ejection()), replicas=1, max_age=30.0, clock=Clock())
    store = TableStore(
        metrics,
        model=None,
        on_swap=lambda s: metrics.forget_except(
            backends={b.name for b in s.table.backends}, classes=(), endpoints=s.endpoint_owner.keys()
        ),
    )

    def offer(backends: list[dict[str, object]], version: int) -> None:
        routes = table(backends, [task_class("chat", "chat", {"kept": 1.0})])
        sealed = RoutingTable.model_validate(routes).sealed(version=version, generated_at="")
        assert store.offer(sealed.to_json(), source="test")

    async def scenario() -> tuple[str, str]:
        hold = Hold()
        servers = [await _metrics_server(VLLM_PAGE, hold=hold) for _ in range(2)]
        kept, removed = (url for _, url in servers)
        offer([backend("kept", [kept]), backend("removed", [removed])], version=1)
        readings = asyncio.Event()
        try:
            async with aiohttp.ClientSession() as session:
                poll = asyncio.create_task(
                    poll_engines(session, store, view, metrics, interval=60.0, on_reading=readings.set)
                )
                for _ in servers:  # both reads in flight
                    await hold.arrived.acquire()
                offer([backend("kept", [kept])], version=2)
                hold.released.set()
                await readings.wait()
                poll.cancel()
        finally:
            for runner, _ in servers:
                await runner.cleanup()
        return kept, removed

    kept, removed = asyncio.run(scenario())
    assert view.fresh(kept) and view.inflight(kept) == 6
    assert not view.fresh(removed)
    samples = metrics.engine_occupancy.collect()[0].samples
    assert {(s.labels["backend"], s.labels["endpoint"]) for s in samples} == {("kept", kept)}
