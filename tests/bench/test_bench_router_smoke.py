"""The router benchmark runs end to end: ``--quick`` on the backend directly, Zeta's router and nginx.

Only that it completes and prints its tables with those rows is checked, never a timing: performance is
read from the benchmark's report (docs/benchmarks.md), not asserted here.

nginx is optional by a flag, not by a skipped test: the run always asks for it, and when the binary is not
installed the benchmark prints an explicit "not run" row with the reason, which this test checks (and warns
about). ZETA_BENCH_REQUIRE_NGINX=1 turns a missing nginx into a failure (``--require nginx``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEASURED = r"^\| {label} \| \d+( \(saturated\))? \|"
"""A table row whose first value is a number: the target ran (on a busy machine it may not sustain the paced
rate, and its row says so: still a measurement)."""


def nginx_installed() -> bool:
    """As the benchmark looks for it (bench/router/targets.py)."""
    return shutil.which("nginx") is not None or any(
        os.access(p, os.X_OK) for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
    )


def run_quick(tmp_path: Path, *, require_nginx: bool) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bench.bench_router", "--quick", "--targets", "direct,nginx,zeta"]
    argv += ["--logs", str(tmp_path / "logs")]
    if require_nginx:
        argv += ["--require", "nginx"]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)


def measured_rows(out: str, label: str) -> int:
    return len(re.findall(MEASURED.format(label=re.escape(label)), out, flags=re.MULTILINE))


def test_quick_run_prints_the_tables_with_the_targets_rows(tmp_path: Path) -> None:
    require_nginx = os.environ.get("ZETA_BENCH_REQUIRE_NGINX") == "1"
    done = run_quick(tmp_path, require_nginx=require_nginx)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-5000:]}"
    out = done.stdout

    assert out.startswith("Machine: ") and "Command: `python -m bench.bench_router --quick" in out
    for title in (
        "#### Throughput, closed loop at concurrency 16: non-streaming",
        "#### Throughput, closed loop at concurrency 16: streaming",
        "#### Moderate load, paced at",
        "#### Self-reported overhead headers",
        "#### Where the CPU went",
        "#### Headline",
    ):
        assert title in out, f"missing {title!r} in:\n{out}"
    # Two throughput tables and two moderate-load tables, each with a measured row per target.
    assert measured_rows(out, "(a) backend directly") == 4, out
    assert measured_rows(out, "(c) Zeta router") == 4, out
    assert "| (c) Zeta router | `x-zeta-overhead-ms` |" in out
    assert "Zeta adds" in out

    if nginx_installed():
        assert measured_rows(out, "(b) nginx") == 4, out
    else:
        assert "| (b) nginx | not run: nginx binary not found" in out, out
        warnings.warn(
            "nginx is not installed: the benchmark ran without target (b) and said so in its table "
            "(apt-get install -y nginx, or ZETA_BENCH_REQUIRE_NGINX=1 to make this a failure)",
            stacklevel=1,
        )
