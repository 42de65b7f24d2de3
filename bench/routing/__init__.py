"""The routing benchmark (issue 6): does Zeta's adaptive routing beat the alternatives, and how close is it to
the best possible? See bench/bench_routing.py for the command line and docs/benchmarks.md for results."""
