"""Answer quality per (task type, complexity tier, backend): what a good answer is worth in quality-weighted
goodput, and what the oracle's linear program maximises.

A request answered within its objective counts the quality of the backend that answered it for the request's
*true* task type and tier (simple = complexity 1-2, complex = 3-5). A backend that is not capable of the true
task type or complexity (the fleet owner's declaration in the ModelBackend) scores 0: that answer is a true
capability violation. A scenario may override any cell (``quality: {backend: {task: {simple: q, complex: q}}}``).

The defaults are public benchmark scores of the models the sample ModelBackends name, as fractions; each cell
says beside it which benchmark, which publication and which table row it comes from (checked against those
publications on 2026-12-02; `SOURCES` and docs/benchmarks.md say the same). No single benchmark covers chat or
summaries, so those cells use instruction following (IFEval) for the simple tier and Arena-Hard for the complex
one. Three cells have no published score and are assumptions, marked ``ASSUMPTION``: the coder's complex chat
and summaries, the 14B's simple code. They rank
backends; they are not accuracies on these prompts, and where two backends' cells come from different benchmarks
(or versions of one) the comparison between them is looser than the figures suggest: see `COMPARABILITY`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SIMPLE_MAX = 2
"""Complexity up to this is the simple tier (the policy's offload.maxComplexity)."""

_QWEN3_4B_2507 = "https://huggingface.co/Qwen/Qwen3-4B-Instruct-2507 (model card, 'Performance' table)"
_CODER_BLOG = "https://qwenlm.github.io/blog/qwen2.5-coder/ (Qwen2.5-Coder-Instruct section)"
_CODER_REPORT = (
    "https://arxiv.org/abs/2409.12186 (Qwen2.5-Coder technical report v3, instruct code generation)"
)
_QWEN3_REPORT = "https://arxiv.org/abs/2505.09388 (Qwen3 technical report v1)"

DEFAULT_QUALITY: dict[str, dict[str, dict[str, float]]] = {
    "general-4b": {  # Qwen3-4B-Instruct-2507; _QWEN3_4B_2507, column "Qwen3-4B-Instruct-2507"
        "chat": {
            "simple": 0.834,  # row "IFEval": 83.4
            "complex": 0.434,  # row "Arena-Hard v2*": 43.4 (win rate judged by GPT-4.1)
        },
        "summarize": {"simple": 0.834, "complex": 0.434},  # the same rows as chat
        "code": {
            "simple": 0.768,  # row "MultiPL-E": 76.8
            "complex": 0.351,  # row "LiveCodeBench v6 (25.02-25.05)": 35.1
        },
        "reasoning": {"simple": 0.474, "complex": 0.474},  # row "AIME25": 47.4
    },
    "coder-7b": {  # Qwen2.5-Coder-7B-Instruct
        "chat": {
            "simple": 0.586,  # _CODER_BLOG, "Basic capabilities" table, row Qwen2.5-Coder-7B-Instruct, IFEval 58.6
            "complex": 0.30,  # ASSUMPTION: no Arena-Hard (or other open-ended chat) score published for this model
        },
        "summarize": {"simple": 0.586, "complex": 0.30},  # the same as chat (IFEval 58.6; ASSUMPTION)
        "code": {
            "simple": 0.884,  # _CODER_REPORT, row Qwen2.5-Coder-7B-Instruct, HumanEval 88.4 (via transcriptions)
            "complex": 0.182,  # _CODER_REPORT, same row, LiveCodeBench (2407-2409) 18.2 (via transcriptions)
        },
        "reasoning": {"simple": 0.668, "complex": 0.668},  # _CODER_BLOG, "Math Reasoning" table, MATH 66.8
    },
    "large-14b": {  # Qwen3-14B, non-thinking; _QWEN3_REPORT, Table 16 (non-thinking), column "Qwen3-14B"
        "chat": {
            "simple": 0.848,  # row "IFEval strict prompt": 84.8
            "complex": 0.863,  # row "Arena-Hard": 86.3
        },
        "summarize": {"simple": 0.848, "complex": 0.863},  # the same rows as chat
        "code": {
            "simple": 0.85,  # ASSUMPTION: no simple-code score (HumanEval, MBPP, EvalPlus, MultiPL-E) is published
            # for the post-trained Qwen3-14B; the report's Table 5 has only the base model's (EvalPlus 72.23,
            # MultiPL-E 61.69, MBPP 73.40), which post-training moves a lot (the 4B: base MultiPL-E 53.13, Table 7,
            # -> 76.8 for Qwen3-4B-Instruct-2507).
            "complex": 0.29,  # row "LiveCodeBench v5": 29.0
        },
        "reasoning": {"simple": 0.90, "complex": 0.90},  # row "MATH-500": 90.0
    },
}

SOURCES = {
    "general-4b": (
        f"Qwen3-4B-Instruct-2507: {_QWEN3_4B_2507}, column Qwen3-4B-Instruct-2507: chat/summarize simple IFEval "
        "83.4, complex Arena-Hard v2 43.4; code simple MultiPL-E 76.8, complex LiveCodeBench v6 (25.02-25.05) "
        "35.1; reasoning AIME25 47.4"
    ),
    "coder-7b": (
        f"Qwen2.5-Coder-7B-Instruct: {_CODER_REPORT}, row Qwen2.5-Coder-7B-Instruct: code simple HumanEval 88.4, "
        "complex LiveCodeBench (2407-2409) 18.2 (the report's table could not be opened on 2026-12-02, and the "
        "Qwen2.5-Coder family blog shows it only as an image; four independent transcriptions of the row give "
        "HumanEval 88.4, two of them LiveCodeBench 18.2); "
        f"{_CODER_BLOG}: chat/summarize simple IFEval 58.6 ('Basic "
        "capabilities' table), reasoning MATH 66.8 ('Math Reasoning' table); chat/summarize complex 0.30 is an "
        "ASSUMPTION (no open-ended chat score published)"
    ),
    "large-14b": (
        f"Qwen3-14B non-thinking: {_QWEN3_REPORT}, Table 16, column Qwen3-14B: chat/summarize simple IFEval "
        "(strict prompt) 84.8, complex Arena-Hard 86.3; code complex LiveCodeBench v5 29.0; reasoning MATH-500 "
        "90.0; code simple 0.85 is an ASSUMPTION (only the base model's simple-code scores are published)"
    ),
}

COMPARABILITY = (
    "Cells compared across backends come from different benchmarks in four places: code simple (4B MultiPL-E, "
    "coder HumanEval, 14B assumed); code complex (LiveCodeBench over different problem windows: v6 25.02-25.05, "
    "2407-2409, v5); chat/summarize complex (Arena-Hard v2 judged by GPT-4.1 for the 4B, the Qwen3 report's "
    "Arena-Hard for the 14B: the 4B card puts the original Qwen3-4B non-thinking at 9.5 on v2, the report at "
    "66.2 on its Arena-Hard, Table 18); reasoning (AIME25 for the 4B, MATH for the coder, MATH-500 for the 14B; "
    "the report gives the 14B 23.3 on AIME'25, Table 16). The 4B's complex cells and its reasoning cells are never "
    "reached by the sample fleet (its ModelBackend: tasks chat, summarize, code; maxComplexity 2)."
)


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
