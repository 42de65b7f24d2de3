"""Steady request load through the router's Service, counting every outcome (for rollouts and Pod deletions)."""

from __future__ import annotations

import collections
import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    status: int  # 0: no HTTP answer at all (connection refused or reset, timeout)
    backend: str
    endpoint: str
    error: str = ""


def chat(base_url: str, content: str, *, model: str = "zeta", timeout: float = 30) -> Answer:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    request = urllib.request.Request(
        f"{base_url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            headers = response.headers
            return Answer(
                response.status, headers.get("X-Zeta-Backend", ""), headers.get("X-Zeta-Endpoint", "")
            )
    except urllib.error.HTTPError as e:
        e.read()
        return Answer(e.code, e.headers.get("X-Zeta-Backend", ""), "", error=f"HTTP {e.code}")
    except OSError as e:
        return Answer(0, "", "", error=f"{type(e).__name__}: {e}")


@dataclass
class SteadyLoad:
    """``workers`` clients, each sending one request after another until stopped."""

    base_url: str
    workers: int = 4
    prompts: tuple[str, ...] = ("hello there", "def f(x): return x  # refactor this", "summarize: a b c")
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> SteadyLoad:
        for i in range(self.workers):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, worker: int) -> None:
        n = worker
        while not self._stop.is_set():
            answer = chat(self.base_url, self.prompts[n % len(self.prompts)])
            n += 1
            with self._lock:
                self.answers.append(answer)

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def failures(self) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.status != 200]

    def summary(self) -> str:
        with self._lock:
            errors = collections.Counter(a.error or str(a.status) for a in self.answers if a.status != 200)
            return f"{len(self.answers)} requests, {sum(errors.values())} failed: {dict(errors)}"
