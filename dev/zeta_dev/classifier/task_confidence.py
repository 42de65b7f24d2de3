"""What each `spec.classifier.taskConfidence` would catch, on the calibration split only:
``python -m zeta_dev.classifier.task_confidence``.

The router keeps a request on backends that serve every task type it plausibly is (`classify.plausible_tasks`:
the most likely task types until they hold taskConfidence of the probability). For each threshold, through the
router with the sample policy (its keyword rules, then the shipped learned model), this prints how many
calibration requests would still have their true task type outside the plausible set (those a backend without
their task type may answer) and how many would carry more than one plausible task type (those the filter
restricts, the cost). Requests whose task type a rule decided are certain: no threshold changes them, so they
are counted apart. The test split is never read here.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from zeta_operator.router import model as runtime
from zeta_operator.router.classify import Classification, plausible_tasks

from . import corpus, evaluate

GRID = (0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)


@dataclass(frozen=True)
class Row:
    threshold: float
    outside: int
    """Requests whose task type came from the model and whose true task type is not plausible."""
    restricted: int
    """Requests whose task type came from the model with more than one plausible task type."""


def rows(classified: Sequence[tuple[str, Classification]], grid: Sequence[float] = GRID) -> list[Row]:
    """``classified``: (true task type, the router's classification) of requests whose task type the model
    decided (the others have no task probabilities: certain)."""
    out = []
    for t in grid:
        plausible = [(task, plausible_tasks(c, confidence=t)) for task, c in classified]
        out.append(
            Row(
                t,
                outside=sum(task not in p for task, p in plausible),
                restricted=sum(len(p) > 1 for _, p in plausible),
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m zeta_dev.classifier.task_confidence", description=__doc__
    )
    parser.parse_args(argv)
    requests = corpus.select(corpus.load(), "calibration")
    classifier = evaluate.sample_classifier(runtime.shipped())
    classified = [(r.task, classifier.classify({}, "any", r.view)) for r in requests]
    by_model = [(task, c) for task, c in classified if c.task_probabilities]
    certain_wrong = sum(1 for task, c in classified if not c.task_probabilities and c.task_type != task)
    n = len(by_model)
    print(
        f"Calibration split: {len(requests)} requests; the model decided the task type of {n}; the sample "
        f"policy's rules (certain) decided {len(requests) - n}, {certain_wrong} of them wrongly.\n"
    )
    print(
        "| taskConfidence | true task type not plausible | requests with more than one plausible task type |"
    )
    print("|---|---:|---:|")
    for row in rows(by_model):
        print(
            f"| {row.threshold:g} | {row.outside} ({row.outside / n:.1%}) "
            f"| {row.restricted} ({row.restricted / n:.1%}) |"
        )


if __name__ == "__main__":
    main()
