"""How reliable are the corpus labels? A second, blind annotation of calibration-split requests:
``python -m zeta_dev.classifier.agreement sample`` then ``... report``.

``sample`` picks requests from the calibration split only (never the held-out test split), in proportion to
each source, and writes them without labels (id and messages) for a second annotator, plus the list of ids
(committed, so the sample is on record without a second copy of the prompts). The order is a hash of the id,
so any prefix of the file is itself a spread sample: an annotation that stops early is still fair.

``report`` compares the second labels (dev/corpus/agreement/second.jsonl: one ``{"id", "task",
"complexity", "note"?}`` a line) with the corpus labels, and scores the shipped model against both on the same
requests: how far the corpus labels themselves limit what an accuracy measured on them can show.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from zeta_operator.router import model as runtime

from . import corpus, evaluate
from .corpus import Request

AGREEMENT = corpus.CORPUS / "agreement"
SECOND = AGREEMENT / "second.jsonl"
SAMPLE_IDS = AGREEMENT / "sample-ids.txt"
UNLABELLED = corpus.CORPUS.parents[1] / "build" / "agreement-sample.jsonl"
"""Under build/ (ignored by git): the prompts are in the corpus already."""
SAMPLE_SIZE = 400
SAMPLE_SOURCES = ("humaneval", "inrepo", "w1", "w2", "w3", "w5")
"""The corpus's sources when the second annotation was made: writers added later do not move the sample."""
LEVELS = ("1", "2", "3", "4", "5")


def _order(request_id: str) -> bytes:
    # A salt of its own, so the order is unrelated to the split hash (which is by group).
    return hashlib.sha256(f"agreement/{request_id}".encode()).digest()


def pick(requests: Sequence[Request], size: int = SAMPLE_SIZE) -> list[Request]:
    """``size`` calibration requests of SAMPLE_SOURCES, each source's share proportional to its calibration requests (largest
    remainders), the first by id hash within each source; returned in id-hash order."""
    pool = [r for r in corpus.select(requests, "calibration") if r.source in SAMPLE_SOURCES]
    if size > len(pool):
        raise ValueError(f"the calibration split has {len(pool)} requests, fewer than {size}")
    sources = sorted({r.source for r in pool})
    quota = {s: size * sum(r.source == s for r in pool) / len(pool) for s in sources}
    counts = {s: int(q) for s, q in quota.items()}
    for s in sorted(sources, key=lambda s: counts[s] - quota[s])[: size - sum(counts.values())]:
        counts[s] += 1
    picked = [
        r
        for s in sources
        for r in sorted((r for r in pool if r.source == s), key=lambda r: _order(r.id))[: counts[s]]
    ]
    return sorted(picked, key=lambda r: _order(r.id))


def write_sample(requests: Sequence[Request], unlabelled: Path, ids: Path) -> None:
    by_id = _raw_rows()
    unlabelled.parent.mkdir(parents=True, exist_ok=True)
    ids.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": r.id, "messages": by_id[r.id]["messages"]} for r in requests]
    unlabelled.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    ids.write_text("".join(r.id + "\n" for r in requests))


def _raw_rows(directory: Path = corpus.CORPUS) -> dict[str, dict[str, object]]:
    # Request keeps the parsed view only; the annotator should see the messages as the client sent them.
    rows = {}
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["id"]] = row
    return rows


def read_second(path: Path, requests: Sequence[Request]) -> list[tuple[Request, Request]]:
    """(corpus-labelled request, the same request with the second labels), in file order. Refuses unknown or
    repeated ids, ids outside the calibration split and invalid labels."""
    by_id = {r.id: r for r in requests}
    pairs: list[tuple[Request, Request]] = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        first = by_id.get(row.get("id"))
        if first is None or row["id"] in seen:
            raise ValueError(f"{path.name}:{n}: id {row.get('id')!r} is unknown or repeated")
        if first.split != "calibration":
            raise ValueError(f"{path.name}:{n}: {first.id} is in the {first.split} split, not calibration")
        if row.get("task") not in corpus.TASKS or row.get("complexity") not in (1, 2, 3, 4, 5):
            raise ValueError(f"{path.name}:{n}: task must be one of {corpus.TASKS} and complexity 1..5")
        seen.add(first.id)
        pairs.append((first, dataclasses.replace(first, task=row["task"], complexity=row["complexity"])))
    return pairs


def noted(path: Path) -> set[str]:
    """Ids the second annotator marked as a hard case (a note written while labelling, before any comparison)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["id"] for row in rows if row.get("note")}


def kappa(pairs: Sequence[tuple[str, str]]) -> float:
    """Cohen's kappa: agreement beyond what two annotators with these label frequencies reach by chance."""
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    labels = {a for a, _ in pairs} | {b for _, b in pairs}
    chance = sum((sum(a == k for a, _ in pairs) / n) * (sum(b == k for _, b in pairs) / n) for k in labels)
    return 1.0 if chance == 1 else (observed - chance) / (1 - chance)


def share(pairs: Sequence[tuple[Request, Request]], same: Callable[[Request, Request], bool]) -> float:
    return sum(same(a, b) for a, b in pairs) / len(pairs)


def _task(a: Request, b: Request) -> bool:
    return a.task == b.task


def _tier(a: Request, b: Request) -> bool:
    return a.simple == b.simple


def _exact(a: Request, b: Request) -> bool:
    return a.complexity == b.complexity


