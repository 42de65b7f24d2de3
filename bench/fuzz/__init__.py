"""Fuzzing with generators made for it: requests against a real router process (`router`), custom resources
against the real apiserver and the operator's own validation (`resources`). The benchmark scripts
(`bench.fuzz_router`, `bench.fuzz_crds`) run them at scale; the tests run a small deterministic slice."""
