"""The second, blind annotation (dev/corpus/agreement) stays on the calibration split, and the agreement report
computes its figures from the files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from zeta_dev.classifier import agreement, corpus


def second_rows() -> list[dict[str, Any]]:
    lines = agreement.SECOND.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_second_labels_are_valid_and_only_on_the_calibration_split() -> None:
    by_id = {r.id: r for r in corpus.load()}
    sampled = agreement.SAMPLE_IDS.read_text().split()
    rows = second_rows()
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)) and set(ids) <= set(sampled)
    assert all(by_id[i].split == "calibration" for i in sampled)
    assert all(row["task"] in corpus.TASKS and row["complexity"] in (1, 2, 3, 4, 5) for row in rows)
    assert all(set(row) <= {"id", "task", "complexity", "note"} for row in rows)


def test_the_committed_sample_is_what_the_sample_command_draws() -> None:
    picked = agreement.pick(corpus.load())
    assert [r.id for r in picked] == agreement.SAMPLE_IDS.read_text().split()


def test_a_test_split_id_is_refused(tmp_path: Path) -> None:
    requests = corpus.load()
    held_out = next(r for r in requests if r.split == "test")
    second = tmp_path / "second.jsonl"
    second.write_text(json.dumps({"id": held_out.id, "task": "chat", "complexity": 1}) + "\n")
    with pytest.raises(ValueError, match="test split"):
        agreement.read_second(second, requests)


def test_report_figures_are_computed_from_the_files(capsys: pytest.CaptureFixture[str]) -> None:
    agreement.main(["report"])
    out = capsys.readouterr().out
    all_row = next(line for line in out.splitlines() if line.startswith("| all |"))
    cells = [c.strip() for c in all_row.strip("|").split("|")]
    # Recomputed from the raw lines, without the module's helpers.
    labels = {}
    for path in corpus.CORPUS.glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                labels[row["id"]] = (row["task"], row["complexity"])
    rows = second_rows()
    task = sum(labels[r["id"]][0] == r["task"] for r in rows) / len(rows)
    tier = sum((labels[r["id"]][1] <= 2) == (r["complexity"] <= 2) for r in rows) / len(rows)
    assert cells[1] == str(len(rows))
    assert cells[2] == f"{100 * task:.1f}%"
    assert cells[4] == f"{100 * tier:.1f}%"
    assert re.search(r"\| corpus labels \| \d+ \| \d+\.\d% \|", out)
