"""A model-server simulator: an OpenAI-compatible server that behaves like one vLLM instance of a given size.

It stands in for real model servers (which need GPUs and weights) in tests, the local demo and benchmarks:
latency by model size with batching slowdown and a FIFO queue (`latency.py`), vLLM's metric names plus a
container's CPU and memory (`metrics.py`), and faults switched on at run time (`faults.py`).

Run it with ``zeta-sim`` / ``python -m zeta_sim``; start instances from Python with
`zeta_dev.launch.sim.start_sims`.

Layers, imports pointing down only (``launch`` runs ``__main__`` as a subprocess): ``__main__`` -> ``server`` -> ``engine`` -> ``scheduler`` ->
``latency``; ``server`` also uses ``protocol``, ``metrics``, ``faults`` and ``config``.
"""
