"""Chaos, counted (issue 11): the whole system as real processes, steady load through the router, one fault at a
time, and every request and every routing-table version accounted for.

- `rig`: control plane, Prometheus, simulators, operator and router, started the way the demo starts them;
- `load`: steady open-loop requests (some of them streams) through the router, each outcome recorded;
- `watcher`: a real watch on the routing-table ConfigMap that checks every version written;
- `faults`: a backend, the operator, kube-apiserver and Prometheus killed (and brought back), each with the
  condition that shows the system recovered.

Used by ``bench/bench_chaos.py`` (the figures in docs/benchmarks.md) and ``tests/chaos`` (a short slice).
"""
