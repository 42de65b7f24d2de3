"""Fuzz the router at scale: schema-driven (schemathesis on docs/openapi.yaml) and byte-level (hypothesis)
requests against a real router process in front of two real simulator processes.

    python -m bench.fuzz_router --cases 10000            # about half an hour on 2 shared cores
    python -m bench.fuzz_router --cases 500 --seed 7     # a quick look

Prints, as Markdown for docs/fuzzing.md: cases per generator with their status classes, every distinct problem
with one reproducer, the router's RSS after warm-up and at the end (and its peak), and whether the process
stayed up. Exits 1 when anything was found.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from .fuzz.router import Tally, fuzz, fuzz_fleet, fuzz_raw

WARMUP_CASES = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_router", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="requests to send (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every generator (default %(default)s)")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        log_dir = args.logs or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="zeta-fuzz-router-"))
        )
        fleet = stack.enter_context(fuzz_fleet(log_dir))
        warm = Tally()
        fuzz_raw(fleet, cases=WARMUP_CASES, seed=args.seed + 1, tally=warm, label="warm-up")
        rss_before = fleet.rss_kib()
        tally = Tally()
        fuzz(
            fleet, cases=args.cases, seed=args.seed, tally=tally, progress=lambda m: print(m, file=sys.stderr)
        )
        rss_after, rss_peak = fleet.rss_kib(), fleet.peak_rss_kib()
        alive = fleet.router.process.alive()
        healthy = alive and fleet.router.status("/healthz") == 200
        log_text = Path(fleet.router.process.log).read_text(errors="replace")
    elapsed = time.monotonic() - started
    tracebacks = log_text.count("Traceback")
    report(tally, warm, args, rss_before, rss_after, rss_peak, alive, healthy, tracebacks, elapsed)
    return 1 if tally.findings or warm.findings or not healthy or tracebacks else 0


def report(
    tally: Tally,
    warm: Tally,
    args: argparse.Namespace,
    rss_before: int,
    rss_after: int,
    rss_peak: int,
    alive: bool,
    healthy: bool,
    tracebacks: int,
    elapsed: float,
) -> None:
    print(f"## Router fuzzing: `python -m bench.fuzz_router --cases {args.cases} --seed {args.seed}`\n")
    print(f"{tally.total} cases in {elapsed:.0f} s (after {warm.total} warm-up cases); "
          f"{tally.unsendable} drawn cases the HTTP client would not send (header values it cannot encode).\n")  # fmt: skip
    print("| generator | cases | 2xx | 4xx | 5xx | no answer |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for generator in sorted(tally.cases):
        row = [tally.statuses[(generator, c)] for c in ("2xx", "4xx", "5xx", "none")]
        print(f"| {generator} | {tally.cases[generator]} | " + " | ".join(map(str, row)) + " |")
    totals = [sum(n for (_, c), n in tally.statuses.items() if c == k) for k in ("2xx", "4xx", "5xx", "none")]
    print(f"| **all** | **{tally.total}** | " + " | ".join(f"**{n}**" for n in totals) + " |\n")
    print("Status codes: " + ", ".join(f"{code}: {n}" for code, n in sorted(tally.codes.items())) + "\n")
    print(f"Router process: {'alive' if alive else 'DEAD'}, /healthz {'200' if healthy else 'FAILED'}, "
          f"{tracebacks} tracebacks in its log.\n")  # fmt: skip
    growth = rss_after - rss_before
    print(f"Router RSS: {rss_before / 1024:.1f} MiB after warm-up, {rss_after / 1024:.1f} MiB at the end "
          f"({growth / 1024:+.1f} MiB, {100 * growth / rss_before:+.1f}%), peak {rss_peak / 1024:.1f} MiB.\n")  # fmt: skip
    findings = list(tally.findings.values()) + list(warm.findings.values())
    print(f"Findings: {len(findings)} distinct" + (":" if findings else "."))
    for f in findings:
        print(f"\n- **{f.signature}** ({f.count} cases). Reproducer:\n\n  ```\n  {f.reproducer}\n  ```")


if __name__ == "__main__":
    sys.exit(main())
