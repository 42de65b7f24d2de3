"""The router's local, real-time view of each endpoint: requests in flight and passive outlier ejection.

Keyed by endpoint URL, so the view survives table reloads (an endpoint that stays in the table keeps its
in-flight count; requests started under an old table release the same counter).

Ejection: ``consecutive_failures`` failures in a row (connect error, 5xx, timeout, broken stream) eject an
endpoint for ``base_seconds``, doubling with each ejection that follows without a success in between, capped at
``max_seconds``. A success resets both. An endpoint is not ejected when no other endpoint of the request's
eligible set is in service, and the balancer ignores ejection when every eligible endpoint is ejected, so the
last eligible endpoint always stays reachable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .settings import Ejection


@dataclass(slots=True)
class _Health:
    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0


class EndpointTracker:
    def __init__(self, ejection: Ejection, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = ejection
        self._clock = clock
        self._inflight: dict[str, int] = {}
        self._health: dict[str, _Health] = {}

    def inflight(self, url: str) -> int:
        return self._inflight.get(url, 0)

    def acquire(self, url: str) -> None:
        self._inflight[url] = self._inflight.get(url, 0) + 1

    def release(self, url: str) -> None:
        left = self._inflight.get(url, 0) - 1
        if left > 0:
            self._inflight[url] = left
        else:
            self._inflight.pop(url, None)

    def ejected(self, url: str) -> bool:
        health = self._health.get(url)
        return health is not None and health.ejected_until > self._clock()

    def ejected_for(self, url: str) -> float:
        health = self._health.get(url)
        return 0.0 if health is None else max(0.0, health.ejected_until - self._clock())

    def forget_except(self, urls: Iterable[str]) -> None:
        """Drop the health of endpoints that left the table (a returning endpoint starts afresh)."""
        keep = set(urls)
        for url in [u for u in self._health if u not in keep]:
            del self._health[url]

    def record_success(self, url: str) -> None:
        self._health.pop(url, None)

    def record_failure(self, url: str, *, peers: Iterable[str]) -> float:
        """Count a failure; returns the ejection time in seconds when this failure ejects the endpoint."""
        health = self._health.setdefault(url, _Health())
        health.failures += 1
        if health.failures < self._settings.consecutive_failures or self.ejected(url):
            return 0.0
        if not any(p != url and not self.ejected(p) for p in peers):
            return 0.0  # the last one in service stays in service
        seconds = min(
            self._settings.max_seconds, self._settings.base_seconds * 2 ** min(health.ejections, 20)
        )
        health.ejections += 1
        health.failures = 0
        health.ejected_until = self._clock() + seconds
        return seconds
