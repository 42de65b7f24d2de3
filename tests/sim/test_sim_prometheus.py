"""A real Prometheus scrapes a real simulator: the names parse, and the target labels make the
Kubernetes-style queries work."""

from __future__ import annotations

from zeta_dev.launch.sim import SimSpec, start_sims
from zeta_dev.localcluster.prometheus import Prometheus

TARGET_LABELS = {"namespace": "t", "pod": "p-0", "container": "server", "backend": "b"}
QUERIES = [
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:time_to_first_token_seconds_bucket",
    "vllm:e2e_request_latency_seconds_bucket",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:request_success_total",
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    'kube_pod_container_resource_limits{resource="cpu"}',
    'kube_pod_container_resource_limits{resource="memory"}',
    # What the operator asks: CPU used as a fraction of the limit, and a latency quantile, by pod.
    'sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="t", container="server"}[10s]))'
    ' / sum by (pod) (kube_pod_container_resource_limits{namespace="t", container="server", resource="cpu"})',
    "histogram_quantile(0.9, sum by (pod, le) (rate(vllm:e2e_request_latency_seconds_bucket[10s])))",
]


def test_prometheus_scrapes_every_series_with_the_target_labels(http, eventually) -> None:
    with (
        Prometheus.running(scrape_interval="1s") as prom,
        start_sims([SimSpec(model="p", time_scale=0.05)]) as (sim,),
    ):
        prom.set_targets("sim", {sim.address: TARGET_LABELS})
        for name in QUERIES:

            def answered(promql: str = name) -> list[dict[str, object]]:
                # Keep traffic flowing so rates and quantiles have something to show.
                http.post(f"{sim.url}/v1/completions", {"prompt": "hello", "max_tokens": 3})
                return [r for r in prom.query(promql) if r["value"][1] not in ("NaN", "+Inf", "-Inf")]  # type: ignore[index]

            result = eventually(answered, timeout=60, what=f"Prometheus to answer {name}")
            labels = result[0]["metric"]
            assert labels.get("pod") == "p-0", (name, labels)
            if "(" not in name:  # raw series carry every target label and the model's own labels
                assert {k: labels[k] for k in TARGET_LABELS} == TARGET_LABELS
                if name.startswith("vllm:"):
                    assert labels["model_name"] == "p"
        used = float(prom.query(QUERIES[-2])[0]["value"][1])  # type: ignore[index]
        assert 0 <= used < 4  # a fraction of one core's limit, on a 2-core machine at most ~2
