"""The simulator's latency model: how long one vLLM instance of a given size takes to answer.

All times here are *model* seconds; the engine multiplies them by ``time_scale`` before it waits, so a test can
run the same model ten or a hundred times faster than life.

A request with ``P`` prompt tokens and ``N`` output tokens, while ``R`` sequences run (including itself) on an
instance that runs at most ``S`` at once:

    slowdown(R) = 1 + alpha * (R - 1) / S              batching: every running sequence shares the GPU
    TTFT        = extra + slowdown(R) * (ttft_base + prefill_per_token * P)
    per token   = slowdown(R) * tpot                   for each of the N - 1 tokens after the first
    e2e         = queue_wait + TTFT + (N - 1) * slowdown(R) * tpot

``R`` is re-read whenever a sequence starts or finishes, so a request that shares the GPU for part of its life
is slowed for that part only. Requests beyond ``S`` wait in a FIFO queue before they start (``queue_wait``).
``extra`` is the injected latency fault; it is a stall, not work, so batching does not stretch it.

Defaults by size (``size_b`` in billions of parameters), roughly an A100 serving a dense fp16 model:

    tpot              = 2 ms + 2 ms * size_b          4B: 10 ms, 7B: 16 ms, 14B: 30 ms (3x the 4B)
    ttft_base         = 10 ms + 5 ms * size_b         4B: 30 ms, 14B: 80 ms
    prefill_per_token = 25 us * size_b                4B: 0.1 ms per prompt token, 14B: 0.35 ms
    alpha             = 1.0                           a full batch makes every token twice as slow

Prompt tokens are estimated as ``len(text) / 4``, the usual rule of thumb for English under BPE tokenisers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

CHARS_PER_TOKEN = 4
"""Rule-of-thumb characters per token for English text under BPE tokenisers."""


@dataclass(frozen=True, kw_only=True)
class LatencyModel:
    """Timing parameters of one simulated instance, in model seconds."""

    ttft_base_s: float
    """Fixed cost of the first token (scheduling, one forward pass) before prompt length is counted."""
    prefill_per_token_s: float
    """Extra time to first token per prompt token."""
    tpot_s: float
    """Time per output token after the first, with the GPU to itself."""
    batch_alpha: float
    """How much a full batch slows each token: ``1 + alpha`` at ``max_seqs`` running."""
    max_seqs: int
    """Sequences that run at once (continuous batching); the rest wait."""

    def __post_init__(self) -> None:
        if min(self.ttft_base_s, self.prefill_per_token_s, self.tpot_s, self.batch_alpha) < 0:
            raise ValueError("latency parameters must not be negative")
        if self.max_seqs < 1:
            raise ValueError("max_seqs must be at least 1")

    @classmethod
    def for_size(
        cls,
        size_b: float,
        *,
        max_seqs: int,
        ttft_base_s: float | None = None,
        prefill_per_token_s: float | None = None,
        tpot_s: float | None = None,
        batch_alpha: float | None = None,
    ) -> LatencyModel:
        """The size-based defaults (see the module docstring), each overridable."""
        if size_b <= 0:
            raise ValueError("size_b must be positive")
        return cls(
            ttft_base_s=ttft_base_s if ttft_base_s is not None else 0.010 + 0.005 * size_b,
            prefill_per_token_s=prefill_per_token_s if prefill_per_token_s is not None else 25e-6 * size_b,
            tpot_s=tpot_s if tpot_s is not None else 0.002 + 0.002 * size_b,
            batch_alpha=batch_alpha if batch_alpha is not None else 1.0,
            max_seqs=max_seqs,
        )

    def slowdown(self, running: int) -> float:
        """Factor by which every running sequence is slower when ``running`` share the batch."""
        running = min(max(running, 1), self.max_seqs)
        return 1.0 + self.batch_alpha * (running - 1) / self.max_seqs

    def prefill_work_s(self, prompt_tokens: int) -> float:
        """Time to first token with the GPU to itself, without injected latency."""
        return self.ttft_base_s + self.prefill_per_token_s * max(prompt_tokens, 0)

    def predicted_e2e_s(
        self, *, prompt_tokens: int, output_tokens: int, running: int, extra_s: float = 0.0
    ) -> float:
        """End-to-end time of one request that runs with a constant ``running`` and never waits."""
        factor = self.slowdown(running)
        return extra_s + factor * (
            self.prefill_work_s(prompt_tokens) + max(output_tokens - 1, 0) * self.tpot_s
        )


def estimate_tokens(text: str) -> int:
    """Prompt tokens of ``text`` by the rule of thumb; at least one so empty prompts still cost a step."""
    return max(1, round(len(text) / CHARS_PER_TOKEN))


class OutputLengths:
    """Answer lengths for requests without ``max_tokens``: log-normal around a mean, seeded for repeatability.

    The n-th draw depends only on the seed and n, and one draw is taken per request whether it is used or
    not, so the same request order gives the same lengths.
    """

    SIGMA = 0.6
    """Spread of the log-normal: most answers within half to twice the mean, a few much longer."""

    def __init__(self, *, mean: int, seed: int) -> None:
        if mean < 1:
            raise ValueError("mean output length must be at least 1")
        self._mu = math.log(mean) - self.SIGMA**2 / 2  # so that the distribution's mean is ``mean``
        self._draws = random.Random(f"zeta-sim-output:{seed}")

    def draw(self, limit: int) -> int:
        """One answer length between 1 and ``limit``."""
        value = round(self._draws.lognormvariate(self._mu, self.SIGMA))
        return max(1, min(value, limit))
