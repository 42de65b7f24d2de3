"""The prompts the routing benchmark sends: held-out labelled requests, picked by their true class.

Every request carries the text of a real labelled prompt and no class headers, so every strategy classifies it
through the router's own classifier; the score uses the prompt's *true* labels (task type, complexity 1-5).

Where the prompts come from (`load_heldout_prompts`, the one place to change):

- the labelled corpus ``dev/corpus/*.jsonl`` (fields ``id, group, source, lang, messages, task, complexity``),
  or the directory named by ``--corpus`` / ``ZETA_BENCH_CORPUS``; only its **held-out split**, which no
  classifier tuning looks at. The split is by a hash of ``group``: `zeta_dev.classifier.corpus.split_of` when
  that module exists (the learned classifier's own split), else `interim_split_of`, the same rule written out
  here until then;
- without a corpus: ``tests/router/labelled_prompts.jsonl`` (77 prompts the keyword classifier was fitted to, so
  its figures there flatter it), each its own group, through the same split.

A prompt belongs to a benchmark class when the policy's class of its true task type holds its true complexity
(chat 4 belongs to no class of the sample policy and is not sent). A class with no held-out prompt is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from zeta_operator.api.policy import RoutingPolicySpec

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "dev" / "corpus"
IN_REPO = REPO / "tests" / "router" / "labelled_prompts.jsonl"
HELDOUT_FROM_PERCENT = 85
"""Interim split: a group whose hash point (0-99) is at least this is held out (the last 15%)."""
CHAT_TEMPLATE_TOKENS_PER_MESSAGE = 4
"""As the simulator counts a chat request (zeta_sim.protocol), so the DES costs what real mode costs."""


@dataclass(frozen=True)
class Prompt:
    id: str
    group: str
    task: str
    """True task type."""
    complexity: int
    """True complexity 1-5."""
    messages: tuple[Mapping[str, str], ...]
    tokens: int
    """Prompt tokens as the simulated engine counts them."""

    def body(self, *, max_tokens: int, model: str = "zeta") -> dict[str, Any]:
        return {"model": model, "messages": [dict(m) for m in self.messages], "max_tokens": max_tokens}

    def raw(self, *, max_tokens: int) -> bytes:
        return json.dumps(self.body(max_tokens=max_tokens)).encode()


def interim_split_of(group: str) -> str:
    """train / calibration / test by a hash of the group (70 / 15 / 15), the classifier branch's rule."""
    point = int.from_bytes(hashlib.sha256(group.encode()).digest()[:4], "big") % 100
    if point < 70:
        return "train"
    return "calibration" if point < HELDOUT_FROM_PERCENT else "test"


def split_function() -> tuple[Callable[[str], str], str]:
    """The corpus's own split when it ships (zeta_dev.classifier), else the interim one; and which it is."""
    try:
        from zeta_dev.classifier.corpus import split_of  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return interim_split_of, "interim_split_of (bench/routing/prompts.py)"
    return split_of, "zeta_dev.classifier.corpus.split_of"


def corpus_dir(override: Path | None = None) -> Path | None:
    for candidate in (override, os.environ.get("ZETA_BENCH_CORPUS"), CORPUS):
        if candidate and Path(candidate).is_dir() and any(Path(candidate).glob("*.jsonl")):
            return Path(candidate)
    return None


@dataclass(frozen=True)
class PromptSet:
    prompts: tuple[Prompt, ...]
    source: str
    """Where they came from and which split (for the report)."""


def load_heldout_prompts(
    corpus: Path | None = None, split_to_use: Literal["test", "calibration", "all"] = "test"
) -> PromptSet:
    """Every held-out labelled prompt (the one function the benchmark takes its prompts through), or every
    calibration prompt with ``split_to_use="calibration"``: for choosing a setting such as offloadConfidence by
    its routing result without ever looking at the held-out test split. Never the train split: the classifier
    learned from it, so routing on it would flatter every strategy that classifies. ``"all"``: every prompt of
    a directory nothing was trained on (the public prompts of ``python -m zeta_dev.classifier.public``, its
    ``build/public``); refused for the training corpus, whose train split the classifier learned."""
    split, split_name = split_function()
    directory = corpus_dir(corpus)
    if split_to_use == "all" and (directory is None or directory.resolve() == CORPUS.resolve()):
        raise SystemExit("--split all: only for a --corpus nothing was trained on (not dev/corpus)")
    rows: list[dict[str, Any]] = []
    if directory is not None:
        for path in sorted(directory.glob("*.jsonl")):
            rows += [
                json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        where = f"{directory} ({len(rows)} labelled requests)"
    else:
        for n, line in enumerate(IN_REPO.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                rows.append({**row, "id": f"inrepo-{n:03d}", "group": f"inrepo-g{n:03d}"})
        where = f"{IN_REPO.relative_to(REPO)} ({len(rows)} labelled prompts; the keyword classifier was fitted to them)"
    held = [_prompt(row) for row in rows if split_to_use == "all" or split(row["group"]) == split_to_use]
    digest = hashlib.sha256("\n".join(p.id for p in held).encode()).hexdigest()[:12]
    if split_to_use == "all":
        which = f"all {len(held)} prompts of {where} (never trained on)"
    else:
        kind = "held-out" if split_to_use == "test" else split_to_use
        which = f"{len(held)} {kind} prompts of {where}, split by {split_name}"
    return PromptSet(tuple(held), f"{which}, ids sha256 {digest}")


def _prompt(row: Mapping[str, Any]) -> Prompt:
    if "messages" in row:
        messages = tuple({"role": m["role"], "content": m["content"]} for m in row["messages"])
    else:  # the in-repo file's shorthand: a prompt, optionally with a repeated document after it
        document = row.get("document", "") * row.get("repeat", 0)
        messages = ({"role": "user", "content": row["prompt"] + ("\n\n" + document if document else "")},)
    text = "".join(m["content"] for m in messages)
    tokens = max(1, round(len(text) / 4)) + CHAT_TEMPLATE_TOKENS_PER_MESSAGE * len(messages)
    return Prompt(row["id"], row["group"], row["task"], int(row["complexity"]), messages, tokens)


def true_class(policy: RoutingPolicySpec, task: str, complexity: int) -> str | None:
    """The policy's class of this task type whose range holds the complexity (None: no such class)."""
    for c in policy.classes:
        if c.task_type == task and c.complexity.min <= complexity <= c.complexity.max:
            return c.name
    return None


def pools(policy: RoutingPolicySpec, prompts: Sequence[Prompt]) -> dict[str, list[Prompt]]:
    """class -> its held-out prompts (in id order); SystemExit naming the classes that have none."""
    by_class: dict[str, list[Prompt]] = {c.name: [] for c in policy.classes}
    for p in sorted(prompts, key=lambda p: p.id):
        name = true_class(policy, p.task, p.complexity)
        if name is not None:
            by_class[name].append(p)
    empty = [c for c, ps in by_class.items() if not ps]
    if empty:
        raise SystemExit(f"no held-out prompt of class {', '.join(empty)}: give a larger corpus (--corpus)")
    return by_class


def assign(
    arrivals: Sequence[tuple[float, str]], by_class: Mapping[str, Sequence[Prompt]], *, seed: int
) -> list[Prompt]:
    """One prompt per arrival, drawn uniformly from its class's pool (deterministic for a seed)."""
    rng = random.Random(f"prompts:{seed}")
    return [rng.choice(by_class[c]) for _, c in arrivals]
