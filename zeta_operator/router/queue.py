"""The bounded wait queue for requests whose every eligible endpoint is at capacity: ordering only, no I/O.

Rank of a waiter at time ``now`` (higher is served first), compared as a tuple:

1. effective priority = priority + floor(waited / aging_seconds): a waiting request gains one level per
   ``aging_seconds``, so a priority-0 request overtakes fresh priority-9 ones after 9 agings (no starvation);
2. complexity, higher first: at equal priority complex work goes first, because it has fewer places it may go
   while simple work can also use the smaller backends when they free up;
3. arrival, older first.

Waiters sit in one FIFO per (priority, complexity), so within a FIFO arrival order is rank order and finding the
best waiter scans at most 50 heads, whatever the queue length. A freed slot only goes to a waiter that may use
that endpoint (`best` with ``endpoint``): the first waiter of each FIFO that may use it is a candidate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """No room in the queue (or queueing is off: max_size 0)."""


@dataclass(eq=False, slots=True)
class Waiter(Generic[T]):
    priority: int
    complexity: int
    arrived: float
    endpoints: frozenset[str]
    """URLs of the endpoints this request may use."""
    payload: T
    queued: bool = field(default=False)


def rank(waiter: Waiter[T], *, now: float, aging_seconds: float) -> tuple[int, int, float]:
    aged = int(max(0.0, now - waiter.arrived) // aging_seconds)
    return (waiter.priority + aged, waiter.complexity, -waiter.arrived)


class WaitQueue(Generic[T]):
    def __init__(self) -> None:
        self._fifos: dict[tuple[int, int], deque[Waiter[T]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, waiter: Waiter[T], *, max_size: int) -> None:
        if self._size >= max_size:
            raise QueueFull()
        self._fifos.setdefault((waiter.priority, waiter.complexity), deque()).append(waiter)
        waiter.queued = True
        self._size += 1

    def remove(self, waiter: Waiter[T]) -> None:
        """Take a waiter out (served, timed out or gone); a no-op when it is not queued."""
        if not waiter.queued:
            return
        fifo = self._fifos[(waiter.priority, waiter.complexity)]
        if fifo[0] is waiter:
            fifo.popleft()
        else:
            fifo.remove(waiter)
        if not fifo:
            del self._fifos[(waiter.priority, waiter.complexity)]
        waiter.queued = False
        self._size -= 1

    def best(self, *, now: float, aging_seconds: float, endpoint: str | None = None) -> Waiter[T] | None:
        """The highest-ranked waiter (that may use ``endpoint``, when given), left in the queue."""
        found: Waiter[T] | None = None
        found_rank: tuple[int, int, float] | None = None
        for fifo in self._fifos.values():
            head = _first_for(fifo, endpoint)
            if head is None:
                continue
            r = rank(head, now=now, aging_seconds=aging_seconds)
            if found_rank is None or r > found_rank:
                found, found_rank = head, r
        return found

    def in_order(self, *, now: float, aging_seconds: float) -> list[Waiter[T]]:
        """Every waiter, best first."""
        everyone = [w for fifo in self._fifos.values() for w in fifo]
        everyone.sort(key=lambda w: rank(w, now=now, aging_seconds=aging_seconds), reverse=True)
        return everyone

    def __iter__(self) -> Iterator[Waiter[T]]:
        for fifo in self._fifos.values():
            yield from fifo


def _first_for(fifo: deque[Waiter[T]], endpoint: str | None) -> Waiter[T] | None:
    if endpoint is None:
        return fifo[0]
    return next((w for w in fifo if endpoint in w.endpoints), None)
