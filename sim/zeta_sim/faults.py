"""Faults a simulated instance can be told to show, at start (flags) or at run time (``/admin/faults``).

Only the state and the deterministic error draw live here; the server applies hang (freeze the engine), crash
(exit the process) and unhealthy (``/health`` answers 503).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CRASH_EXIT_CODE = 3
"""Exit code of a process told to crash, so tests can tell a crash from a clean stop or an error."""


class Faults(BaseModel):
    """What is currently wrong with the instance; every field off means healthy."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Fraction of requests answered 500 straight away (fail fast, the way a broken engine does)."""
    extra_latency_ms: float = Field(default=0.0, ge=0.0, le=3_600_000.0)
    """Added to every request's time to first token (scaled by ``time_scale`` like every other delay)."""
    hang: bool = False
    """Requests are accepted but make no progress until cleared; ``/health`` answers 503."""
    unhealthy: bool = False
    """``/health`` answers 503 while requests are still served (a failing probe)."""
    crash: bool = False
    """The process exits at once with `CRASH_EXIT_CODE` (every replica in it goes too)."""


class FaultInjector:
    """The `current` Faults and the draw that decides which requests fail.

    The n-th request's draw depends only on the seed and n, never on the current rate or on other random
    choices, so a run with a given seed and request order fails the same requests every time.
    """

    def __init__(self, faults: Faults, *, seed: int) -> None:
        self.current = faults
        self._draws = random.Random(f"zeta-sim-errors:{seed}")

    def update(self, patch: Mapping[str, Any]) -> Faults:
        """Apply a partial update (only the keys given change); raises pydantic.ValidationError if invalid."""
        merged = {**self.current.model_dump(), **patch}
        self.current = Faults.model_validate(merged)
        return self.current

    def should_fail(self) -> bool:
        """One draw per request, taken whether or not errors are on, so the sequence stays aligned."""
        return self._draws.random() < self.current.error_rate

    @property
    def healthy(self) -> bool:
        return not (self.current.hang or self.current.unhealthy)
