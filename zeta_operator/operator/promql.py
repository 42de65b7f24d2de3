"""PromQL templates with named placeholders, and the defaults that work on a real cluster.

A placeholder is a bare name in braces, ``{window}``. Label matchers never look like that (they always hold an
operator: ``{pod=~"a|b"}``), so templates need no escaping and read like the PromQL they become.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..api.policy import QUERY_PLACEHOLDERS

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

_SEL = 'namespace="{namespace}", pod=~"{pods}"'
_ROUTER = 'backend=~"{backends}"'

DEFAULT_QUERIES: Mapping[str, str] = {
    # cAdvisor usage against kube-state-metrics limits, worst container per pod.
    "cpu": (
        f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{_SEL}, container!=""}}[{{window}}]))'
        f' / sum by (pod) (kube_pod_container_resource_limits{{{_SEL}, resource="cpu"}})'
    ),
    "memory": (
        f'sum by (pod) (container_memory_working_set_bytes{{{_SEL}, container!=""}})'
        f' / sum by (pod) (kube_pod_container_resource_limits{{{_SEL}, resource="memory"}})'
    ),
    # The router's own histograms and counters, by backend and task class.
    "latency": (
        "histogram_quantile({quantile}, sum by (backend, task_class, le) "
        f"(rate(zeta_router_request_duration_seconds_bucket{{{_ROUTER}}}[{{window}}])))"
    ),
    "requestRate": f"sum by (backend) (rate(zeta_router_requests_total{{{_ROUTER}}}[{{window}}]))",
    "errorRate": (
        f'sum by (backend) (rate(zeta_router_requests_total{{{_ROUTER}, code=~"5..|error"}}[{{window}}]))'
        f" / sum by (backend) (rate(zeta_router_requests_total{{{_ROUTER}}}[{{window}}]))"
    ),
}

ENGINE_QUERIES: Mapping[str, Mapping[str, str]] = {
    "vllm": {
        "queueDepth": f"sum by (pod) (vllm:num_requests_waiting{{{_SEL}}})",
        "running": f"sum by (pod) (vllm:num_requests_running{{{_SEL}}})",
        # vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc; read whichever the server exports.
        "kvCache": f"max by (pod) (vllm:kv_cache_usage_perc{{{_SEL}}} or vllm:gpu_cache_usage_perc{{{_SEL}}})",
    },
    "sglang": {
        "queueDepth": f"sum by (pod) (sglang:num_queue_reqs{{{_SEL}}})",
        "running": f"sum by (pod) (sglang:num_running_reqs{{{_SEL}}})",
        "kvCache": f"max by (pod) (sglang:token_usage{{{_SEL}}})",
    },
    "none": {},
}


def placeholders(template: str) -> set[str]:
    """The placeholder names a template uses."""
    return set(_PLACEHOLDER.findall(template))


def unknown_placeholders(template: str) -> list[str]:
    return sorted(placeholders(template) - set(QUERY_PLACEHOLDERS))


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill every placeholder; a name missing from ``values`` raises KeyError (validated specs never do)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def regex_alternation(names: list[str]) -> str:
    """``a|b|c`` with regex metacharacters escaped, for ``=~`` matchers; matches nothing when empty."""
    escaped = sorted({re.sub(r"([.+*?()\[\]{}|^$\\])", r"\\\\\1", n) for n in names})
    return "|".join(escaped) if escaped else "$^"
