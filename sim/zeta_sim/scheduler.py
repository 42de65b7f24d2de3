"""Continuous batching as a pure state machine: every call says what time it is, nothing here sleeps.

The async engine (`engine.py`) only calls `Scheduler.advance` when something is due, so one instance costs one
timer however many sequences it runs; tests drive the same code with made-up clocks and no waiting at all.
Times given to and stored by the scheduler are real (wall-clock) seconds; it converts to model seconds with
``time_scale`` (see `latency.py`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .latency import LatencyModel

_EPS = 1e-9
"""Model seconds below which two times are the same (float noise from splitting intervals)."""
_TOKEN_EPS = 1e-6
"""Tokens this close below a whole number count as produced, so a wake-up exactly on time is not wasted."""


def _no_news() -> None:
    return None


@dataclass(eq=False)
class Sequence:
    """One request inside the engine; its reader watches `tokens_ready` and `finished_at`."""

    id: int
    prompt_tokens: int
    output_tokens: int
    stream: bool
    arrived_at: float
    stall_s: float
    """Injected latency still to sit out before prefill, in model seconds."""
    prefill_left_s: float
    """Prefill work still to do, in model seconds with the GPU to itself."""
    on_news: Callable[[], None] = field(default=_no_news, repr=False)
    """Called when the reader has something new: the first token, a group of tokens, or the end."""
    decoded: float = 0.0
    started_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    announced: int = 0
    aborted: bool = False

    @property
    def tokens_ready(self) -> int:
        return min(self.output_tokens, math.floor(self.decoded + _TOKEN_EPS))

    @property
    def done(self) -> bool:
        return self.finished_at is not None


class Scheduler:
    """At most ``max_seqs`` sequences run, the rest wait first come first served; see `latency.py`."""

    def __init__(self, model: LatencyModel, *, time_scale: float, stream_interval_s: float) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.model = model
        self.time_scale = time_scale
        self.stream_interval_s = stream_interval_s
        self.frozen = False
        self._running: dict[int, Sequence] = {}
        self._waiting: deque[Sequence] = deque()
        self._waiting_count = 0  # aborted sequences stay in the deque until they reach its head
        self._last: float | None = None
        self._next_id = 0

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return self._waiting_count

    @property
    def tokens_in_flight(self) -> int:
        """Prompt and generated tokens of running sequences: what their KV cache holds."""
        return sum(s.prompt_tokens + s.tokens_ready for s in self._running.values())

    def submit(
        self,
        *,
        prompt_tokens: int,
        output_tokens: int,
        stream: bool,
        now: float,
        extra_s: float = 0.0,
        on_news: Callable[[], None] = _no_news,
    ) -> Sequence:
        """Queue a request; it starts at once if a slot is free and the engine is not frozen."""
        if output_tokens < 1:
            raise ValueError("output_tokens must be at least 1")
        self.advance(now)  # work done before this arrival ran at the old batch size
        seq = Sequence(
            id=self._next_id,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            stream=stream,
            arrived_at=now,
            stall_s=max(extra_s, 0.0),
            prefill_left_s=self.model.prefill_work_s(prompt_tokens),
            on_news=on_news,
        )
        self._next_id += 1
        self._waiting.append(seq)
        self._waiting_count += 1
        self._admit(now)
        return seq

    def abort(self, seq: Sequence, *, now: float) -> None:
        """Drop a sequence whose reader went away (client disconnect, shutdown); frees its slot."""
        if seq.done or seq.aborted:
            return
        self.advance(now)
        seq.aborted = True
        if self._running.pop(seq.id, None) is None:
            self._waiting_count -= 1
        self._admit(now)

    def freeze(self, *, now: float) -> None:
        """Stop all progress (the hang fault): nothing runs, nothing starts, arrivals wait."""
        self.advance(now)
        self.frozen = True

    def thaw(self, *, now: float) -> None:
        """Resume from where `freeze` stopped; the frozen time counts as lost, not as work."""
        self.frozen = False
        self._last = now
        self._admit(now)

    def advance(self, now: float) -> None:
        """Bring every running sequence up to ``now``, finish the ones that are done and start waiting ones."""
        last, self._last = self._last, now
        # A zero step still runs: a batch that grew at this instant shrinks the stream group, and a group that
        # became due that way must be announced now (next_event_in says 0 until it is; skipping it would spin).
        if last is None or now < last or self.frozen or not self._running:
            return
        dt = (now - last) / self.time_scale
        factor = self.model.slowdown(len(self._running))
        group = self._stream_group(factor)
        finished: list[Sequence] = []
        for seq in self._running.values():
            had_first = seq.first_token_at is not None
            self._run_for(seq, dt, factor, start=last)
            if seq.done:
                finished.append(seq)
            first_token = seq.first_token_at is not None and not had_first
            group_ready = seq.stream and seq.tokens_ready - seq.announced >= group
            if seq.done or first_token or group_ready:
                self._announce(seq)
        for seq in finished:
            del self._running[seq.id]
        if finished:
            self._admit(now)

    def next_event_in(self) -> float | None:
        """Real seconds until a reader is due news; None while frozen or idle (wait for a submit)."""
        if self.frozen or not self._running:
            return None
        factor = self.model.slowdown(len(self._running))
        per_token = self.model.tpot_s * factor
        group = self._stream_group(factor)
        soonest = math.inf
        for seq in self._running.values():
            if seq.first_token_at is None:
                until = seq.stall_s + seq.prefill_left_s * factor
                if not seq.stream:  # nobody reads the first token of a whole response: wake at its end
                    until += (seq.output_tokens - 1) * per_token
            else:
                target = seq.output_tokens
                if seq.stream:
                    target = min(target, seq.announced + group)
                until = max(target - seq.decoded, 0.0) * per_token
            soonest = min(soonest, until)
        return soonest * self.time_scale

    def _run_for(self, seq: Sequence, dt: float, factor: float, *, start: float) -> None:
        """Spend ``dt`` model seconds on ``seq``: stall, then prefill (first token), then decode."""
        used = 0.0
        if seq.first_token_at is None:
            stall = min(dt, seq.stall_s)
            seq.stall_s -= stall
            used += stall
            if seq.stall_s > _EPS:
                return
            seq.stall_s = 0.0
            need = seq.prefill_left_s * factor
            if need > dt - used + _EPS:
                seq.prefill_left_s -= (dt - used) / factor
                return
            used += need
            seq.prefill_left_s = 0.0
            seq.decoded = 1.0
            seq.first_token_at = start + used * self.time_scale
        per_token = self.model.tpot_s * factor
        need = (seq.output_tokens - seq.decoded) * per_token
        if need > dt - used + _EPS:
            seq.decoded += (dt - used) / per_token
            return
        used += need
        seq.decoded = float(seq.output_tokens)
        seq.finished_at = start + min(used, dt) * self.time_scale

    def _stream_group(self, factor: float) -> int:
        """Tokens per stream event so that one stream gets at most one event per ``stream_interval_s``."""
        token_real_s = self.model.tpot_s * factor * self.time_scale
        if token_real_s <= 0:
            return 1 << 30
        return max(1, math.ceil(self.stream_interval_s / token_real_s - _TOKEN_EPS))

    def _announce(self, seq: Sequence) -> None:
        seq.announced = seq.tokens_ready
        seq.on_news()

    def _admit(self, now: float) -> None:
        while not self.frozen and self._waiting and len(self._running) < self.model.max_seqs:
            seq = self._waiting.popleft()
            if seq.aborted:
                continue
            self._waiting_count -= 1
            seq.started_at = now
            self._running[seq.id] = seq
        while self._waiting and self._waiting[0].aborted:  # keep the deque from filling with the dead
            self._waiting.popleft()
