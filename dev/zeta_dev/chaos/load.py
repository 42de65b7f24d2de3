"""Steady load through the router: requests sent at a fixed rate (open loop, so a slow or failing part does not
slow the offered load), a share of them streamed, and what happened to each one."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

REQUEST_KINDS = (  # (task, complexity, prompt): classes the sample policy serves with a fallback
    ("chat", 1, "Say hello to the team in one friendly sentence."),
    ("code", 2, "Fix this function:\n```python\ndef add(a, b):\n    return a - b\n```"),
    ("summarize", 2, "Summarize: " + "The meeting covered budgets. " * 10),
)


@dataclass(frozen=True)
class Outcome:
    sent: float
    """time.monotonic() when the request was sent."""
    done: float
    stream: bool
    status: int
    """HTTP status; 0 when no response came at all."""
    first_byte: bool
    """The client received the start of a 200 answer's body."""
    answered: bool
    """A 200 answer, complete (a stream ends with ``data: [DONE]``)."""
    retries: int
    """The router's X-Zeta-Retries: attempts it moved to another endpoint before the first byte."""
    backend: str
    table_version: int | None
    error: str = ""

    @property
    def failed_before_first_byte(self) -> bool:
        return not self.answered and not self.first_byte


class SteadyLoad:
    """``rate`` requests per second to ``router_url`` until the context ends; every ``stream_every``-th one
    streams. Leaving the context waits for every request sent to finish."""

    def __init__(self, router_url: str, *, rate: float = 8.0, stream_every: int = 4, max_tokens: int = 40):
        self.url = f"{router_url}/v1/chat/completions"
        self.rate, self.stream_every, self.max_tokens = rate, stream_every, max_tokens
        self._outcomes: list[Outcome] = []
        self._pending: dict[int, float] = {}  # request number -> when it was due, until it finishes
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="chaos-load")
        self._dispatcher = threading.Thread(target=self._dispatch, name="chaos-dispatch", daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._dispatcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._dispatcher.join()
        self._pool.shutdown(wait=True)

    def outcomes(self, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        """Finished requests sent in [since, until)."""
        with self._lock:
            return [o for o in self._outcomes if since <= o.sent < until]

    def settled(self, until: float) -> bool:
        """Every request sent before ``until`` has finished."""
        with self._lock:
            return all(sent >= until for sent in self._pending.values())

    def _dispatch(self) -> None:
        start = time.monotonic()
        for n in itertools.count():
            due = start + n / self.rate
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            with self._lock:
                self._pending[n] = time.monotonic()
            self._pool.submit(self._one, n)

    def _one(self, n: int) -> None:
        task, complexity, prompt = REQUEST_KINDS[n % len(REQUEST_KINDS)]
        stream = n % self.stream_every == 0
        body = {"model": "zeta", "messages": [{"role": "user", "content": prompt}],
                "max_tokens": self.max_tokens, "stream": stream}  # fmt: skip
        headers = {"X-Zeta-Task": task, "X-Zeta-Complexity": str(complexity)}
        with self._lock:
            sent = self._pending[n]
        outcome = _send(self.url, body, headers, stream=stream, sent=sent)
        with self._lock:
            self._outcomes.append(outcome)
            del self._pending[n]


def _send(
    url: str, body: dict[str, object], headers: dict[str, str], *, stream: bool, sent: float
) -> Outcome:
    status, first_byte, answered, retries, backend, version, error = 0, False, False, 0, "", None, ""
    try:
        # A fresh connection per request, as many clients behind a load balancer would open.
        with requests.post(url, json=body, headers={**headers, "Connection": "close"}, stream=True,
                           timeout=120) as r:  # fmt: skip
            status = r.status_code
            retries = int(r.headers.get("X-Zeta-Retries", "0"))
            backend = r.headers.get("X-Zeta-Backend", "")
            version = int(r.headers["X-Zeta-Table-Version"]) if "X-Zeta-Table-Version" in r.headers else None
            received = b""
            for chunk in r.iter_content(chunk_size=None):
                received += chunk
                first_byte = first_byte or (status == 200 and bool(chunk))
            if status == 200:
                answered = received.rstrip().endswith(b"data: [DONE]") if stream else b'"choices"' in received
            else:
                error = f"HTTP {status}: {received[:200].decode(errors='replace')}"
    except (requests.RequestException, ValueError) as e:
        error = f"{type(e).__name__}: {e}"[:300]
    return Outcome(sent, time.monotonic(), stream, status, first_byte, answered, retries, backend, version,
                   error)  # fmt: skip


@dataclass(frozen=True)
class Counts:
    sent: int
    answered: int
    retried: int
    failed: int
    failed_before_first_byte: int
    streams: int
    streams_answered: int

    @classmethod
    def of(cls, outcomes: list[Outcome]) -> Counts:
        return cls(
            sent=len(outcomes),
            answered=sum(o.answered for o in outcomes),
            retried=sum(o.retries > 0 for o in outcomes),
            failed=sum(not o.answered for o in outcomes),
            failed_before_first_byte=sum(o.failed_before_first_byte for o in outcomes),
            streams=sum(o.stream for o in outcomes),
            streams_answered=sum(o.stream and o.answered for o in outcomes),
        )
