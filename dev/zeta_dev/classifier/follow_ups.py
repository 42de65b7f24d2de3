"""Follow-ups and the spill gate: complex follow-ups let through, and simple ones kept, by each gate.

A short follow-up ("now prove it", "and make it thread safe") carries its difficulty in the ask it continues,
which the model reads only as words. The router's gate (`model.Prediction.spill_simple`) therefore lets a
follow-up spill only when the ask it follows reaches offloadConfidence too. This prints, for the requests
whose last user turn follows an earlier one, how many complex ones each gate lets spill and how many simple
ones it still lets go: the last turn's P(simple) alone, the earlier ask merely estimated simple
(P(simple) >= 0.5), and the router's rule.

    python -m zeta_dev.classifier.follow_ups                       # the calibration split
    python -m zeta_dev.classifier.follow_ups --corpus DIR --weights W  # every request in DIR's *.jsonl
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from zeta_operator.router import model as runtime
from zeta_operator.router.model import Prediction

from . import corpus
from .corpus import Request

SHORT_CHARS = 100
"""The length buckets every table of the corpus uses for the last user turn."""

Gate = Callable[[Prediction, float], bool]
GATES: dict[str, Gate] = {
    "last turn only": lambda p, t: p.simple >= t,
    "and the earlier ask estimated simple": lambda p, t: (
        p.simple >= t and p.earlier is not None and p.earlier[runtime.SIMPLE_MAX - 1] >= 0.5
    ),
    "and the earlier ask as sure (the router)": lambda p, t: p.spill_simple >= t,
}


def table(requests: Sequence[Request], m: runtime.LearnedModel) -> list[str]:
    t = m.offload_confidence
    out = [
        f"Follow-ups (a user turn before the last one), gate at offloadConfidence {t}:",
        "",
        "| last user turn | gate | complex | complex spilled | simple | simple allowed to spill |",
        "|---|---|---:|---:|---:|---:|",
    ]
    follow_ups = [(r, m.predict(r.view)) for r in requests if r.view.earlier is not None]
    for label, short in ((f"under {SHORT_CHARS} characters", True), (f"{SHORT_CHARS} and over", False)):
        rows = [(r, p) for r, p in follow_ups if (r.view.last_user_chars < SHORT_CHARS) == short]
        complex_ = [p for r, p in rows if not r.simple]
        simple = [p for r, p in rows if r.simple]
        for name, gate in GATES.items():
            c = sum(gate(p, t) for p in complex_)
            s = sum(gate(p, t) for p in simple)
            out.append(
                f"| {label} | {name} | {len(complex_)} | {c} ({c / max(1, len(complex_)):.1%}) | "
                f"{len(simple)} | {s} ({s / max(1, len(simple)):.1%}) |"
            )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, help="score every request of this directory instead")
    parser.add_argument("--weights", type=Path, default=runtime.WEIGHTS_FILE)
    args = parser.parse_args(argv)
    m = runtime.load(args.weights)
    requests = corpus.load(args.corpus) if args.corpus else corpus.select(corpus.load(), "calibration")
    print("\n".join(table(requests, m)))


if __name__ == "__main__":
    main()
