"""`ModelBackend`: one deployed model server (vLLM, SGLang, TGI, llama.cpp, Ollama, ...)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .common import BackendState, BaseUrl, Complexity, Condition, Model, Name, PromQL, cel_rules

SIGNALS = ("cpu", "memory", "latency", "requestRate", "errorRate", "queueDepth", "running", "kvCache")
"""Signals the operator reads per backend; each has a default PromQL template it may override."""


class ServiceRef(Model):
    """A Service in the backend's namespace; its ready EndpointSlice addresses become the endpoints."""

    name: Name
    port: int = Field(ge=1, le=65535, description="The Service's target port on the pods.")


class LabelSelector(Model):
    """Labels that must all match (metav1.LabelSelector's matchLabels)."""

    match_labels: dict[str, str] = Field(min_length=1, max_length=16)


class PodSelector(Model):
    """Ready pods in the backend's namespace with these labels, reached on one port."""

    match_labels: dict[str, str] = Field(min_length=1, max_length=16)
    port: int = Field(ge=1, le=65535)


class Endpoints(Model):
    """Where the model server listens: exactly one of service, selector or static."""

    model_config = cel_rules(
        (
            "[has(self.service), has(self.selector), has(self.static)].filter(x, x).size() == 1",
            "set exactly one of service, selector or static",
        )
    )

    service: ServiceRef | None = None
    selector: PodSelector | None = None
    static: list[BaseUrl] | None = Field(
        default=None, min_length=1, max_length=64, description="Base URLs such as http://10.0.0.7:8000."
    )
    scheme: Literal["http", "https"] = Field(default="http", description="Scheme for service and selector.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Endpoints:  # mirrors the CEL rule above
        if sum(x is not None for x in (self.service, self.selector, self.static)) != 1:
            raise ValueError("set exactly one of service, selector or static")
        return self


class Capabilities(Model):
    """What this model can do well; the router never sends it anything outside this."""

    tasks: list[Name] = Field(
        min_length=1, max_length=16, description="Task types served, e.g. chat, code, summarize, reasoning."
    )
    max_complexity: Complexity = Field(description="Highest complexity (1-5) it handles well.")
    context_window: int = Field(default=8192, ge=256, le=10_000_000, description="Tokens of context.")


class Capacity(Model):
    """How much concurrent work one endpoint takes before requests should wait elsewhere."""

    max_concurrency: int = Field(default=16, ge=1, le=10_000, description="Concurrent requests per endpoint.")


class SignalQueries(Model):
    """PromQL templates, one per signal; unset ones keep the default (placeholders: see QUERY_PLACEHOLDERS)."""

    cpu: PromQL | None = Field(default=None, description="CPU used as a fraction of the CPU limit, by pod.")
    memory: PromQL | None = Field(default=None, description="Working set as a fraction of the limit, by pod.")
    latency: PromQL | None = Field(default=None, description="Latency quantile in seconds, by task class.")
    request_rate: PromQL | None = Field(default=None, description="Requests per second.")
    error_rate: PromQL | None = Field(default=None, description="Failed requests as a fraction of all.")
    queue_depth: PromQL | None = Field(default=None, description="Requests waiting in the engine, by pod.")
    running: PromQL | None = Field(default=None, description="Requests running in the engine, by pod.")
    kv_cache: PromQL | None = Field(default=None, description="KV-cache use as a fraction, by pod.")


class MetricsOverrides(Model):
    """How the operator measures this backend."""

    engine: Literal["vllm", "sglang", "none"] = Field(
        default="vllm", description="Which engine metric names to read for queue depth and KV-cache use."
    )
    queries: SignalQueries = Field(default_factory=SignalQueries)


class ModelBackendSpec(Model):
    """Desired state of a ModelBackend."""

    model: str = Field(min_length=1, max_length=253, description="The name the server serves.")
    endpoints: Endpoints
    capabilities: Capabilities
    capacity: Capacity = Field(default_factory=Capacity)
    cost: float = Field(default=1.0, ge=0.0, le=1000.0, description="Relative cost per request.")
    size_billions: float | None = Field(
        default=None,
        gt=0,
        le=10_000,
        description="Parameters in billions; orders spill-over (smaller first).",
    )
    metrics: MetricsOverrides = Field(default_factory=MetricsOverrides)


class Signal(Model):
    """One measurement, kept apart from 'could not measure'."""

    value: float | None = Field(default=None, description="Absent when not measured.")
    state: Literal["ok", "no-data", "error"]
    observed_at: str = Field(max_length=64, description="When it was read (RFC 3339).")
    message: str = Field(default="", max_length=512)


class ModelBackendStatus(Model):
    """Observed state of a ModelBackend, written by the operator."""

    state: BackendState = "Unknown"
    load: float | None = Field(
        default=None, ge=0, description="Worst of the normalised signals; 1 = at limit."
    )
    ready_endpoints: list[str] = Field(default_factory=list, max_length=256)
    endpoint_count: int = Field(default=0, ge=0)
    signals: dict[str, Signal] = Field(default_factory=dict, max_length=len(SIGNALS))
    observed_generation: int | None = Field(default=None, ge=0)
    last_updated: str | None = Field(default=None, max_length=64)
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
