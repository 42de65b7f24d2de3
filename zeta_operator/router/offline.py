"""zeta-classify: what the router would decide about your own prompts, offline, under your RoutingPolicy.

    zeta-classify --policy routingpolicy.yaml prompts.jsonl             # a JSON line per prompt
    zeta-classify --policy routingpolicy.yaml --report labelled.jsonl   # accuracy and the spill gate on them
    zeta-classify --policy routingpolicy.yaml --second-opinion encoder --report labelled.jsonl

Each input line is a request body as clients send it (``{"model": ..., "messages": [...]}`` for
/v1/chat/completions, ``{"prompt": ...}`` for /v1/completions; ``model`` may be left out), or a JSON string
(one user message). Beside the body, ``id`` names the line in the output (else its line number), and
``task`` and ``complexity`` (1-5) are its labels, which ``--report`` needs on every line. ``-`` reads standard
input. Nothing is sent anywhere: the classifier is the router's own, with the policy's aliases, keyword rules
and examples, and the shipped weights (or ``--weights``); with ``--second-opinion encoder``, the sentence
encoder the router can ask about the requests the model is unsure of (docs/second-opinion.md), never busy or
late here.

Why: the shipped classifier was trained and judged on the project's corpus; your traffic is not that corpus,
and the spill gate's default offloadConfidence was chosen on it. With a few hundred of your prompts labelled,
``--report`` shows how often the classifier is right on them, how many of your complex requests the gate would
let go to a smaller model at the policy's offloadConfidence, which ones (candidates for
``spec.classifier.examples`` or a header), and the lowest offloadConfidence that keeps them at ``--target``.
Exit status 2 on unusable input, with the line it is on.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from pydantic import ValidationError

from ..api.policy import RoutingPolicySpec
from ..api.table import TableClass
from .classify import LEVELS, Classification, Classifier
from .model import SIMPLE_MAX, LearnedModel, ModelError, load, shipped
from .payload import BadRequest, Kind, PromptView, parse_request
from .second_opinion import SecondOpinionError, ask, fold_in, load_encoder, load_head, unsure

OFFLOAD_GRID = tuple(round(0.5 + 0.01 * i, 2) for i in range(50))
"""The offloadConfidence values a threshold is chosen from: 0.50 .. 0.99 (the default's grid too)."""
LABELS = ("id", "task", "complexity")
"""Keys of an input line that are not part of the request body."""
SHOWN_PAST_GATE = 20
Revise = Callable[[Classification, PromptView], Classification]
"""A second look at what the classifier decided (the second opinion), or None."""


class InputError(Exception):
    """An input the tool cannot use, with where it is."""


@dataclass(frozen=True, slots=True)
class Decided:
    """One input line and what the router decided about it (``error``: the router's 4xx instead)."""

    id: str
    text: str
    cls: Classification | None
    error: str | None
    task: str | None
    complexity: int | None


def offload_threshold(p_simple: Iterable[float], simple: Iterable[bool], rate: float) -> float | None:
    """The lowest `OFFLOAD_GRID` offloadConfidence at which at most ``rate`` of the complex requests have a
    P(simple) that reaches it; None when even the highest lets more through."""
    complex_p = [p for p, s in zip(p_simple, simple, strict=True) if not s]
    return lowest_threshold(complex_p, rate * len(complex_p))


def lowest_threshold(complex_p: Sequence[float], allowed: float) -> float | None:
    """The lowest `OFFLOAD_GRID` offloadConfidence that at most ``allowed`` of these complex requests' P(simple)
    reach; None when even the highest lets more through."""
    return next((t for t in OFFLOAD_GRID if sum(p >= t for p in complex_p) <= allowed), None)


def policy_classifier(path: Path, model: LearnedModel | None) -> tuple[Classifier, float]:
    """The router's classifier as the RoutingPolicy in ``path`` configures it, and its offloadConfidence."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"{path}: {e}") from None
    policy = next((d for d in docs if d.get("kind") == "RoutingPolicy"), None)
    if policy is None:
        raise InputError(f"{path}: no RoutingPolicy in it")
    try:
        spec = RoutingPolicySpec.model_validate(policy.get("spec") or {})
    except ValidationError as e:
        raise InputError(f"{path}: not a valid RoutingPolicy spec:\n{e}") from None
    classifier = Classifier(
        spec.classifier, table_classes(spec), default_class=spec.default_class, model=model
    )
    return classifier, spec.classifier.offload_confidence


def table_classes(spec: RoutingPolicySpec) -> list[TableClass]:
    """The policy's classes as the routing table carries them, without weights (the classifier reads only their
    task types, complexity ranges and priorities)."""
    return [TableClass.of(c) for c in spec.classes]


def decide(
    lines: Iterable[str], classifier: Classifier, *, labelled: bool, revise: Revise | None = None
) -> Iterator[Decided]:
    """Each non-blank line through the router's parsing and classification (and ``revise``); InputError on a
    line the router could not read as a request (or without labels, when ``labelled``)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield _decided(line, number, classifier, labelled=labelled, revise=revise)
        except BadRequest as e:
            raise InputError(f"line {number}: {e.message}") from None


