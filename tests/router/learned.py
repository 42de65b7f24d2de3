"""Hand-made weights files for tests: a learned model whose behaviour the test states, not a training run."""

from __future__ import annotations

import base64
import gzip
import json
import sys
from array import array
from typing import Any

from zeta_operator.router import features, model

TASKS = ("chat", "code", "reasoning", "summarize")
SCALE = 1024


def weights_data(
    *,
    structure: dict[str, tuple[list[float], list[float]]],
    offload_confidence: float = 0.9,
    text: dict[str, list[float]] | None = None,
    meaning: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """A weights file's content: ``structure`` maps a structure feature name to (task logits, complexity
    logits) it adds; ``text`` a token (see `features.tokens`) to the nine logits its buckets add; ``meaning``
    a word to its nine outputs in the turn's word-meaning block (`meaning.WordMeaning`: the turn's words are
    averaged; the instruction's block is zero); all other weights are zero, temperatures 1."""
    outputs = len(TASKS) + 5
    q = array("h", bytes(2 * features.BUCKETS * outputs))
    for token, logits in (text or {}).items():
        for b in features.token_buckets(token):
            for i, v in enumerate(logits):
                q[b * outputs + i] = round(v * SCALE)
    if sys.byteorder != "little":
        q.byteswap()
    packed = q.tobytes()
    extra: dict[str, Any] = {}
    if meaning:
        rows = array("h", [round(v * SCALE) for row in meaning.values() for v in row])
        if sys.byteorder != "little":
            rows.byteswap()
        block = {"rows": base64.b64encode(rows.tobytes()).decode(), "scale": [float(SCALE)] * outputs}
        zero = {"rows": base64.b64encode(bytes(len(rows) * 2)).decode(), "scale": [float(SCALE)] * outputs}
        extra["meaning"] = {"words": "\n".join(meaning), "turn": block, "instruction": zero}
    return {
        **extra,
        "format": model.FILE_FORMAT,
        "features": features.FEATURES_VERSION,
        "hashBits": features.HASH_BITS,
        "tasks": list(TASKS),
        "complexities": [1, 2, 3, 4, 5],
        "bias": [0.0] * outputs,
        "scale": [float(SCALE)] * outputs,
        "temperature": {"task": 1.0, "complexity": 1.0},
        "offloadConfidence": offload_confidence,
        "structure": {
            name: [round(v * SCALE) for v in (*task, *level)] for name, (task, level) in structure.items()
        },
        "text": base64.b64encode(packed).decode(),
    }


def weights_file(data: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(data).encode(), mtime=0)


def learned_model(**kwargs: Any) -> model.LearnedModel:
    return model.parse(weights_file(weights_data(**kwargs)), source="test")
