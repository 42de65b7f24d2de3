"""Steady request load through the router's Service, counting every outcome (for rollouts and Pod deletions)."""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any

from zeta_dev.localcluster.zeta_on_node import Answer, chat


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
