"""One control cycle's PromQL against a real Prometheus: one after another (as before) vs all at once under one
deadline (`PrometheusSource.query_all`), over http and over https with basic auth, side by side in one run.

The queries are the operator's own: the default templates of one policy (8 queries), rendered for 10 backends of
2 pods. The servers hold none of those series, so a query costs its round trip (HTTP, TLS and auth where used,
parsing and evaluating the PromQL), which is what running them at once saves; a large Prometheus's evaluation
time would add to each. Reported: median wall time per cycle each way, and the ratio.

    python -m bench.bench_prometheus [--cycles 200]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from zeta_dev.localcluster.certs import CertificateAuthority
from zeta_dev.localcluster.prometheus import Prometheus, WebSecurity
from zeta_operator.operator.measure import ClientAuth, ClientTLS, PrometheusSource, QueryError
from zeta_operator.operator.promql import DEFAULT_QUERIES, ENGINE_QUERIES, regex_alternation, render


def cycle_queries() -> list[str]:
    backends = [f"b{i}" for i in range(10)]
    values = {
        "namespace": "bench",
        "pods": regex_alternation([f"{b}-{i}" for b in backends for i in range(2)]),
        "backends": regex_alternation(backends),
        "window": "30s",
        "quantile": "0.95",
    }
    return [render(t, values) for t in (*DEFAULT_QUERIES.values(), *ENGINE_QUERIES["vllm"].values())]


def median_ms(run: Callable[[], object], cycles: int) -> float:
    run()  # warm: connections open, TLS sessions up
    times = []
    for _ in range(cycles):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure_source(source: PrometheusSource, queries: list[str], cycles: int) -> tuple[float, float]:
    def one_by_one() -> None:
        for q in queries:
            source.query(q)

    def at_once() -> None:
        answers = source.query_all(queries)
        assert not [a for a in answers if isinstance(a, QueryError)], answers

    # Interleaved, so both see the same machine load.
    seq, par = [], []
    for _ in range(4):
        seq.append(median_ms(one_by_one, cycles // 4))
        par.append(median_ms(at_once, cycles // 4))
    return statistics.median(seq), statistics.median(par)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args(argv)
    queries = cycle_queries()
    work = Path(tempfile.mkdtemp(prefix="zeta-bench-prom-"))
    try:
        ca = CertificateAuthority.create(work / "ca")
        web = WebSecurity(
            serving=ca.issue(work / "server"), ca_file=ca.cert_file, users={"bench": "bench-pw"}
        )
        rows = []
        with Prometheus.running() as plain, Prometheus.running(web=web) as secure:
            sources = {
                "http": PrometheusSource(plain.url, timeout=10),
                "https + basic auth": PrometheusSource(
                    secure.url,
                    timeout=10,
                    tls=ClientTLS(ca_pem=ca.pem),
                    auth=ClientAuth(basic=("bench", "bench-pw")),
                ),
            }
            for name, source in sources.items():
                seq, par = measure_source(source, queries, args.cycles)
                rows.append((name, seq, par))
                source.close()
        print(
            f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}"
        )
        print(f"{len(queries)} queries per cycle, median of {args.cycles} cycles each way (interleaved)\n")
        print("| transport | one after another | all at once | ratio |")
        print("|---|---:|---:|---:|")
        for name, seq, par in rows:
            print(f"| {name} | {seq:.2f} ms | {par:.2f} ms | {par / seq:.2f}x |")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
