"""Does a retrained weights file reproduce the shipped one? The same file up to the rounding of the machine's
numerical libraries.

Training is deterministic on one machine but not across processors: OpenBLAS and numpy choose SIMD kernels per
CPU, their sums round differently, and the solver's optimum moves in its fourth significant digit. Measured on
2026-12-06: the shipped file, trained on an AMD EPYC, against a retraining of the same corpus and code on an
Intel Xeon (AVX-512): every setting equal (corpus fingerprint, scales, temperatures, offloadConfidence); weights
at most 9.8e-4 apart (one int16 step at the coarsest scale); biases at most 6.6e-3 (complexity level 5's, the
rarest level's intercept, in the flattest valley); task and complexity probabilities of all 78,590 corpus
requests at most 4.1e-4 apart. Byte equality failed there, and in CI on another machine.

So the check is: every entry that is not a fitted number equal (a changed corpus, feature set, scale, temperature
or gate shows here), the fitted numbers within `WEIGHT_ATOL` and `BIAS_ATOL`, and what the model decides, every
corpus request's probabilities, within `PROBABILITY_ATOL`. A changed hyper-parameter moves them by more: fitted
on a 2,381-request slice of the train split, a 10% larger C moved the task head's weights by up to 0.31 and its
probabilities by 1.3e-2, the complexity head's by 0.067 and 3.1e-2; a 2% larger C the probabilities by 2.7e-3
and 6.5e-3.

    python -m zeta_dev.classifier.train --out /tmp/retrained.json.gz
    python -m zeta_dev.classifier.reproduce /tmp/retrained.json.gz   # exit 1 if it does not reproduce
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zeta_operator.router import features, model

from . import corpus
from .corpus import Request

WEIGHT_ATOL = 4e-3
"""Four times the largest weight difference measured across two CPUs (9.8e-4)."""
BIAS_ATOL = 2e-2
"""Three times the largest bias difference measured across two CPUs (6.6e-3)."""
PROBABILITY_ATOL = 2e-3
"""Five times the largest measured across two CPUs (4.1e-4)."""
FITTED = ("bias", "text", "structure", "meaning")
"""The entries that hold fitted numbers (the rest are settings, compared exactly)."""


@dataclass(frozen=True)
class Comparison:
    settings: tuple[str, ...]
    """Entries (or parts of the fitted ones' layout) that differ: names only, the values can be megabytes."""
    largest: dict[str, float]
    """Per block of fitted numbers, and ``probability``: the largest absolute difference."""

    def failures(self) -> list[str]:
        if self.settings:
            return [f"settings differ: {', '.join(self.settings)}"]
        return [
            f"{name} differ by up to {diff:.2g} (allowed {allowed:.2g})"
            for name, diff in self.largest.items()
            if diff > (allowed := tolerance(name))
        ]

    def summary(self) -> str:
        return ", ".join(f"{name} {diff:.2g}" for name, diff in self.largest.items())


def tolerance(name: str) -> float:
    return {"bias": BIAS_ATOL, "probability": PROBABILITY_ATOL}.get(name, WEIGHT_ATOL)


def compare(rebuilt: dict[str, Any], shipped: dict[str, Any], requests: Sequence[Request]) -> Comparison:
    """``rebuilt`` against ``shipped`` (both weights files' parsed JSON), probabilities over ``requests``."""
    mine, theirs = layout(rebuilt), layout(shipped)
    differ = tuple(sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)))
    if differ:  # fitted numbers on different scales or layouts are not comparable
        return Comparison(differ, {})
    largest = {
        name: float(np.abs(a - b).max(initial=0.0))
        for (name, a), b in zip(fitted(rebuilt).items(), fitted(shipped).values(), strict=True)
    }
    largest["probability"] = float(
        np.abs(probabilities(rebuilt, requests) - probabilities(shipped, requests)).max()
    )
    return Comparison((), largest)


def layout(data: dict[str, Any]) -> dict[str, Any]:
    """Everything but the fitted numbers: the settings, and the scales and names the numbers are stored under."""
    out = {k: v for k, v in data.items() if k not in FITTED}
    out["bias"] = len(data["bias"])
    out["structure"] = sorted(set(data["structure"]) - set(features.all_structure_names()))  # unknown names
    out["text"] = len(data["text"])
    if "meaning" in data:
        out["meaning"] = {
            k: v if k == "words" else {"scale": v["scale"], "rows": len(v["rows"])}
            for k, v in data["meaning"].items()
        }
    return out


def fitted(data: dict[str, Any]) -> dict[str, np.ndarray]:
    """The fitted numbers by block, as the floats they stand for (int16 over the output's scale)."""
    scale = np.array(data["scale"])
    zero = [0] * len(scale)
    blocks = {
        "bias": np.array(data["bias"]),
        "text": _int16(data["text"]).reshape(-1, len(scale)) / scale,  # bucket-major: a row of outputs each
        # every structure feature of the (equal) feature version: the file leaves out the rows that round to 0
        "structure": np.array([data["structure"].get(k, zero) for k in features.all_structure_names()])
        / scale,
    }
    for name, block in data.get("meaning", {}).items():
        if name != "words":
            own = np.array(block["scale"])
            blocks[f"meaning.{name}"] = _int16(block["rows"]).reshape(-1, len(own)) / own
    return blocks


def _int16(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<i2").astype(float)


def probabilities(data: dict[str, Any], requests: Sequence[Request]) -> np.ndarray:
    """Each request's task probabilities, then its complexity levels', as the router computes them."""
    runtime = model.LearnedModel(data, source="comparison")
    predictions = (runtime.predict(r.view, earlier=False) for r in requests)
    return np.array([[*p.tasks.values(), *p.complexity] for p in predictions])


def read(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    return loaded


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.reproduce", description=__doc__)
    parser.add_argument(
        "retrained", type=Path, help="a file `python -m zeta_dev.classifier.train --out` wrote"
    )
    parser.add_argument("--shipped", type=Path, default=model.WEIGHTS_FILE)
    args = parser.parse_args(argv)
    result = compare(read(args.retrained), read(args.shipped), corpus.load())
    print(f"largest differences: {result.summary() or 'none compared'}")
    failures = result.failures()
    for line in failures:
        print(f"does not reproduce: {line}", file=sys.stderr)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
