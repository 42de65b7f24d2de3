"""The asyncio side of the engine: one task per instance wakes only when a `Scheduler` event is due.

Handlers never sleep per token. They submit a sequence with a callback that sets their own `asyncio.Event`, and
the engine task calls `Scheduler.advance` when the next first token, stream group or completion is due (or
when an arrival or abort changes the batch). Thousands of waiting requests therefore cost no timers at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from .scheduler import Scheduler, Sequence

MIN_TICK_S = 0.005
"""Shortest sleep of the engine task: bounds its wake-ups to 200 a second however many streams interleave."""


class Engine:
    """Drives a `Scheduler` in real time; `run` is the engine task, the rest is called from handlers."""

    def __init__(self, scheduler: Scheduler, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Advance whenever something is due; runs until cancelled."""
        while True:
            self.scheduler.advance(self.clock())
            delay = self.scheduler.next_event_in()
            self._wake.clear()
            if delay is None:
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, MIN_TICK_S)):
                    await self._wake.wait()

    def submit(self, *, prompt_tokens: int, output_tokens: int, stream: bool, extra_s: float) -> Generation:
        news = asyncio.Event()
        seq = self.scheduler.submit(
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            stream=stream,
            extra_s=extra_s,
            now=self.clock(),
            on_news=news.set,
        )
        self._wake.set()  # the batch changed: the next event time did too
        return Generation(self, seq, news)

    def abort(self, seq: Sequence) -> None:
        self.scheduler.abort(seq, now=self.clock())
        self._wake.set()

    def set_frozen(self, frozen: bool) -> None:
        """Hang (True) or resume (False) every sequence, running or waiting."""
        if frozen and not self.scheduler.frozen:
            self.scheduler.freeze(now=self.clock())
        elif not frozen and self.scheduler.frozen:
            self.scheduler.thaw(now=self.clock())
        self._wake.set()


class Generation:
    """A handler's handle on its sequence: wait for news, and abort if the handler leaves early."""

    def __init__(self, engine: Engine, seq: Sequence, news: asyncio.Event) -> None:
        self.engine = engine
        self.seq = seq
        self._news = news

    async def progress(self) -> AsyncIterator[int]:
        """Yield the number of tokens ready whenever it grows; ends once the sequence is done."""
        sent = 0
        while True:
            done = self.seq.done  # read first: once done, tokens_ready is final
            ready = self.seq.tokens_ready
            if ready > sent:
                sent = ready
                yield ready
            if done:
                return
            await self._news.wait()
            self._news.clear()

    async def finished(self) -> None:
        async for _ in self.progress():
            pass

    def release(self) -> None:
        """Abort the sequence unless it finished (call in ``finally``)."""
        if not self.seq.done:
            self.engine.abort(self.seq)
