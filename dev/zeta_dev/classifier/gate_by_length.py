"""Would a spill gate per length of the last user turn beat the one offloadConfidence? Measured: no.

Short asks are where the complex requests that pass the gate are (at the shipped 0.95, 2.3% of the calibration
split's complex asks under 100 characters, 0.1% of the longer ones), so a stricter threshold for short asks
looked like the next step. This compares three gates beside the shipped default, each chosen on the calibration
split with the shipped weights (P(simple) as the router's gate reads it, `model.Prediction.spill_simple`):

- **one threshold**: the lowest grid value at which the evidence rule (`train.allowed_past_gate`) holds for all
  complex requests, as `train.calibrate` chooses the default (there from P(simple) of the last turn alone);
- **a threshold per length, each by the evidence rule**: the same rule within each length bucket (each bucket's
  complex requests must show the 1% on their own, with fewer of them as evidence);
- **a threshold per length under one allowance**: the pair that lets the most simple requests spill while no more
  complex requests pass, in all, than the evidence rule allows the whole split (the efficient split of the leak).

and counts each on the split named by ``--count-on`` (the held-out test split only to report, never to choose).

    python -m zeta_dev.classifier.gate_by_length                   # chosen and counted on the calibration split
    python -m zeta_dev.classifier.gate_by_length --count-on test   # chosen there, counted on the held-out split
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zeta_operator.router import model as runtime
from zeta_operator.router.offline import OFFLOAD_GRID

from . import corpus, follow_ups, train
from .corpus import Split

BOUNDARIES = (follow_ups.SHORT_CHARS,)
"""Last-user-turn lengths (characters) at which a new bucket starts: short asks and the rest."""
PAIR_GRID = (*(t for t in OFFLOAD_GRID if t >= 0.8), 0.993, 0.996, 0.999)
"""Thresholds the pair search tries (above the single grid's 0.99: short asks might need more)."""


@dataclass(frozen=True, slots=True)
class Scored:
    bucket: int
    p_simple: float
    simple: bool


def bucket_of(chars: int, boundaries: Sequence[int] = BOUNDARIES) -> int:
    return sum(chars >= b for b in boundaries)


def per_bucket(scored: Sequence[Scored], buckets: int) -> tuple[float, ...]:
    """Each bucket's threshold by the evidence rule on its own requests."""
    return tuple(
        train.offload_confidence(
            [s.p_simple for s in scored if s.bucket == b], [s.simple for s in scored if s.bucket == b]
        )
        for b in range(buckets)
    )


def under_one_allowance(
    scored: Sequence[Scored], buckets: int, grid: Sequence[float] = PAIR_GRID
) -> tuple[float, ...]:
    """The thresholds (one per bucket, from ``grid``) that let the most simple requests pass while at most
    `train.allowed_past_gate` of all the complex ones do (ties: the first in grid order, i.e. the lowest)."""
    allowance = train.allowed_past_gate(sum(not s.simple for s in scored))
    best: tuple[int, tuple[float, ...]] | None = None
    for combo in itertools.product(grid, repeat=buckets):
        passed = [s for s in scored if s.p_simple >= combo[s.bucket] - 1e-12]
        if sum(not s.simple for s in passed) > allowance:
            continue
        spilled = sum(s.simple for s in passed)
        if best is None or spilled > best[0]:
            best = (spilled, combo)
    return best[1] if best else tuple(grid[-1] for _ in range(buckets))


def counts(scored: Sequence[Scored], thresholds: Sequence[float]) -> list[tuple[int, int, int, int]]:
    """Per bucket, then in all: (complex, complex past the gate, simple, simple allowed to spill)."""
    rows = []
    for b in [*range(len(thresholds)), None]:
        mine = [s for s in scored if b is None or s.bucket == b]
        past = [s for s in mine if s.p_simple >= thresholds[s.bucket] - 1e-12]
        rows.append(
            (
                sum(not s.simple for s in mine),
                sum(not s.simple for s in past),
                sum(s.simple for s in mine),
                sum(s.simple for s in past),
            )
        )
    return rows


def table(chosen_on: Sequence[Scored], counted_on: Sequence[Scored], split: str, shipped: float) -> list[str]:
    buckets = len(BOUNDARIES) + 1
    single = train.offload_confidence([s.p_simple for s in chosen_on], [s.simple for s in chosen_on])
    gates = {
        "the shipped default": (shipped,) * buckets,
        "one threshold": (single,) * buckets,
        "per length, each by the evidence rule": per_bucket(chosen_on, buckets),
        "per length, under one allowance": under_one_allowance(chosen_on, buckets),
    }
    names = [f"under {BOUNDARIES[0]} characters"] + [f"{b} and over" for b in BOUNDARIES]
    out = [
        f"Chosen on the calibration split, counted on the {split} split (complex past the gate; simple allowed "
        "to spill):",
        "",
        "| gate | thresholds | " + " | ".join(names) + " | in all |",
        "|---|---|" + "---|" * (buckets + 1),
    ]
    for name, thresholds in gates.items():
        cells = [
            f"{c_past}/{c} ({c_past / max(1, c):.1%}); {s_past / max(1, s):.1%}"
            for c, c_past, s, s_past in counts(counted_on, thresholds)
        ]
        out.append(f"| {name} | {' / '.join(f'{t:g}' for t in thresholds)} | " + " | ".join(cells) + " |")
    return out


def scored(requests: Sequence[corpus.Request], m: runtime.LearnedModel) -> list[Scored]:
    return [
        Scored(bucket_of(r.view.last_user_chars), m.predict(r.view).spill_simple, r.simple) for r in requests
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count-on", choices=["calibration", "test"], default="calibration")
    parser.add_argument("--weights", type=Path, default=runtime.WEIGHTS_FILE)
    args = parser.parse_args(argv)
    m = runtime.load(args.weights)
    requests = corpus.load()
    count_split: Split = args.count_on
    calibration = scored(corpus.select(requests, "calibration"), m)
    counted = calibration if count_split == "calibration" else scored(corpus.select(requests, count_split), m)
    print("\n".join(table(calibration, counted, count_split, m.offload_confidence)))


if __name__ == "__main__":
    main()
