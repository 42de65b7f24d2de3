"""The demo command, test-sized: it runs to completion against the real control plane and Prometheus, its summary
shows offload happening during the burst and the weights recovering after it, and it leaves nothing running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_quick_demo_offloads_during_the_burst_and_recovers(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "zeta_dev.demo", "--quick", "--no-live", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "nothing left running" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "zeta-demo.png").stat().st_size > 10_000

    assert summary["requests"] > 100 and summary["ok"] >= 0.95 * summary["requests"]
    off = summary["offloaded_share"]
    # Simple code moved off the overloaded coder during the burst, far more than before it ...
    assert off["burst"] > 0.4 and off["burst"] > off["before"] + 0.2, off
    # ... the operator's weight for the coder dropped, and came back once the burst was over.
    weight = summary["preferred_weight"]
    assert weight["min"] < 0.5 and weight["final"] > 0.8, weight
    # Complex work never went to the 4B model (complexity ceiling 2).
    assert "general-4b" not in summary["classes"]["code-complex"]["backends"]
    assert "general-4b" not in summary["classes"]["reasoning"]["backends"]
    assert "OFFLOAD code-simple" in result.stdout
