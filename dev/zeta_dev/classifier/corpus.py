"""The labelled request corpus (dev/corpus/*.jsonl) and its splits.

Splits are made by ``group`` (requests that share a seed share a group), from a hash of the group id, so a
request's siblings are always in the same split and the assignment never depends on file order or on which
other requests exist: adding requests never moves an old one to another split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from zeta_operator.router.payload import PromptView, parse_request

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
TASKS = ("chat", "code", "reasoning", "summarize")
Split = Literal["train", "calibration", "test"]
TRAIN_PERCENT = 70
CALIBRATION_PERCENT = 15
"""The rest (15 %) is the held-out test split: only the evaluation command reads it, and only to report."""


@dataclass(frozen=True)
class Request:
    id: str
    group: str
    source: str
    lang: str
    task: str
    complexity: int
    view: PromptView

    @property
    def simple(self) -> bool:
        return self.complexity <= 2

    @property
    def split(self) -> Split:
        return split_of(self.group)


def split_of(group: str) -> Split:
    point = int.from_bytes(hashlib.sha256(group.encode()).digest()[:4], "big") % 100
    if point < TRAIN_PERCENT:
        return "train"
    if point < TRAIN_PERCENT + CALIBRATION_PERCENT:
        return "calibration"
    return "test"


def load(directory: Path = CORPUS) -> list[Request]:
    """Every labelled request, files in name order, each as the router would see it."""
    requests: list[Request] = []
    for path in sorted(directory.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                requests.append(_request(json.loads(line), where=f"{path.name}:{n}"))
    ids = [r.id for r in requests]
    if len(set(ids)) != len(ids):
        raise ValueError("request ids must be unique across the corpus")
    return requests


def _request(row: dict[str, Any], *, where: str) -> Request:
    if row.get("task") not in TASKS or row.get("complexity") not in (1, 2, 3, 4, 5):
        raise ValueError(f"{where}: task must be one of {TASKS} and complexity 1..5")
    body = json.dumps({"model": "corpus", "messages": row["messages"]}).encode()
    return Request(
        id=row["id"],
        group=row["group"],
        source=row["source"],
        lang=row.get("lang", "en"),
        task=row["task"],
        complexity=row["complexity"],
        view=parse_request(body, "chat").prompt,
    )


def select(requests: Iterable[Request], *splits: Split) -> list[Request]:
    return [r for r in requests if r.split in splits]


def fingerprint(requests: Iterable[Request]) -> str:
    """sha256 over the ids, labels and prompts: which corpus a weights file was trained on."""
    h = hashlib.sha256()
    for r in requests:
        h.update(f"{r.id}\0{r.task}\0{r.complexity}\0{r.view.last_user}\0".encode())
    return h.hexdigest()[:16]


def counts_table(requests: Sequence[Request]) -> str:
    """Markdown: requests per source by task type, tier, split and the share in other languages."""
    lines = [
        "| source | requests | groups | chat | code | reasoning | summarize | simple (1-2) | complex (3-5) "
        "| not English | train | calibration | test |",
        "|---" + "|---:" * 12 + "|",
    ]
    sources = sorted({r.source for r in requests}, key=source_order)
    for source in [*sources, "all"]:
        rows = [r for r in requests if source in ("all", r.source)]
        cells = [
            len(rows),
            len({r.group for r in rows}),
            *(sum(r.task == t for r in rows) for t in TASKS),
            sum(r.simple for r in rows),
            sum(not r.simple for r in rows),
            sum(r.lang != "en" for r in rows),
            *(sum(r.split == s for r in rows) for s in ("train", "calibration", "test")),
        ]
        lines.append(f"| {source} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def source_order(source: str) -> tuple[str, int]:
    """Sources in reading order: w2 before w10."""
    name = source.rstrip("0123456789")
    return name, int(source[len(name) :] or 0)


if __name__ == "__main__":
    print(counts_table(load()))
