"""Helpers of `bench.bench_router`: the load generator, the targets under test and CPU accounting."""
