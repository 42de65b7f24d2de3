"""The routing benchmark's smoke mode (what CI runs): the DES on every scenario compressed to 20 s. It asserts
only that the run completes and prints a table per scenario, and one correctness property: Zeta never sends a
request to a backend that is not capable of it. Never timings."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

# bench/ is not an installed package: it runs from a checkout, so the test imports it from the checkout too.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bench import bench_routing  # noqa: E402
from bench.routing import des, scenario  # noqa: E402


def test_smoke_prints_a_table_per_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_routing.main(["--smoke", "--scenario", "all"]) == 0
    out = capsys.readouterr().out
    for name in scenario.names():
        assert f"### {name} (des)" in out
    for strategy in (*des.STRATEGIES, "oracle (LP bound)"):
        assert re.search(rf"^\| {re.escape(strategy)} \|", out, re.M), strategy
    header = next(line for line in out.splitlines() if "cap. violations" in line)
    column = [c.strip() for c in header.split("|")].index("cap. violations")
    zeta_rows = [
        line
        for line in out.splitlines()
        if line.startswith("| zeta |") and line.count("|") == header.count("|")
    ]
    assert len(zeta_rows) == len(scenario.names())
    for row in zeta_rows:
        assert [c.strip() for c in row.split("|")][column] == "0", f"capability violations in {row}"


def test_zeta_never_violates_capability_in_a_burst() -> None:
    sc = scenario.shrink(scenario.load("code-burst"), duration=30.0)
    result = des.simulate(sc, "zeta")
    assert result.records and result.violations == 0
    assert all(
        r.backend != "general-4b" for r in result.records if r.task_class in ("code-complex", "reasoning")
    )
