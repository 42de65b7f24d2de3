"""Admission: a slot on an endpoint now, or a place in the priority queue until one frees up.

A request takes a slot (one in-flight unit of an endpoint) as soon as the balancer finds an eligible endpoint
with room; it only waits when every eligible endpoint is at capacity, so nothing ever queues while a capable
backend has room. When a slot is released, the best-ranked waiter that may use that endpoint gets it at once
(the slot is handed over, never raced for). Table reloads and a slow timer also offer slots to every waiter,
for capacity that appears without a release (new endpoints, a higher max_concurrency, an ejection that ends).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..api.table import TableQueue
from .balancer import Choice, Eligible, LoadView, Picker, weighted
from .endpoints import EndpointTracker
from .metrics import RouterMetrics
from .queue import QueueFull, Waiter, WaitQueue

SERVICE_SMOOTHING = 0.2
"""Weight of the newest answer in a (class, backend) service-time estimate (an exponential moving average)."""


class ServiceTimes:
    """Seconds from a slot taken to the answer's end, per (task class, backend), as this replica has seen them:
    what `wait_budget` reads to tell a waiter that can still be answered in time from one that cannot."""

    def __init__(self) -> None:
        self._seconds: dict[tuple[str, str], float] = {}

    def observe(self, task_class: str, backend: str, seconds: float) -> None:
        key = (task_class, backend)
        last = self._seconds.get(key)
        self._seconds[key] = seconds if last is None else last + SERVICE_SMOOTHING * (seconds - last)

    def fastest(self, task_class: str, backends: Iterable[str]) -> float | None:
        """The lowest estimate among ``backends`` (None before any of them has answered this class)."""
        seen = [s for b in backends if (s := self._seconds.get((task_class, b))) is not None]
        return min(seen, default=None)

    def budget(self, queue: TableQueue, task_class: str, objective: float, backends: Iterable[str]) -> float:
        """`wait_budget` for a request of ``task_class`` that may use ``backends`` (looked up only under
        shedLate)."""
        if not queue.shed_late:
            return queue.max_wait_seconds
        return wait_budget(queue, objective, self.fastest(task_class, backends))


def wait_budget(queue: TableQueue, objective: float, expected_service: float | None) -> float:
    """How long a request may wait for a slot: the queue's maxWait, and with shedLate no longer than it leaves
    time to be answered within its class's objective (0: it cannot be any more). Without an estimate yet
    (no answer of its class seen on a backend it may use), maxWait."""
    if not queue.shed_late or expected_service is None:
        return queue.max_wait_seconds
    return max(0.0, min(queue.max_wait_seconds, objective - expected_service))


class Rejected(Exception):
    """The router answers this request itself (429 or 503), with a Retry-After."""

    def __init__(self, status: int, reason: str, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass(slots=True)
class _Ticket:
    eligible: Eligible
    task_class: str
    future: asyncio.Future[Choice]


class Admission:
    def __init__(
        self,
        tracker: EndpointTracker,
        metrics: RouterMetrics,
        rng: random.Random,
        *,
        pick: Picker = weighted,
        load: LoadView | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``load``: what the picker judges an endpoint's room by (`occupancy.Occupancy`); default the
        tracker's own in-flight counts."""
        self.tracker = tracker
        self._load: LoadView = tracker if load is None else load
        self._pick = pick
        self._metrics = metrics
        self._rng = rng
        self._clock = clock
        self._queue: WaitQueue[_Ticket] = WaitQueue()
        self.service = ServiceTimes()
        self._aging_seconds = 1.0
        self._series: set[tuple[str, str]] = set()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def configure(self, queue: TableQueue, endpoints: Mapping[str, str]) -> None:
        """Adopt a new table (its queue settings; ``endpoints``: URL -> backend) and offer new capacity.

        Endpoints that left the table lose their health record and, once idle, their in-flight series."""
        self._aging_seconds = queue.aging_seconds
        self.tracker.forget_except(endpoints.keys())
        for backend, url in list(self._series):
            if endpoints.get(url) != backend and not self.tracker.inflight(url):
                self._metrics.inflight.remove(backend, url)
                self._series.discard((backend, url))
        self.offer_all()

    def try_now(self, eligible: Eligible, *, exclude: frozenset[str] = frozenset()) -> Choice | None:
        choice = self._pick(eligible, self._load, self._rng, exclude)
        if choice is not None:
            self._take(choice)
        return choice

    async def acquire(
        self,
        eligible: Eligible,
        *,
        priority: int,
        complexity: int,
        task_class: str,
        queue: TableQueue,
        objective: float | None = None,
    ) -> tuple[Choice, float]:
        """A slot and the seconds waited for it; raises Rejected when the queue is full or the wait too long
        (``objective``: the class's latency objective, which bounds the wait under the queue's shedLate)."""
        choice = self.try_now(eligible)
        if choice is not None:
            return choice, 0.0
        retry_after = max(1, math.ceil(queue.aging_seconds))
        budget = queue.max_wait_seconds
        if objective is not None:
            budget = self.service.budget(queue, task_class, objective, (b.name for b in eligible.backends()))
        if budget <= 0:
            raise Rejected(
                429,
                "late",
                f"every capable backend is busy, and none would answer within the {objective:g}s objective of "
                f"class {task_class} after a wait",
                retry_after=retry_after,
            )
        future: asyncio.Future[Choice] = asyncio.get_running_loop().create_future()
        waiter = Waiter(
            priority,
            complexity,
            self._clock(),
            eligible.endpoint_urls(),
            _Ticket(eligible, task_class, future),
        )
        try:
            self._queue.push(waiter, max_size=queue.max_size)
        except QueueFull:
            raise Rejected(
                429,
                "queue_full",
                "all capable backends are busy and the queue is full",
                retry_after=retry_after,
            ) from None
        depth = self._metrics.queue_depth.labels(task_class)
        depth.inc()
        try:
            await asyncio.wait([future], timeout=budget)
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        finally:
            depth.dec()
            self._metrics.queue_wait.labels(task_class).observe(self._clock() - waiter.arrived)
        if not future.done():
            self._queue.remove(waiter)
            if budget < queue.max_wait_seconds:
                raise Rejected(
                    429,
                    "late",
                    f"no capable backend freed up within {budget:.1f}s, in time to answer within the "
                    f"{objective:g}s objective of class {task_class}",
                    retry_after=retry_after,
                )
            raise Rejected(
                429,
                "deadline",
                f"no capable backend freed up within {queue.max_wait_seconds:g}s",
                retry_after=retry_after,
            )
        return future.result(), self._clock() - waiter.arrived

    def release(self, choice: Choice) -> None:
        self.tracker.release(choice.endpoint.url)
        self._metrics.inflight.labels(choice.backend.name, choice.endpoint.url).dec()
        if self._queue:
            self._offer(choice.endpoint.url)

    def offer_all(self) -> None:
        """Give free capacity to waiters, best first (each waiter may use different endpoints)."""
        now = self._clock()
        for waiter in self._queue.in_order(now=now, aging_seconds=self._aging_seconds):
            choice = self._pick(waiter.payload.eligible, self._load, self._rng, frozenset())
            if choice is not None:
                self._hand_over(waiter, choice)

    def _offer(self, url: str) -> None:
        while self._queue:
            waiter = self._queue.best(now=self._clock(), aging_seconds=self._aging_seconds, endpoint=url)
            if waiter is None:
                return
            choice = self._pick(waiter.payload.eligible, self._load, self._rng, frozenset())
            if choice is None:
                return
            self._hand_over(waiter, choice)

    def _hand_over(self, waiter: Waiter[_Ticket], choice: Choice) -> None:
        self._queue.remove(waiter)
        self._take(choice)
        waiter.payload.future.set_result(choice)

    def _take(self, choice: Choice) -> None:
        self.tracker.acquire(choice.endpoint.url)
        self._metrics.inflight.labels(choice.backend.name, choice.endpoint.url).inc()
        self._series.add((choice.backend.name, choice.endpoint.url))

    def _abandon(self, waiter: Waiter[_Ticket]) -> None:
        """The client went away while waiting: leave the queue, and give back a slot handed over meanwhile."""
        self._queue.remove(waiter)
        future = waiter.payload.future
        if future.done() and not future.cancelled():
            self.release(future.result())
