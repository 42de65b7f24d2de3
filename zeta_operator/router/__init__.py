"""The Zeta router: an OpenAI-compatible data plane that applies the operator's routing table per request.

Run it with ``zeta-router`` (see `__main__`). Layers, imports pointing down only:

- `app` (aiohttp application, lifecycle) -> `proxy` (one request end to end) -> `admission` (slot or queue)
- `balancer` (pure choice), `queue` (pure ordering), `endpoints` (in-flight and ejection), `classify`
  (request -> task class), `payload` (body parsing) -- no I/O
- `tables` (table sources and the atomic swap), `snapshot` (per-table precomputation), `kubeapi`
- `metrics`, `logs`, `settings`; `launch` starts the router as a process (tests, demo, benchmarks)
"""
