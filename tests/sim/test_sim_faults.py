"""Fault injection on real simulator processes: errors, extra latency, hang, unhealthy and crash."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import pytest

from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims
from zeta_sim.faults import CRASH_EXIT_CODE

QUICK = {"prompt": "hi", "max_tokens": 1}


@pytest.fixture(scope="module")
def admin_sim() -> Iterator[RunningSim]:
    with start_sims([SimSpec(model="admin", time_scale=0.01)]) as (sim,):
        yield sim


def statuses(http, url: str, n: int) -> list[int]:
    return [http.post(f"{url}/v1/completions", QUICK).status for _ in range(n)]


def test_error_rate_fails_that_fraction_the_same_way_for_the_same_seed(http) -> None:
    specs = [SimSpec(model="e", time_scale=0.01, seed=7, error_rate=0.3) for _ in range(2)]
    with start_sims(specs) as (a, b):
        first, second = statuses(http, a.url, 200), statuses(http, b.url, 200)
        assert set(first) == {200, 500}
        assert first == second  # same seed, same request order: the same requests fail
        assert 0.2 <= first.count(500) / 200 <= 0.4
        failed = http.post(f"{a.url}/v1/completions", QUICK)
        while failed.status != 500:
            failed = http.post(f"{a.url}/v1/completions", QUICK)
        assert failed.json()["error"]["code"] == 500
        assert (
            a.metric("http_requests_total", handler="/v1/completions", status="5xx") == first.count(500) + 1
        )

        assert a.set_faults(error_rate=0.0)["error_rate"] == 0.0
        assert set(statuses(http, a.url, 30)) == {200}
        a.set_faults(error_rate=1.0)
        assert set(statuses(http, a.url, 30)) == {500}
        assert http.get(f"{a.url}/health").status == 200  # errors alone do not fail the probe


def test_extra_latency_is_added_to_time_to_first_token(http) -> None:
    with start_sims([SimSpec(model="slow", size_b=4, time_scale=1.0)]) as (sim,):

        def e2e() -> float:
            start = time.monotonic()
            assert http.post(f"{sim.url}/v1/completions", QUICK).status == 200
            return time.monotonic() - start

        before = min(e2e() for _ in range(3))
        assert sim.set_faults(extra_latency_ms=400)["extra_latency_ms"] == 400
        during = min(e2e() for _ in range(2))
        sim.set_faults(extra_latency_ms=0)
        after = min(e2e() for _ in range(2))
    assert during - before >= 0.3  # injected 400 ms; sleeping is never early, but `before` may be unlucky
    assert during < before + 5  # generous: a loaded machine is late, not this late
    assert after < during


def test_latency_spike_flag_applies_from_the_start(http) -> None:
    with start_sims([SimSpec(model="spiky", time_scale=1.0, extra_latency_ms=300)]) as (sim,):
        assert sim.faults()["extra_latency_ms"] == 300
        start = time.monotonic()
        assert http.post(f"{sim.url}/v1/completions", QUICK).status == 200
        assert time.monotonic() - start >= 0.3


def test_hang_accepts_requests_never_answers_until_cleared_and_fails_health(http, eventually) -> None:
    with start_sims([SimSpec(model="hang", time_scale=0.1)]) as (sim,):
        sim.set_faults(hang=True)
        assert http.get(f"{sim.url}/health").status == 503

        async def scenario() -> int:
            async with aiohttp.ClientSession() as session:
                request = asyncio.create_task(session.post(f"{sim.url}/v1/completions", json=QUICK))
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(
                    None,
                    lambda: eventually(lambda: sim.metric("vllm:num_requests_waiting") == 1, what="queued"),
                )
                # Accepted and queued; still no answer a while later.
                done, _ = await asyncio.wait({request}, timeout=0.5)
                assert not done
                await loop.run_in_executor(None, lambda: sim.set_faults(hang=False))
                response = await asyncio.wait_for(request, timeout=30)
                async with response:
                    return response.status

        assert asyncio.run(scenario()) == 200
        assert http.get(f"{sim.url}/health").status == 200
        assert http.post(f"{sim.url}/v1/completions", QUICK).status == 200


def test_unhealthy_fails_the_probe_but_keeps_serving(http) -> None:
    with start_sims([SimSpec(model="sick", time_scale=0.01, extra_args=("--unhealthy",))]) as (sim,):
        assert http.get(f"{sim.url}/health").status == 503
        assert http.post(f"{sim.url}/v1/completions", QUICK).status == 200
        sim.set_faults(unhealthy=False)
        assert http.get(f"{sim.url}/health").status == 200


def test_crash_exits_at_once_with_code_3() -> None:
    with start_sims([SimSpec(model="crash", time_scale=0.01)]) as (sim,):
        sim.set_faults(crash=True)
        assert sim.process.popen.wait(10) == CRASH_EXIT_CODE


@pytest.mark.parametrize(
    "body",
    [
        b"{oops",
        b"[true]",
        b'"hang"',
        b'{"hang": "yes"}',
        b'{"error_rate": 1.5}',
        b'{"error_rate": "0.3"}',
        b'{"extra_latency_ms": -1}',
        b'{"explode": true}',
    ],
)
def test_malformed_fault_settings_get_400_and_change_nothing(
    admin_sim: RunningSim, http, body: bytes
) -> None:
    before = admin_sim.faults()
    reply = http.post(f"{admin_sim.url}/admin/faults", body)
    assert reply.status == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert admin_sim.faults() == before
    assert http.get(f"{admin_sim.url}/health").status == 200
