"""`RoutingPolicy`: how traffic for a set of task classes is shared across a set of backends."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .backend import LabelSelector, SignalQueries
from .common import Complexity, Condition, Duration, Fraction, Model, Name, cel_rules

QUERY_PLACEHOLDERS = ("namespace", "pods", "backends", "window", "quantile")
"""Names a PromQL template may use in braces: ``{namespace}``, ``{pods}`` and ``{backends}`` (regex
alternations of the policy's pods and backend names), ``{window}``, ``{quantile}``. Any other is a spec error."""


Keyword = Annotated[str, Field(min_length=1, max_length=64)]

DEFAULT_OFFLOAD_CONFIDENCE = 0.95
"""The shipped classifier's calibrated choice (``offloadConfidence`` in its weights file; a test keeps the two
equal): the lowest P(simple) at which the calibration split shows, at 95% confidence, that at most 1% of
complex requests pass."""
DEFAULT_OFFLOAD_TASK_CONFIDENCE = 0.9
"""Of 0, 0.8, 0.9 and 0.95, the one with the fewest true capability violations whose quality goodput, summed
over the routing benchmark's seven DES scenarios on the calibration split's prompts, stays within 0.5% of off
(docs/benchmarks.md, "Task doubt off the preferred backends")."""


class BackendSelection(Model):
    """Which ModelBackends (in the policy's namespace) this policy routes to: names, a selector, or both."""

    model_config = cel_rules(("has(self.names) || has(self.selector)", "set names or selector (or both)"))

    names: list[Name] | None = Field(default=None, min_length=1, max_length=256)
    selector: LabelSelector | None = None

    @model_validator(mode="after")
    def _some(self) -> BackendSelection:
        if self.names is None and self.selector is None:
            raise ValueError("set names or selector (or both)")
        return self


class ComplexityRange(Model):
    """Inclusive range of request complexity a class covers."""

    model_config = cel_rules(("self.min <= self.max", "complexity min must not exceed max"))

    min: Complexity = 1
    max: Complexity = 5

    @model_validator(mode="after")
    def _ordered(self) -> ComplexityRange:
        if self.min > self.max:
            raise ValueError("complexity min must not exceed max")
        return self


class TaskClass(Model):
    """A bucket of requests that share a task type, a complexity range and an objective."""

    model_config = cel_rules(
        (
            "!has(self.fallbacks) || self.fallbacks.all(f, !(f in self.preferred))",
            "a backend cannot be both preferred and a fallback",
        )
    )

    name: Name
    task_type: Name = Field(description="Task type requests of this class carry (chat, code, ...).")
    complexity: ComplexityRange = Field(default_factory=ComplexityRange)
    preferred: list[Name] = Field(min_length=1, max_length=32, description="Backends that normally serve it.")
    fallbacks: list[Name] | None = Field(
        default=None, max_length=32, description="Backends that may take spill-over, in order."
    )
    latency_objective: Duration = Field(default="10s", description="Target p95 end-to-end latency.")
    priority: int = Field(default=5, ge=0, le=9, description="Queue priority; 9 is served first.")

    @property
    def latency_objective_seconds(self) -> float:
        return self.seconds("latency_objective")

    @model_validator(mode="after")
    def _disjoint(self) -> TaskClass:
        if set(self.fallbacks or ()) & set(self.preferred):
            raise ValueError("a backend cannot be both preferred and a fallback")
        return self


class ModelAlias(Model):
    """A `model` name clients may send that picks a task type (and optionally a complexity)."""

    alias: str = Field(min_length=1, max_length=253)
    task_type: Name
    complexity: Complexity | None = None


class KeywordRule(Model):
    """Requests whose prompt contains any keyword get this task type (first matching rule wins)."""

    task_type: Name
    keywords: list[Keyword] = Field(min_length=1, max_length=64)
    complexity_bonus: int = Field(default=0, ge=0, le=4, description="Added to the estimated complexity.")


EXAMPLES_MAX_ITEMS = 64
EXAMPLE_MAX_CHARS = 2048
EXAMPLES_MAX_CHARS = 16 * 1024
"""Bounds the schema enforces on ``classifier.examples``: items, characters per text, characters in all."""
EXAMPLES_MAX_TABLE_BYTES = 56 * 1024
"""Bytes the example texts may take in the routing table as it encodes them (JSON, non-ASCII escaped, so a
character costs 1 to 12 bytes). The schema cannot count bytes: the models check it, so the operator reports a
policy over it as InvalidSpec and keeps the last good table. With the labels and the layout (at most 128 bytes an
example, with the longest task type names: 8 KiB for 64) the examples add at most 64 KiB to a table (a test
builds that worst case)."""


class ClassifierExample(Model):
    """A labelled prompt of your own traffic, compared with a request's whole last user turn: give the ask as
    clients send it (a pasted document would dominate the comparison)."""

    text: str = Field(min_length=1, max_length=EXAMPLE_MAX_CHARS, pattern=r"\S")
    task_type: Name
    complexity: Complexity


def normalized_example_text(text: str) -> str:
    """What two example texts are compared by (for duplicates, and by the router for an exact match)."""
    return " ".join(text.lower().split())


def examples_table_bytes(examples: list[ClassifierExample]) -> int:
    """Bytes the example texts take in the routing table's JSON encoding (see EXAMPLES_MAX_TABLE_BYTES)."""
    return sum(len(json.dumps(e.text)) for e in examples)


class ClassifierSettings(Model):
    """How the router turns a request into (task type, complexity, priority)."""

    model_config = cel_rules(
        (
            f"!has(self.examples) || self.examples.map(e, size(e.text)).sum() <= {EXAMPLES_MAX_CHARS}",
            f"classifier.examples may hold at most {EXAMPLES_MAX_CHARS} characters in all",
        )
    )

    task_header: str = Field(default="X-Zeta-Task", max_length=64)
    complexity_header: str = Field(default="X-Zeta-Complexity", max_length=64)
    priority_header: str = Field(default="X-Zeta-Priority", max_length=64)
    default_task_type: Name = "chat"
    model_aliases: list[ModelAlias] = Field(default_factory=list, max_length=64)
    rules: list[KeywordRule] = Field(default_factory=list, max_length=32)
    long_prompt_tokens: int = Field(
        default=2000,
        ge=1,
        le=10_000_000,
        description="Rule classifier only: prompts longer than this gain one complexity level (the learned "
        "model weighs the size of the request itself).",
    )
    offload_confidence: Fraction = Field(
        default=DEFAULT_OFFLOAD_CONFIDENCE,
        description="A request may spill to a backend whose complexity ceiling is below its class's (or its "
        "preferred backends') only when the learned classifier's probability that its complexity is within "
        "that ceiling is at least this; otherwise it stays with the preferred backends or goes up. The "
        "default is the lowest at which the calibration split shows, at 95% confidence, that at most 1% "
        "of complex requests would pass (docs/classifier.md).",
    )
    task_confidence: Fraction = Field(
        default=0.0,
        description="A request goes only to backends that serve every task type it plausibly is: the most "
        "likely task types until together they hold at least this probability. 0 (the default) routes by the "
        "most likely task type alone; a value such as 0.9 keeps requests the learned classifier is unsure of "
        "on the backends that serve all their plausible task types (fewer answers from a model without the "
        "request's task type, but those backends take more of the traffic: docs/benchmarks.md).",
    )
    offload_task_confidence: Fraction = Field(
        default=DEFAULT_OFFLOAD_TASK_CONFIDENCE,
        description="taskConfidence for the backends a request reaches when it leaves its class's preferred "
        "ones (an offload, an overflow, a fallback): there it goes only to backends that serve every task "
        "type it plausibly is at this probability, or waits for the preferred ones. The preferred backends "
        "are unaffected, so no traffic moves to them; it keeps a request the classifier is unsure of from a "
        "model lacking its task type when it would leave them. 0 turns it off; the default was chosen in the "
        "routing benchmark on calibration prompts (docs/benchmarks.md).",
    )
    examples: list[ClassifierExample] = Field(
        default_factory=list,
        max_length=EXAMPLES_MAX_ITEMS,
        description="Labelled prompts of your own traffic. A request whose last user turn is close to one "
        "(hashed word and character n-grams) takes its task type and is at least as complex; only an exact "
        "match (ignoring case and spacing) can make a request look simple. After headers, aliases and rules.",
    )

    @field_validator("examples")
    @classmethod
    def _examples_fit(cls, examples: list[ClassifierExample]) -> list[ClassifierExample]:
        chars = sum(len(e.text) for e in examples)
        if chars > EXAMPLES_MAX_CHARS:  # mirrors the CEL rule
            raise ValueError(f"classifier.examples may hold at most {EXAMPLES_MAX_CHARS} characters in all")
        encoded = examples_table_bytes(examples)
        if encoded > EXAMPLES_MAX_TABLE_BYTES:
            raise ValueError(
                f"the example texts take {encoded} bytes in the routing table (non-ASCII characters are "
                f"escaped), more than {EXAMPLES_MAX_TABLE_BYTES}: shorten or remove some"
            )
        seen: dict[str, int] = {}
        for i, e in enumerate(examples):
            first = seen.setdefault(normalized_example_text(e.text), i)
            if first != i:
                raise ValueError(
                    f"examples[{i}] repeats the text of examples[{first}] (ignoring case and spacing)"
                )
        return examples


SecretName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
"""A DNS-1123 subdomain: the name of a Secret or ConfigMap."""

DataKey = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
"""A key in a Secret's or ConfigMap's data."""


class KeyRef(Model):
    """One key of a Secret or ConfigMap in the policy's own namespace (never another namespace's)."""

    name: SecretName
    key: DataKey


class CABundle(Model):
    """PEM certificates that sign Prometheus's serving certificate: from a ConfigMap or a Secret."""

    model_config = cel_rules(
        ("has(self.configMap) != has(self.secret)", "set exactly one of configMap or secret")
    )

    config_map: KeyRef | None = None
    secret: KeyRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CABundle:  # mirrors the CEL rule above
        if (self.config_map is None) == (self.secret is None):
            raise ValueError("set exactly one of configMap or secret")
        return self


class PrometheusTLS(Model):
    """How an https address is verified. By default against the system's trusted CAs."""

    model_config = cel_rules(
        (
            "!(has(self.ca) && has(self.insecureSkipVerify) && self.insecureSkipVerify)",
            "set ca or insecureSkipVerify, not both",
        )
    )

    ca: CABundle | None = Field(default=None, description="Trust only these CAs (instead of the system's).")
    insecure_skip_verify: bool = Field(
        default=False,
        description="Do not verify the server's certificate (reported in status and by a Warning Event).",
    )

    @model_validator(mode="after")
    def _not_both(self) -> PrometheusTLS:  # mirrors the CEL rule above
        if self.ca is not None and self.insecure_skip_verify:
            raise ValueError("set ca or insecureSkipVerify, not both")
        return self


class BasicAuth(Model):
    """HTTP basic auth; both keys are read from Secrets in the policy's namespace."""

    username: KeyRef
    password: KeyRef


class PrometheusSettings(Model):
    """Where and how the operator reads measurements."""

    model_config = cel_rules(
        ("!(has(self.basicAuth) && has(self.bearerToken))", "set basicAuth or bearerToken, not both")
    )

    address: str = Field(
        default="http://prometheus.monitoring.svc:9090",
        pattern=r"^https?://[^/@\s]+(/\S*)?$",
        max_length=512,
        description="Base URL; credentials belong in basicAuth or bearerToken, never in the address.",
    )
    timeout: Duration = Field(
        default="2s", description="Deadline for all of a cycle's queries together (they run concurrently)."
    )
    window: Duration = Field(default="1m", description="Range for rate() and quantiles: {window}.")
    latency_quantile: Fraction = Field(default=0.95, description="Quantile for the latency signal.")
    queries: SignalQueries = Field(default_factory=SignalQueries)
    tls: PrometheusTLS = Field(default_factory=PrometheusTLS)
    basic_auth: BasicAuth | None = None
    bearer_token: KeyRef | None = Field(
        default=None, description="A Secret key holding a token sent as `Authorization: Bearer`."
    )

    @property
    def timeout_seconds(self) -> float:
        return self.seconds("timeout")

    @property
    def window_seconds(self) -> float:
        return self.seconds("window")

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusSettings:  # mirrors the CEL rule above
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("set basicAuth or bearerToken, not both")
        return self


class Thresholds(Model):
    """Where each signal counts as fully loaded (load = value / threshold, 1.0 at the threshold)."""

    cpu: Fraction = Field(default=0.85, description="Fraction of the CPU limit.")
    memory: Fraction = Field(default=0.9, description="Fraction of the memory limit.")
    latency: float = Field(default=1.0, gt=0, le=100, description="Latency as a multiple of the objective.")
    queue_depth: float = Field(default=8.0, gt=0, le=100_000, description="Requests waiting per endpoint.")
    kv_cache: Fraction = Field(default=0.95, description="KV-cache use.")
    error_rate: Fraction = Field(default=0.2, description="Failed fraction of requests.")


class Adaptation(Model):
    """How fast and how calmly weights follow the measurements."""

    interval: Duration = Field(default="5s", description="Control interval.")
    smoothing: Fraction = Field(default=0.5, description="EWMA factor for new loads (1 = no smoothing).")
    max_step: Fraction = Field(default=0.2, description="Largest change of one weight per interval.")
    weight_floor: Fraction = Field(
        default=0.02,
        description="Share every capable backend keeps, for probing; the ModelBackends serving one model "
        "share one floor.",
    )
    hysteresis: Fraction = Field(default=0.05, description="Ignore weight changes smaller than this.")
    stale_after: Duration = Field(default="60s", description="Then fall back to static preferences.")
    blackout: Duration = Field(default="10s", description="New endpoints get the floor only, this long.")

    @property
    def interval_seconds(self) -> float:
        return self.seconds("interval")

    @property
    def stale_after_seconds(self) -> float:
        return self.seconds("stale_after")

    @property
    def blackout_seconds(self) -> float:
        return self.seconds("blackout")


class OffloadRules(Model):
    """Spill-over from overloaded preferred backends to fallbacks, with hysteresis."""

    model_config = cel_rules(
        ("self.lowWatermark < self.highWatermark", "lowWatermark must be below highWatermark")
    )

    high_watermark: float = Field(default=0.85, gt=0, le=10, description="Start offloading above this load.")
    low_watermark: float = Field(default=0.6, ge=0, le=10, description="Stop offloading below this load.")
    max_complexity: Complexity = Field(
        default=2, description="Only classes up to this complexity spill down."
    )

    @model_validator(mode="after")
    def _watermarks(self) -> OffloadRules:
        if self.low_watermark >= self.high_watermark:
            raise ValueError("lowWatermark must be below highWatermark")
        return self


class QueueSettings(Model):
    """The router's priority queue when every capable endpoint is at capacity."""

    max_size: int = Field(default=256, ge=0, le=100_000)
    max_wait: Duration = "10s"
    aging: Duration = Field(default="2s", description="A waiting request gains one priority level per aging.")
    shed_late: bool = Field(
        default=False,
        description="Let a waiting request go (429 with Retry-After) as soon as it can no longer be answered "
        "within its class's latencyObjective: when it has waited longer than the objective less the service "
        "time the router has lately seen on the fastest backend it may use. Off: it waits up to maxWait. A "
        "request is never refused while a capable endpoint has room.",
    )

    @property
    def max_wait_seconds(self) -> float:
        return self.seconds("max_wait")

    @property
    def aging_seconds(self) -> float:
        return self.seconds("aging")


class RoutingTableRef(Model):
    """The ConfigMap (in the policy's namespace) the operator writes and the routers read."""

    config_map_name: Name


class RoutingPolicySpec(Model):
    """Desired state of a RoutingPolicy."""

    model_config = cel_rules(
        (
            "self.classes.all(c, self.classes.exists_one(d, d.name == c.name))",
            "task class names must be unique",
        ),
        (
            "!has(self.defaultClass) || self.classes.exists(c, c.name == self.defaultClass)",
            "defaultClass must name one of the classes",
        ),
        (
            "!has(self.adaptation) || !has(self.adaptation.staleAfter) || !has(self.adaptation.interval)"
            " || duration(self.adaptation.staleAfter) > duration(self.adaptation.interval)",
            "adaptation.staleAfter must be longer than adaptation.interval",
        ),
        (
            "!has(self.classifier) || !has(self.classifier.examples)"
            " || self.classifier.examples.all(e, self.classes.exists(c, c.taskType == e.taskType))",
            "every classifier example's taskType must be the taskType of a class",
        ),
    )

    backends: BackendSelection
    routing_table: RoutingTableRef
    classes: list[TaskClass] = Field(min_length=1, max_length=32)
    default_class: Name | None = Field(default=None, description="Class for requests no class matches.")
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    adaptation: Adaptation = Field(default_factory=Adaptation)
    offload: OffloadRules = Field(default_factory=OffloadRules)
    queue: QueueSettings = Field(default_factory=QueueSettings)

    @model_validator(mode="after")
    def _cross_field(self) -> RoutingPolicySpec:  # mirrors the CEL rules above
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError("task class names must be unique")
        if self.default_class is not None and self.default_class not in names:
            raise ValueError("defaultClass must name one of the classes")
        if self.adaptation.stale_after_seconds <= self.adaptation.interval_seconds:
            raise ValueError("adaptation.staleAfter must be longer than adaptation.interval")
        served = {c.task_type for c in self.classes}
        if any(e.task_type not in served for e in self.classifier.examples):
            raise ValueError("every classifier example's taskType must be the taskType of a class")
        return self


class ClassWeights(Model):
    """Live weights of one task class and why they are what they are."""

    name: Name
    weights: dict[str, float] = Field(default_factory=dict, max_length=256)
    reasons: dict[str, str] = Field(default_factory=dict, max_length=256)
    offloading: bool = False


class TableRef(Model):
    """The routing table last written."""

    config_map: str = Field(max_length=253)
    version: int = Field(ge=0)
    hash: str = Field(max_length=128)


class PrometheusConnection(Model):
    """How the operator reached Prometheus in the last cycle."""

    tls: Literal["Verified", "InsecureSkipVerify", "Plaintext"] = Field(
        description="Verified: https with certificate checks; InsecureSkipVerify: https without; Plaintext: http."
    )
    auth: Literal["None", "BasicAuth", "BearerToken"] = "None"


class RoutingPolicyStatus(Model):
    """Observed state of a RoutingPolicy, written by the operator."""

    classes: list[ClassWeights] = Field(default_factory=list, max_length=32)
    weights_summary: str = Field(default="", max_length=1024, description="One line for kubectl get.")
    backend_count: int = Field(default=0, ge=0)
    table: TableRef | None = None
    observed_generation: int | None = Field(default=None, ge=0)
    last_updated: str | None = Field(default=None, max_length=64)
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    prometheus: PrometheusConnection | None = None