def _within_one(a: Request, b: Request) -> bool:
    return abs(a.complexity - b.complexity) <= 1


def agreement_row(label: str, pairs: Sequence[tuple[Request, Request]]) -> str:
    task_kappa = kappa([(a.task, b.task) for a, b in pairs])
    tier_kappa = kappa([(evaluate.tier(a.complexity), evaluate.tier(b.complexity)) for a, b in pairs])
    cells = [
        str(len(pairs)),
        evaluate.pct(share(pairs, _task)),
        f"{task_kappa:.2f}",
        evaluate.pct(share(pairs, _tier)),
        f"{tier_kappa:.2f}",
        evaluate.pct(share(pairs, _exact)),
        evaluate.pct(share(pairs, _within_one)),
    ]
    return f"| {label} | " + " | ".join(cells) + " |"


def direction(pairs: Sequence[tuple[Request, Request]]) -> str:
    lower = sum(b.complexity < a.complexity for a, b in pairs)
    higher = sum(b.complexity > a.complexity for a, b in pairs)
    mean = sum(b.complexity - a.complexity for a, b in pairs) / len(pairs)
    return (
        f"Second complexity below the corpus label on {lower} requests, above it on {higher} (mean difference "
        f"{mean:+.2f})."
    )


def model_rows(pairs: Sequence[tuple[Request, Request]]) -> list[str]:
    predict = evaluate.learned(runtime.shipped())  # the weights the router loads
    outcomes = [predict(a) for a, _ in pairs]
    everything = range(len(pairs))
    agreed = [i for i in everything if _task(*pairs[i]) and _tier(*pairs[i])]
    against = {
        "corpus labels": [(i, pairs[i][0]) for i in everything],
        "second labels": [(i, pairs[i][1]) for i in everything],
        "where both annotations agree (task and tier)": [(i, pairs[i][0]) for i in agreed],
    }
    lines = ["| scored against | requests | task type | tier | both |", "|---|---:|---:|---:|---:|"]
    for name, truth in against.items():
        s = evaluate.score([r for _, r in truth], [outcomes[i] for i, _ in truth], gate=None)
        lines.append(
            f"| {name} | {s.n} | {evaluate.pct(s.task)} | {evaluate.pct(s.tier)} | {evaluate.pct(s.both)} |"
        )
    return lines


def report(pairs: Sequence[tuple[Request, Request]], sample_size: int, hard: Collection[str] = ()) -> str:
    header = "| requests | n | task agreement | task kappa | tier agreement | tier kappa | complexity exact | within one |"
    by_source = [
        agreement_row(s, [p for p in pairs if p[0].source == s]) for s in sorted({a.source for a, _ in pairs})
    ]
    return "\n".join(
        [
            f"### Agreement: second annotation vs corpus labels ({len(pairs)} of the {sample_size} sampled "
            "calibration requests)",
            "",
            header,
            "|---|" + "---:|" * 7,
            agreement_row("all", pairs),
            *by_source,
            agreement_row("flagged hard by the second annotator", [p for p in pairs if p[0].id in hard]),
            agreement_row("not flagged", [p for p in pairs if p[0].id not in hard]),
            "",
            direction(pairs),
            "",
            "Kappa is Cohen's: agreement beyond chance (1 = perfect, 0 = chance). In the matrices below the rows "
            'are the corpus labels and the columns the second labels; "recall" is the share of a corpus label the '
            'second annotator gave too, "precision" the share of a second label the corpus has too.',
            "",
            "#### Task type",
            "",
            *evaluate.confusion(
                corpus.TASKS, [(a.task, b.task) for a, b in pairs], header="corpus \\ second"
            ),
            "",
            "#### Complexity tier",
            "",
            *evaluate.confusion(
                evaluate.TIERS,
                [(evaluate.tier(a.complexity), evaluate.tier(b.complexity)) for a, b in pairs],
                header="corpus \\ second",
            ),
            "",
            "#### Complexity level",
            "",
            *evaluate.confusion(
                LEVELS, [(str(a.complexity), str(b.complexity)) for a, b in pairs], header="corpus \\ second"
            ),
            "",
            "### The shipped model on the same requests",
            "",
            "The weights the router ships (`zeta_operator/router/classifier.json.gz`), trained on the train split. "
            "The calibration split (these requests among others) set only its two temperatures and the default "
            "offloadConfidence: the task argmax does not depend on them, the tier only where a temperature moves "
            "P(simple) across 0.5. Nearly held-out, then; the held-out figures are in docs/classifier.md.",
            "",
            *model_rows(pairs),
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.agreement", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="write the unlabelled calibration sample and its ids")
    sample.add_argument("--out", type=Path, default=UNLABELLED)
    sample.add_argument("--ids", type=Path, default=SAMPLE_IDS)
    scored = commands.add_parser("report", help="markdown: second labels vs corpus labels, and the model")
    scored.add_argument("--second", type=Path, default=SECOND)
    scored.add_argument("--ids", type=Path, default=SAMPLE_IDS)
    args = parser.parse_args(argv)
    requests = corpus.load()
    if args.command == "sample":
        picked = pick(requests)
        write_sample(picked, args.out, args.ids)
        print(f"wrote {len(picked)} unlabelled requests to {args.out} and their ids to {args.ids}")
    else:
        sample_size = len(args.ids.read_text().split())
        print(report(read_second(args.second, requests), sample_size, noted(args.second)))


if __name__ == "__main__":
    main()