def _decided(
    line: str, number: int, classifier: Classifier, *, labelled: bool, revise: Revise | None
) -> Decided:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"line {number}: not JSON ({e.msg})") from None
    if isinstance(item, str):
        item = {"messages": [{"role": "user", "content": item}]}
    if not isinstance(item, dict):
        raise InputError(
            f"line {number}: a request body (a JSON object) or a prompt (a JSON string) expected"
        )
    labels = {k: item.pop(k) for k in LABELS if k in item}
    task, complexity = labels.get("task"), labels.get("complexity")
    if labelled and not (isinstance(task, str) and isinstance(complexity, int) and 1 <= complexity <= LEVELS):
        raise InputError(f'line {number}: --report needs "task" (a task type) and "complexity" (1-5)')
    item.setdefault("model", "any")
    kind: Kind = "chat" if "messages" in item else "completion"
    parsed = parse_request(json.dumps(item).encode(), kind)
    ident = str(labels.get("id", number))
    text = parsed.prompt.last_user
    try:
        cls = classifier.classify({}, parsed.model, parsed.prompt)
        if revise is not None:
            cls = revise(cls, parsed.prompt)
    except BadRequest as e:  # what the router answers with a 400, e.g. no class for the task type
        return Decided(ident, text, None, e.message, task, complexity)
    return Decided(ident, text, cls, None, task, complexity)


def second_opinion(classifier: Classifier, head_file: Path | None) -> Revise:
    """The router's second opinion as ``--second-opinion encoder`` runs it, but waiting for every answer;
    SecondOpinionError when the encoder or the head cannot be loaded."""
    head = load_head(head_file) if head_file else load_head()
    encoder = load_encoder()

    def revise(cls: Classification, prompt: PromptView) -> Classification:
        if not unsure(cls, head.ask_below):
            return cls
        return fold_in(classifier, cls, head, ask(encoder, head, prompt))

    return revise


def as_json(d: Decided, offload_confidence: float) -> dict[str, Any]:
    """One output line: the decision the router's response headers carry, and the spill gate's view of it."""
    if d.cls is None:
        return {"id": d.id, "error": d.error}
    c = d.cls
    return {
        "id": d.id,
        "class": c.task_class.name,
        "taskType": c.task_type,
        "complexity": c.complexity,
        "classifiedBy": c.source,
        "confidence": round(c.confidence, 3),
        "spillProbability": round(c.spill_probability, 3),
        "simpleEnoughToSpill": c.spill_probability >= offload_confidence,
    }


def report(decided: Sequence[Decided], offload_confidence: float, target: float) -> str:
    """Accuracy on the labelled lines and what the spill gate does with them."""
    answered = [d for d in decided if d.cls is not None]
    rejected = len(decided) - len(answered)
    complex_ = [d for d in answered if _complex(d)]
    simple = [d for d in answered if not _complex(d)]
    task_right = Counter(d.task or "" for d in answered if _cls(d).task_type == d.task)
    tasks = Counter(d.task or "" for d in answered)
    tier_right = sum((_cls(d).complexity > SIMPLE_MAX) == _complex(d) for d in answered)
    past = sorted(
        (d for d in complex_ if _cls(d).spill_probability >= offload_confidence),
        key=lambda d: -_cls(d).spill_probability,
    )
    spill = sum(_cls(d).spill_probability >= offload_confidence for d in simple)
    lines = [
        f"{len(decided)} labelled requests, {len(complex_)} of them complex (complexity {SIMPLE_MAX + 1}-{LEVELS}); "
        f"the policy's offloadConfidence {offload_confidence:g}",
    ]
    if rejected:
        lines.append(f"answered by the router with an error (no class for their task type): {rejected}")
    if not answered:
        return "\n".join(lines)
    lines += [
        f"task type:        {_share(sum(task_right.values()), len(answered))}"
        + "  ("
        + ", ".join(f"{t} {_share(task_right[t], n)}" for t, n in sorted(tasks.items()))
        + ")",
        f"complexity tier:  {_share(tier_right, len(answered))}  (simple <= {SIMPLE_MAX} < complex)",
        "decided by:       "
        + ", ".join(f"{s} {n}" for s, n in Counter(_cls(d).source for d in answered).items()),
        f"complex requests the gate lets go to a smaller model at {offload_confidence:g}: "
        f"{_share(len(past), len(complex_))}",
        f"simple requests it lets go:  {_share(spill, len(simple))}",
    ]
    lines += _suggestion(answered, target)
    if past:
        lines += [
            "",
            "Complex requests past the gate (give such prompts as spec.classifier.examples, or a header):",
        ]
        lines += [
            f"  {d.id}: P(simple) {_cls(d).spill_probability:.3f}, classified {_cls(d).task_type} "
            f"{_cls(d).complexity} ({_cls(d).source}), labelled {d.task} {d.complexity}: {_head(d.text)}"
            for d in past[:SHOWN_PAST_GATE]
        ]
        if len(past) > SHOWN_PAST_GATE:
            lines.append(f"  ... and {len(past) - SHOWN_PAST_GATE} more")
    return "\n".join(lines)


