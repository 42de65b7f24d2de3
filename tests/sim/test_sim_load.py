"""Load on a real simulator: batching slowdown, the waiting queue, and aborts when clients hang up."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp

from zeta_dev.launch.sim import SimSpec, start_sims
from zeta_sim.latency import LatencyModel

OUTPUT_TOKENS = 50
PAYLOAD = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": OUTPUT_TOKENS}


async def _timed_requests(url: str, n: int) -> list[float]:
    """Send ``n`` requests at once; each one's end-to-end seconds as the client saw it."""
    async with aiohttp.ClientSession() as session:

        async def one() -> float:
            start = time.monotonic()
            async with session.post(f"{url}/v1/chat/completions", json=PAYLOAD) as r:
                assert r.status == 200, await r.text()
                await r.read()
            return time.monotonic() - start

        return list(await asyncio.gather(*(one() for _ in range(n))))


def test_latency_grows_with_concurrency_as_modelled() -> None:
    scale, max_seqs = 0.5, 8
    spec = SimSpec(model="load", size_b=4, max_seqs=max_seqs, time_scale=scale)
    model = LatencyModel.for_size(4, max_seqs=max_seqs)
    prompt_tokens = 1 + 4  # "hi" plus the chat template's tokens for one message
    alone = scale * model.predicted_e2e_s(prompt_tokens=prompt_tokens, output_tokens=OUTPUT_TOKENS, running=1)
    # 16 at once: two full batches one after the other, each at the full-batch slowdown.
    batch = scale * model.predicted_e2e_s(
        prompt_tokens=prompt_tokens, output_tokens=OUTPUT_TOKENS, running=max_seqs
    )
    at_16 = (batch + 2 * batch) / 2

    with start_sims([spec]) as (sim,):
        single = [asyncio.run(_timed_requests(sim.url, 1))[0] for _ in range(3)]
        burst = asyncio.run(_timed_requests(sim.url, 16))
        server_sum = sim.metric("vllm:e2e_request_latency_seconds_sum")
        server_count = sim.metric("vllm:e2e_request_latency_seconds_count")

    mean_1, mean_16 = statistics.mean(single), statistics.mean(burst)
    # Sleeping can only be late, so the model's times are lower bounds, and only lower bounds are checked: a
    # slow machine makes every request slower, never faster (speed belongs in benchmarks). The burst's bound is
    # 2.8x a single request's: a simulator without batching slowdown and queueing could not meet it. At 16, a
    # slow client spreads the arrivals, which lets the first ones run in a smaller batch for a moment (0.85).
    assert at_16 > 2.5 * alone
    assert mean_1 >= 0.95 * alone, (alone, mean_1)
    assert mean_16 >= 0.85 * at_16, (at_16, mean_16)
    # The server's own histogram measures engine time, free of HTTP and client overhead.
    assert server_count == 19
    expected_server_mean = (3 * alone + 16 * at_16) / 19
    assert server_sum / server_count >= 0.85 * expected_server_mean


def test_requests_beyond_max_seqs_wait_and_leave_when_clients_hang_up(eventually) -> None:
    # Long answers (300 tokens, about 4.5 s at a full batch) keep the queue in place while we look.
    spec = SimSpec(model="queue", size_b=4, max_seqs=2, time_scale=1.0)
    payload = {"prompt": "x" * 400, "max_tokens": 300}

    async def scenario(sim_url: str, metric) -> None:
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                async with session.post(f"{sim_url}/v1/completions", json=payload) as r:
                    await r.read()

            tasks = [asyncio.create_task(one()) for _ in range(6)]
            loop = asyncio.get_running_loop()

            def queued() -> bool:
                return metric("vllm:num_requests_waiting") == 4 and metric("vllm:num_requests_running") == 2

            await loop.run_in_executor(None, lambda: eventually(queued, what="2 running and 4 waiting"))
            kv = await loop.run_in_executor(None, metric, "vllm:kv_cache_usage_perc")
            assert 0 < kv <= 1
            for task in tasks:  # hang up: vLLM aborts such requests, and so must the simulator
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    with start_sims([spec]) as (sim,):
        asyncio.run(scenario(sim.url, sim.metric))
        eventually(
            lambda: (
                sim.metric("vllm:num_requests_waiting") == 0 and sim.metric("vllm:num_requests_running") == 0
            ),
            what="the queue to empty after the clients left",
        )
        assert sim.metric("vllm:request_success_total") is None  # nothing finished: all were aborted
        assert sim.metric("vllm:kv_cache_usage_perc") == 0


def test_idle_and_hung_instances_do_not_spin(http, eventually) -> None:
    """No busy loops: waiting for work, or for a hang to clear, costs (almost) no CPU."""

    def cpu_over_one_second(sim) -> float:
        before = sim.metric("container_cpu_usage_seconds_total")
        time.sleep(1.0)  # measuring a rate needs an interval; CPU seconds do not grow with machine load
        return sim.metric("container_cpu_usage_seconds_total") - before

    with start_sims([SimSpec(model="idle", time_scale=1.0, extra_args=("--hang",))]) as (sim,):
        idle = cpu_over_one_second(sim)

        async def queue_one() -> None:
            async with aiohttp.ClientSession() as session:
                request = asyncio.create_task(
                    session.post(f"{sim.url}/v1/completions", json={"prompt": "hi"})
                )
                await asyncio.get_running_loop().run_in_executor(
                    None,
                    lambda: eventually(lambda: sim.metric("vllm:num_requests_waiting") == 1, what="queued"),
                )
                hung = await asyncio.get_running_loop().run_in_executor(None, cpu_over_one_second, sim)
                request.cancel()
                await asyncio.gather(request, return_exceptions=True)
                assert hung < 0.2, hung

        asyncio.run(queue_one())
    assert idle < 0.2, idle
