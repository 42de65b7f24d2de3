"""Answer quality per (task type, complexity tier, backend): what a good answer is worth in quality-weighted
goodput, and what the oracle's linear program maximises.

A request answered within its objective counts the quality of the backend that answered it for the request's
*true* task type and tier (simple = complexity 1-2, complex = 3-5). A backend that is not capable of the true
task type or complexity (the fleet owner's declaration in the ModelBackend) scores 0: that answer is a true
capability violation. A scenario may override any cell (``quality: {backend: {task: {simple: q, complex: q}}}``).

The defaults are public benchmark scores of the models the sample ModelBackends name, as fractions. Which
benchmark stands for which cell, and where it is published, is in `SOURCES` (and docs/benchmarks.md). The
figures are as recalled from those reports and were not re-checked against them (verify before quoting); no
single benchmark covers chat or summaries, so those cells use instruction following (IFEval) as the proxy;
cells marked as assumptions in `SOURCES` are exactly that. They rank backends; they are not accuracies on
these prompts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SIMPLE_MAX = 2
"""Complexity up to this is the simple tier (the policy's offload.maxComplexity)."""

DEFAULT_QUALITY: dict[str, dict[str, dict[str, float]]] = {
    "general-4b": {  # Qwen3-4B-Instruct-2507
        "chat": {"simple": 0.834, "complex": 0.434},
        "summarize": {"simple": 0.834, "complex": 0.434},
        "code": {"simple": 0.768, "complex": 0.351},
        "reasoning": {"simple": 0.474, "complex": 0.474},
    },
    "coder-7b": {  # Qwen2.5-Coder-7B-Instruct
        "chat": {"simple": 0.60, "complex": 0.30},
        "summarize": {"simple": 0.60, "complex": 0.30},
        "code": {"simple": 0.884, "complex": 0.182},
        "reasoning": {"simple": 0.668, "complex": 0.668},
    },
    "large-14b": {  # Qwen3-14B, non-thinking mode
        "chat": {"simple": 0.848, "complex": 0.863},
        "summarize": {"simple": 0.848, "complex": 0.863},
        "code": {"simple": 0.85, "complex": 0.29},
        "reasoning": {"simple": 0.90, "complex": 0.90},
    },
}

SOURCES = {
    "general-4b": (
        "Qwen3-4B-Instruct-2507 model card (huggingface.co/Qwen/Qwen3-4B-Instruct-2507): chat/summarize simple "
        "IFEval 83.4, complex Arena-Hard v2 43.4; code simple MultiPL-E 76.8, complex LiveCodeBench v6 35.1; "
        "reasoning AIME25 47.4"
    ),
    "coder-7b": (
        "Qwen2.5-Coder technical report (arXiv:2409.12186), Qwen2.5-Coder-7B-Instruct: code simple HumanEval 88.4, "
        "complex LiveCodeBench (2407-2409) 18.2; reasoning MATH 66.8; chat/summarize: no instruction-following "
        "score published for the coder, 0.60 / 0.30 set below the general models (an assumption)"
    ),
    "large-14b": (
        "Qwen3 technical report (arXiv:2505.09388), Qwen3-14B non-thinking: chat/summarize simple IFEval 84.8, "
        "complex Arena-Hard 86.3; code complex LiveCodeBench v5 29.0; reasoning MATH-500 90.0; code simple 0.85 "
        "(EvalPlus-level, between the 4B and the coder: an assumption)"
    ),
}


def tier(complexity: int) -> str:
    return "simple" if complexity <= SIMPLE_MAX else "complex"


def table(overrides: Mapping[str, Any] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    merged = {b: {t: dict(v) for t, v in tasks.items()} for b, tasks in DEFAULT_QUALITY.items()}
    for backend, tasks in (overrides or {}).items():
        for task, tiers in tasks.items():
            merged.setdefault(backend, {}).setdefault(task, {}).update(
                {k: float(v) for k, v in tiers.items()}
            )
    return merged


def lookup(
    quality: Mapping[str, Mapping[str, Mapping[str, float]]], group: str, task: str, complexity: int
) -> float:
    """Quality of group ``group``'s model answering (task, complexity); 0 when nothing is declared."""
    return float(quality.get(group, {}).get(task, {}).get(tier(complexity), 0.0))
