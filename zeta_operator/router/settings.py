"""The router's own settings (everything that is not in the routing table): CLI flags and ZETA_ROUTER_* env."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .balancer import Strategy


@dataclass(frozen=True, kw_only=True)
class TableFile:
    """Read the routing table from a file and reload it when it changes."""

    path: Path
    poll_seconds: float = 0.5
    """How often mtime and size are compared (an atomic rename also changes the inode)."""


@dataclass(frozen=True, kw_only=True)
class TableConfigMap:
    """Watch one ConfigMap through the Kubernetes API."""

    namespace: str
    name: str
    kubeconfig: Path | None = None
    """A kubeconfig file; without it $KUBECONFIG, else the in-cluster ServiceAccount, else ~/.kube/config
    (loaded by the kubernetes library: tokens, client certificates, exec plugins, auth providers)."""
    watch_seconds: int = 240
    """Server-side timeout of one watch request; the watch then resumes from the last resourceVersion."""


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Upstream time limits, in seconds."""

    connect: float = 2.0
    """TCP (and TLS) connect to one endpoint; a connect failure is retried on another endpoint."""
    first_byte: float = 120.0
    """From sending the request to the first body byte (for a non-streamed answer, the whole generation);
    also the longest silence allowed between two chunks of a stream."""
    total: float = 600.0
    """The whole upstream exchange, streaming included."""
    client_body: float = 30.0
    """Reading the client's request body; a client slower than this gets 408."""


@dataclass(frozen=True, kw_only=True)
class Ejection:
    """Passive outlier ejection: endpoints that keep failing get no new requests for a while."""

    consecutive_failures: int = 3
    """Failures in a row (connect error, 5xx, timeout) that eject an endpoint."""
    base_seconds: float = 5.0
    """First ejection time; it doubles on each ejection in a row."""
    max_seconds: float = 60.0
    """Cap of the ejection time."""


@dataclass(frozen=True, kw_only=True)
class RouterSettings:
    """Everything the router process needs besides the table."""

    host: str = "0.0.0.0"
    port: int = 8080
    table_source: TableFile | TableConfigMap
    timeouts: Timeouts = Timeouts()
    ejection: Ejection = Ejection()
    max_body_bytes: int = 10 * 1024 * 1024
    """Largest request body accepted (413 above it)."""
    retries: int = 2
    """Extra attempts on other endpoints when nothing was sent to the client yet."""
    drain_delay: float = 5.0
    """On SIGTERM, how long the router keeps accepting and serving new connections while /readyz already
    fails, so that kube-proxy and load balancers stop sending traffic before the listener closes (endpoint
    removal reaches them seconds after SIGTERM). 0 closes the listener at once."""
    shutdown_grace: float = 30.0
    """After the drain delay, when the listener has closed: how long in-flight requests (streams included)
    may take to finish before they are cut. The pod's terminationGracePeriodSeconds must exceed
    drain_delay + shutdown_grace."""
    access_log: bool = False
    """One JSON line per request (no prompt, no headers)."""
    seed: int | None = None
    """Seed of the balancer's random choices (tests); None draws one from the OS."""
    classifier: str = "learned"
    """How requests are classified when headers, aliases and the policy's rules leave it open: "learned" (the
    model shipped with the router; the router refuses to start if its weights are missing or corrupt) or
    "rules" (the built-in keyword vocabulary, without calibrated confidence: an explicit choice that /healthz
    and the zeta_router_classifier_info metric report)."""
    classifier_weights: Path | None = None
    """Another weights file for the learned classifier (default: the one in the package)."""
    strategy: Strategy = "weighted"
    """How an endpoint is picked: "weighted" (the operator's weights, Zeta's routing), or a benchmark
    baseline that ignores them: "round-robin" or "least-request" over the capable endpoints."""
