"""How full each engine is, as one router replica can best tell: what the engine itself last reported, plus
what this replica changed since, and never less than the replica's own share of it.

A replica's own in-flight count (`endpoints.EndpointTracker`) misses what any client calling the engine's
Service directly (a batch job, another gateway) puts on it. The engine knows: vLLM exports
``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` on its ``/metrics`` (SGLang its own names), and
each replica reads them once a second by default (`poll_engines`, ``--engine-poll-interval``). Between two
readings, the replica adds its own change since the last one, counted as if every replica had changed it as
much: ``reported + replicas * (mine now - mine then)``.

The estimate is never below ``replicas * mine``, which is the share rule: each replica admits at most
``ceil(cap / replicas)`` per endpoint, as when the engines are not read. So a reading can only hold a replica
back (load it cannot see otherwise), never let it take a peer's unused share: a reading is up to an interval
old, and in the 4-replica scale-burst benchmark taking the peers' room on it admitted more than the engines
could answer in time (3% less quality-weighted goodput; docs/benchmarks.md). A failed read keeps the last
reading until it is stale (``max_age``, 3 intervals in the router): an engine too busy to answer /metrics
within the interval is the one to hold back from, and forgetting its reading would fall back to the share rule,
the emptier estimate. Without a fresh reading (an engine that does not export the gauges, reads failing for
longer, the reader not started) the estimate is the share rule alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiohttp

from .endpoints import EndpointTracker
from .metrics import RouterMetrics
from .tables import TableStore

OCCUPANCY_GAUGES = (
    b"vllm:num_requests_running",
    b"vllm:num_requests_waiting",
    b"sglang:num_running_reqs",
    b"sglang:num_queue_reqs",
)
"""The engine's requests running and waiting, in vLLM's and SGLang's names (summed over their series)."""
MAX_METRICS_BYTES = 8 * 1024 * 1024
"""A /metrics page larger than this is not read (vLLM's is some tens of KB)."""


@dataclass(frozen=True, slots=True)
class _Reading:
    occupancy: int
    mine: int
    at: float


class Occupancy:
    """A `balancer.LoadView` whose ``inflight`` is the engine's estimated occupancy (see the module)."""

    def __init__(
        self,
        tracker: EndpointTracker,
        *,
        replicas: int,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self._replicas = max(1, replicas)
        self._max_age = max_age
        self._clock = clock
        self._readings: dict[str, _Reading] = {}

    def report(self, url: str, occupancy: int) -> None:
        """The engine at ``url`` said it holds ``occupancy`` requests (running + waiting), just now."""
        self._readings[url] = _Reading(occupancy, self.tracker.inflight(url), self._clock())

    def forget(self, url: str) -> None:
        self._readings.pop(url, None)

    def forget_except(self, urls: Iterable[str]) -> None:
        keep = set(urls)
        for url in [u for u in self._readings if u not in keep]:
            del self._readings[url]

    def fresh(self, url: str) -> bool:
        reading = self._readings.get(url)
        return reading is not None and self._clock() - reading.at <= self._max_age

    def inflight(self, url: str) -> int:
        share_rule = self._replicas * self.tracker.inflight(url)
        if not self.fresh(url):
            return share_rule
        reading = self._readings[url]
        return max(share_rule, reading.occupancy + share_rule - self._replicas * reading.mine)

    def ejected(self, url: str) -> bool:
        return self.tracker.ejected(url)


def read_occupancy(page: bytes) -> int | None:
    """The requests running and waiting in a Prometheus text page (`OCCUPANCY_GAUGES`, every series summed),
    or None when the page has none of them (an engine that does not export them)."""
    total, found = 0.0, False
    for line in page.splitlines():
        if not line.startswith(OCCUPANCY_GAUGES):
            continue
        name = next(n for n in OCCUPANCY_GAUGES if line.startswith(n))
        after = line[len(name) : len(name) + 1]
        if after not in (b"{", b" "):
            continue  # another metric whose name starts with this one's (..._total, ..._by_reason)
        sample = line[line.rindex(b"}") + 1 :] if after == b"{" else line[len(name) :]
        try:
            total += float(sample.split()[0])
        except (IndexError, ValueError):
            continue
        found = True
    return round(total) if found else None


async def poll_engines(
    session: aiohttp.ClientSession,
    store: TableStore,
    occupancy: Occupancy,
    metrics: RouterMetrics,
    *,
    interval: float,
    on_reading: Callable[[], None],
) -> None:
    """Read every endpoint's /metrics each ``interval`` seconds (all at once, each within the interval) and
    report what it holds to ``occupancy``; ``on_reading`` then offers the room found to the queue.

    The first round starts after a random part of the interval, so replicas started together read apart."""
    timeout = aiohttp.ClientTimeout(total=interval)
    await asyncio.sleep(random.random() * interval)
    while True:
        snapshot = store.current
        owners = {} if snapshot is None else snapshot.endpoint_owner
        occupancy.forget_except(owners)
        read = await asyncio.gather(*(_read(session, url, timeout) for url in owners))
        # The table may have changed during the reads: a reading of an endpoint it no longer has would bring
        # back the series its swap removed (`RouterMetrics.forget_except`).
        still = {} if store.current is None else store.current.endpoint_owner
        for (url, backend), held in zip(owners.items(), read, strict=True):
            if still.get(url) != backend:
                continue
            metrics.engine_reads.labels("ok" if held is not None else "unreadable").inc()
            if held is None:
                if not occupancy.fresh(url):  # a fresh one stays (see the module)
                    occupancy.forget(url)
                    with contextlib.suppress(KeyError):
                        metrics.engine_occupancy.remove(backend, url)
                continue
            occupancy.report(url, held)
            metrics.engine_occupancy.labels(backend, url).set(held)
        on_reading()
        await asyncio.sleep(interval)


async def _read(session: aiohttp.ClientSession, url: str, timeout: aiohttp.ClientTimeout) -> int | None:
    try:
        async with session.get(f"{url.rstrip('/')}/metrics", timeout=timeout) as response:
            if response.status != 200 or (response.content_length or 0) > MAX_METRICS_BYTES:
                return None
            chunks, size = [], 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_METRICS_BYTES:
                    return None
                chunks.append(chunk)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    return read_occupancy(b"".join(chunks))