def _suggestion(answered: Sequence[Decided], target: float) -> list[str]:
    p = [_cls(d).spill_probability for d in answered]
    simple = [not _complex(d) for d in answered]
    complex_count = simple.count(False)
    threshold = offload_threshold(p, simple, target)
    if complex_count == 0:
        return ["no complex request among them: label some to choose an offloadConfidence"]
    if threshold is None:
        return [
            f"no offloadConfidence up to {OFFLOAD_GRID[-1]:g} keeps the complex requests past the gate at "
            f"{target:.0%} or fewer: those a rule, an alias or an example decided are certain, and the rest "
            "are confident mistakes (see below)"
        ]
    lets = sum(q >= threshold for q, s in zip(p, simple, strict=True) if s)
    line = (
        f"lowest offloadConfidence with at most {target:.0%} of these complex requests past the gate: "
        f"{threshold:g} (simple requests it lets go: {_share(lets, simple.count(True))})"
    )
    if complex_count * target < 1:
        line += (
            f"; with {complex_count} complex requests, {target:.0%} is less than one, so this keeps every one "
            "of them back: a weak estimate, label more complex prompts"
        )
        return [line]
    return [line, *_held_out(p, simple, target)]


def _held_out(p: Sequence[float], simple: Sequence[bool], target: float) -> list[str]:
    """A threshold chosen on some prompts is flattered on those same prompts: choose it on every other line
    and count the complex requests of the remaining lines that pass it, both ways round."""
    checks = []
    for chosen in (0, 1):
        threshold = offload_threshold(p[chosen::2], simple[chosen::2], target)
        others = [q for q, s in zip(p[1 - chosen :: 2], simple[1 - chosen :: 2], strict=True) if not s]
        if threshold is None or not others:
            return []
        checks.append(f"{threshold:g} -> {_share(sum(q >= threshold for q in others), len(others))}")
    return [
        "the same rule on every other line, checked on the lines it did not see (threshold -> their complex "
        "requests past it): " + "; ".join(checks)
    ]


def _cls(d: Decided) -> Classification:
    assert d.cls is not None
    return d.cls


def _complex(d: Decided) -> bool:
    return (d.complexity or 0) > SIMPLE_MAX


def _share(part: int, whole: int) -> str:
    return f"{part} of {whole} ({part / whole:.1%})" if whole else "0 of 0"


def _head(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return json.dumps(flat if len(flat) <= limit else flat[: limit - 3] + "...", ensure_ascii=False)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1 or math.isnan(value):
        raise argparse.ArgumentTypeError(f"{text} is not a share in [0, 1)")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="zeta-classify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", type=Path, help="JSON lines of request bodies ('-': standard input)")
    parser.add_argument("--policy", type=Path, required=True, help="a YAML file holding the RoutingPolicy")
    parser.add_argument("--report", action="store_true", help="every line is labelled: print the report")
    parser.add_argument(
        "--target",
        type=_fraction,
        default=0.01,
        help="with --report: the share of complex requests the gate may let go to a smaller model (0.01)",
    )
    parser.add_argument(
        "--weights", type=Path, help="a classifier weights file instead of the shipped one (retrained)"
    )
    parser.add_argument(
        "--rules",
        action="store_true",
        help="the keyword (rule) classifier instead of the learned one, as zeta-router --classifier rules",
    )
    parser.add_argument(
        "--second-opinion",
        choices=("off", "encoder"),
        default="off",
        help="as zeta-router --second-opinion: 'encoder' asks the sentence encoder about the requests the "
        "model is unsure of (needs pip install 'zeta-operator[encoder]')",
    )
    parser.add_argument(
        "--second-opinion-head", type=Path, help="head file of the second opinion (default: shipped)"
    )
    args = parser.parse_args(argv)
    if args.rules and args.second_opinion != "off":
        parser.error("the second opinion revises the learned classifier's answers: not with --rules")
    return args


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None) -> int:
    args = parse_args(argv)
    out = stdout or sys.stdout
    try:
        model = None if args.rules else (load(args.weights) if args.weights else shipped())
        classifier, offload_confidence = policy_classifier(args.policy, model)
        revise = None
        if args.second_opinion == "encoder":
            revise = second_opinion(classifier, args.second_opinion_head)
        source = sys.stdin if str(args.input) == "-" else _open(args.input)
        decided = decide(source, classifier, labelled=args.report, revise=revise)
        if args.report:
            print(report(list(decided), offload_confidence, args.target), file=out)
        else:
            for d in decided:
                print(json.dumps(as_json(d, offload_confidence), ensure_ascii=False), file=out)
    except (InputError, ModelError, SecondOpinionError) as e:
        print(f"zeta-classify: {e}", file=sys.stderr)
        return 2
    return 0


def _open(path: Path) -> IO[str]:
    try:
        return path.open(encoding="utf-8")
    except OSError as e:
        raise InputError(str(e)) from None


if __name__ == "__main__":
    sys.exit(main())
