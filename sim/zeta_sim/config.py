"""Settings of one simulated instance (what the CLI flags fill in)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .faults import Faults
from .latency import LatencyModel

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """Everything that makes one instance behave like a model server of a given size."""

    model: str
    """The served model name; requests naming another model get 404."""
    size_b: float = 4.0
    """Parameters in billions; sets the latency defaults (see `latency.py`)."""
    max_seqs: int = 64
    """Sequences that run at once; more wait in a FIFO queue."""
    ttft_ms: float | None = None
    """Fixed part of the time to first token; None for the size-based default."""
    tpot_ms: float | None = None
    """Time per output token with the GPU to itself; None for the size-based default."""
    prefill_us_per_token: float | None = None
    """Prefill time per prompt token in microseconds; None for the size-based default."""
    batch_alpha: float | None = None
    """Batching slowdown at a full batch (1 + alpha); None for the default 1.0."""
    max_model_len: int = 8192
    """Context window: prompt plus output tokens beyond this get 400, as on vLLM."""
    mean_output_tokens: int = 128
    """Mean answer length when a request does not set max_tokens."""
    kv_cache_tokens: int | None = None
    """Tokens the KV cache holds (for vllm:kv_cache_usage_perc); None for 512 per sequence slot."""
    time_scale: float = 1.0
    """Multiplies every delay: 0.1 runs the model ten times faster than life."""
    seed: int = 0
    """Seeds answer lengths and injected errors."""
    stream_interval_ms: float = 20.0
    """Shortest real time between two events of one stream; tokens are grouped to keep to it."""
    cpu_limit: float = 1.0
    """Cores reported as kube_pod_container_resource_limits{resource="cpu"}."""
    memory_limit: int = 2 * GIB
    """Bytes reported as kube_pod_container_resource_limits{resource="memory"}."""
    max_body_bytes: int = 8 * MIB
    """Larger request bodies get 413."""
    faults: Faults = field(default_factory=Faults)
    """Faults on from the start."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must not be empty")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if self.max_model_len < 2:
            raise ValueError("max_model_len must be at least 2")
        if self.stream_interval_ms < 0 or self.cpu_limit <= 0 or self.memory_limit <= 0:
            raise ValueError("stream_interval_ms, cpu_limit and memory_limit must be positive")
        self.latency_model()  # fail at start, not at the first request

    def latency_model(self) -> LatencyModel:
        def seconds(value: float | None, unit: float) -> float | None:
            return None if value is None else value * unit

        return LatencyModel.for_size(
            self.size_b,
            max_seqs=self.max_seqs,
            ttft_base_s=seconds(self.ttft_ms, 1e-3),
            tpot_s=seconds(self.tpot_ms, 1e-3),
            prefill_per_token_s=seconds(self.prefill_us_per_token, 1e-6),
            batch_alpha=self.batch_alpha,
        )

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_cache_tokens if self.kv_cache_tokens is not None else 512 * self.max_seqs
