"""Drives a `Scenario` against the router and records what happened to every request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from .scenario import ClassLoad, Phases, Scenario, arrivals


@dataclass(frozen=True)
class Outcome:
    sent_at: float  # seconds since the start of the workload
    task_class: str  # what the client meant
    routed_class: str  # what the router classified it as
    backend: str
    decision: str
    status: int
    latency: float
    phase: str


async def send(session: aiohttp.ClientSession, url: str, load: ClassLoad, t: float, phase: str) -> Outcome:
    """One request of class `load`, sent at `t` seconds into the workload; a failed connection is status 0."""
    body = {
        "model": "zeta",
        "messages": [{"role": "user", "content": load.prompt}],
        "max_tokens": load.max_tokens,
    }
    headers = {"X-Zeta-Task": load.task, "X-Zeta-Complexity": str(load.complexity)}
    started = time.monotonic()
    try:
        async with session.post(f"{url}/v1/chat/completions", json=body, headers=headers) as r:
            await r.read()
            h = r.headers
            return Outcome(t, load.task_class, h.get("X-Zeta-Task-Class", ""), h.get("X-Zeta-Backend", ""),
                           h.get("X-Zeta-Decision", ""), r.status, time.monotonic() - started, phase)  # fmt: skip
    except (TimeoutError, aiohttp.ClientError):
        return Outcome(t, load.task_class, "", "", "error", 0, time.monotonic() - started, phase)


async def run(plan: Scenario, phases: Phases, router_url: str, *, seed: int = 7) -> list[Outcome]:
    """Send every arrival on time (open loop) until the phases are done, and wait for all answers."""
    timeout = aiohttp.ClientTimeout(total=180)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        start = time.monotonic()
        tasks = []
        for t, load, phase in arrivals(plan, phases, seed):
            delay = start + t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(session, router_url, load, t, phase)))
        return list(await asyncio.gather(*tasks))
