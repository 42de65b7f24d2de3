"""What one simulated instance exports on ``/metrics``: vLLM's engine metrics and a container's resource use.

Names and labels follow vLLM (``vllm:*`` with ``model_name``), cAdvisor (``container_*``) and kube-state-metrics
(``kube_pod_container_resource_limits``), so the operator's default PromQL reads the simulator exactly as it
reads a real pod. Namespace, pod and container labels are deliberately absent: in Kubernetes they come from the
scrape (target labels), and setting them here would clash with the ones Prometheus attaches.

Each instance has its own `CollectorRegistry`, so several instances can share a process. The CPU and memory
series are the real process's, so replicas in one process report the same numbers, as containers in one pod
sharing a cgroup would.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .scheduler import Scheduler, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format: prometheus_client's OpenMetrics encoder rewrites ``vllm:`` to ``vllm_``."""

# vLLM's own bucket boundaries, so histogram_quantile answers the same way on the simulator.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                           120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


class SimMetrics:
    """The registry of one instance and the few calls the server makes to fill it."""

    def __init__(
        self,
        *,
        model_name: str,
        scheduler: Scheduler,
        kv_cache_tokens: int,
        cpu_limit_cores: float,
        memory_limit_bytes: int,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(model_name, scheduler, kv_cache_tokens))
        self.registry.register(_ContainerCollector(cpu_limit_cores, memory_limit_bytes))
        ProcessCollector(registry=self.registry)
        labels = ["model_name"]
        r = self.registry
        self._ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token in seconds.",
            labels,
            buckets=TTFT_BUCKETS,
            registry=r,
        ).labels(model_name)
        self._tpot = Histogram(
            "vllm:time_per_output_token_seconds",
            "Time per output token in seconds.",
            labels,
            buckets=TPOT_BUCKETS,
            registry=r,
        ).labels(model_name)
        self._e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "End to end request latency in seconds.",
            labels,
            buckets=REQUEST_LATENCY_BUCKETS,
            registry=r,
        ).labels(model_name)
        self._queue = Histogram(
            "vllm:request_queue_time_seconds",
            "Time spent waiting in the queue in seconds.",
            labels,
            buckets=REQUEST_LATENCY_BUCKETS,
            registry=r,
        ).labels(model_name)
        self._prompt_tokens = Counter(
            "vllm:prompt_tokens", "Prefill tokens processed.", labels, registry=r
        ).labels(model_name)
        self._generation_tokens = Counter(
            "vllm:generation_tokens", "Generation tokens processed.", labels, registry=r
        ).labels(model_name)
        self._success = Counter(
            "vllm:request_success",
            "Successfully finished requests.",
            [*labels, "finished_reason"],
            registry=r,
        )
        self._model_name = model_name
        # vLLM's API server counts HTTP responses the same way (prometheus-fastapi-instrumentator).
        self._http = Counter(
            "http_requests",
            "Total HTTP requests by handler, method and status class.",
            ["handler", "method", "status"],
            registry=r,
        )

    def observe_sequence(self, seq: Sequence, *, finished_reason: str) -> None:
        """Record a sequence when its reader lets go of it, finished or aborted."""
        if seq.first_token_at is not None:
            self._ttft.observe(seq.first_token_at - seq.arrived_at)
            self._prompt_tokens.inc(seq.prompt_tokens)
        if seq.started_at is not None:
            self._queue.observe(seq.started_at - seq.arrived_at)
        self._generation_tokens.inc(seq.tokens_ready)
        if seq.finished_at is None:
            return
        self._e2e.observe(seq.finished_at - seq.arrived_at)
        if seq.output_tokens > 1 and seq.first_token_at is not None:
            self._tpot.observe((seq.finished_at - seq.first_token_at) / (seq.output_tokens - 1))
        self._success.labels(self._model_name, finished_reason).inc()

    def count_http(self, *, handler: str, method: str, status: int) -> None:
        self._http.labels(handler, method, f"{status // 100}xx").inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector(Collector):
    """Gauges read from the scheduler at scrape time, so the hot path never updates them."""

    def __init__(self, model_name: str, scheduler: Scheduler, kv_cache_tokens: int) -> None:
        self._model_name = model_name
        self._scheduler = scheduler
        self._kv_cache_tokens = max(kv_cache_tokens, 1)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self._scheduler
        for name, doc, value in (
            ("vllm:num_requests_running", "Number of requests in model execution batches.", s.num_running),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", s.num_waiting),
            (
                "vllm:kv_cache_usage_perc",
                "KV-cache usage. 1 means 100 percent usage.",
                min(1.0, s.tokens_in_flight / self._kv_cache_tokens),
            ),
        ):
            family = GaugeMetricFamily(name, doc, labels=["model_name"])
            family.add_metric([self._model_name], float(value))
            yield family


class _ContainerCollector(Collector):
    """This process's CPU and memory under cAdvisor's names, and its limits under kube-state-metrics'."""

    def __init__(self, cpu_limit_cores: float, memory_limit_bytes: int) -> None:
        self._cpu_limit = cpu_limit_cores
        self._memory_limit = memory_limit_bytes

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        times = os.times()
        yield CounterMetricFamily(
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed in seconds.",
            value=times.user + times.system,
        )
        yield GaugeMetricFamily(
            "container_memory_working_set_bytes", "Current working set in bytes.", value=resident_bytes()
        )
        limits = GaugeMetricFamily(
            "kube_pod_container_resource_limits",
            "The number of requested limit resource by a container.",
            labels=["resource", "unit"],
        )
        limits.add_metric(["cpu", "core"], self._cpu_limit)
        limits.add_metric(["memory", "byte"], float(self._memory_limit))
        yield limits


def resident_bytes() -> float:
    """Current resident set size: /proc on Linux, else the peak from getrusage (the best portable answer)."""
    try:
        with open("/proc/self/statm") as statm:
            return float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB
