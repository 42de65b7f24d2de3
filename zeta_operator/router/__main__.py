"""zeta-router: the OpenAI-compatible data plane.

    zeta-router --listen 0.0.0.0:8080 --table-file /etc/zeta/routing-table.json
    zeta-router --listen 0.0.0.0:8080 --configmap zeta-system/zeta-routes-demo [--kubeconfig ~/.kube/config]

Every flag can also come from the environment as ZETA_ROUTER_<NAME>: ``--max-body-bytes`` is
ZETA_ROUTER_MAX_BODY_BYTES, and the timeouts are ZETA_ROUTER_TIMEOUT_CONNECT, _FIRST_BYTE, _TOTAL and
_CLIENT_BODY (as in manifests/router/); flags win. Durations take 250ms, 5s, 1m30s or plain seconds.

On SIGTERM the router fails /readyz, keeps serving for --drain-delay (load balancers catch up), closes its
listener, and gives requests in flight --shutdown-grace to finish: terminationGracePeriodSeconds must exceed
the sum.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..api.common import parse_duration
from .app import serve
from .balancer import STRATEGIES
from .kubeapi import KubeConfigError
from .logs import configure
from .model import LearnedModel, ModelError, load, shipped
from .settings import Ejection, RouterSettings, TableConfigMap, TableFile, Timeouts

ENV_PREFIX = "ZETA_ROUTER_"
CLASSIFIERS = ("learned", "rules")


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        try:
            value = parse_duration(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _seconds(text: str) -> float:
    value = _duration(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above zero")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zeta-router", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--listen", default="0.0.0.0:8080", help="host:port to serve on (default %(default)s)")
    p.add_argument("--table-file", type=Path, help="routing table JSON file, reloaded when it changes")
    p.add_argument("--configmap", help="NAMESPACE/NAME of the routing table ConfigMap to watch")
    p.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig for --configmap (default: $KUBECONFIG, else the in-cluster ServiceAccount)",
    )
    p.add_argument(
        "--watch-seconds",
        type=_positive_int,
        default=240,
        help="length of one ConfigMap watch request (default 240)",
    )
    p.add_argument(
        "--connect-timeout",
        dest="timeout_connect",
        type=_seconds,
        default=2.0,
        help="upstream connect (default 2s)",
    )
    p.add_argument(
        "--first-byte-timeout",
        dest="timeout_first_byte",
        type=_seconds,
        default=120.0,
        help="upstream first byte (default 120s)",
    )
    p.add_argument(
        "--total-timeout",
        dest="timeout_total",
        type=_seconds,
        default=600.0,
        help="whole upstream exchange (default 600s)",
    )
    p.add_argument(
        "--body-timeout",
        dest="timeout_client_body",
        type=_seconds,
        default=30.0,
        help="reading the client's body (default 30s)",
    )
    p.add_argument(
        "--max-body-bytes", type=_positive_int, default=10 * 1024 * 1024, help="request body limit"
    )
    p.add_argument("--retries", type=int, default=2, help="attempts on other endpoints before the first byte")
    p.add_argument("--eject-after", type=_positive_int, default=3, help="consecutive failures that eject")
    p.add_argument(
        "--eject-time", type=_seconds, default=5.0, help="first ejection time, doubling (default 5s)"
    )
    p.add_argument("--eject-max-time", type=_seconds, default=60.0, help="longest ejection (default 60s)")
    p.add_argument(
        "--drain-delay",
        type=_duration,
        default=5.0,
        help="on SIGTERM, keep accepting for this long while /readyz fails (default 5s; 0: close at once)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=_seconds,
        default=30.0,
        help="then, time for requests in flight to finish (default 30s)",
    )
    p.add_argument("--access-log", action="store_true", help="one JSON line per request")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--seed", type=int, help="seed the balancer's random choices (tests)")
    p.add_argument(
        "--classifier",
        choices=CLASSIFIERS,
        default="learned",
        help="learned (default: the shipped model, with calibrated confidence) or rules (the built-in "
        "keyword vocabulary; no confidence, so spills follow the estimated complexity alone)",
    )
    p.add_argument(
        "--classifier-weights", type=Path, help="weights file of the learned classifier (default: shipped)"
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="weighted",
        help="endpoint choice: weighted (default: the operator's weights) or a benchmark baseline",
    )
    return p


def _env_defaults(parser: argparse.ArgumentParser) -> None:
    """ZETA_ROUTER_<DEST> overrides each default (typed like the flag)."""
    for action in parser._actions:
        value = os.environ.get(ENV_PREFIX + action.dest.upper())
        if value is None or action.dest == "help":
            continue
        if isinstance(action, argparse._StoreTrueAction):
            action.default = value.lower() in ("1", "true", "yes")
        elif action.type is not None and callable(action.type):
            action.default = action.type(value)
        else:
            action.default = value


def parse_args(argv: Sequence[str] | None = None) -> tuple[RouterSettings, str]:
    parser = _parser()
    _env_defaults(parser)
    args = parser.parse_args(argv)
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
        source = TableConfigMap(
            namespace=namespace, name=name, kubeconfig=args.kubeconfig, watch_seconds=args.watch_seconds
        )
    settings = RouterSettings(
        host=host.strip("[]"),
        port=int(port),
        table_source=source,
        timeouts=Timeouts(
            connect=args.timeout_connect,
            first_byte=args.timeout_first_byte,
            total=args.timeout_total,
            client_body=args.timeout_client_body,
        ),
        ejection=Ejection(
            consecutive_failures=args.eject_after,
            base_seconds=args.eject_time,
            max_seconds=args.eject_max_time,
        ),
        max_body_bytes=args.max_body_bytes,
        retries=max(0, args.retries),
        drain_delay=args.drain_delay,
        shutdown_grace=args.shutdown_grace,
        access_log=args.access_log,
        seed=args.seed,
        classifier=args.classifier,
        classifier_weights=args.classifier_weights,
        strategy=args.strategy,
    )
    return settings, args.log_level


def load_classifier(settings: RouterSettings) -> LearnedModel | None:
    """The learned model, or None when the rule classifier was chosen; ModelError when the weights are
    unusable."""
    if settings.classifier == "rules":
        return None
    if settings.classifier_weights is not None:
        return load(settings.classifier_weights)
    return shipped()


def main(argv: Sequence[str] | None = None) -> None:
    settings, level = parse_args(argv)
    configure(level)
    try:
        model = load_classifier(settings)
    except ModelError as e:
        # Never a silent fallback: without its model the router would send every request to the default.
        print(
            f"zeta-router: the learned classifier cannot be loaded: {e}\n"
            "zeta-router: not starting. Reinstall the package (or retrain), or choose the rule classifier "
            "explicitly with --classifier rules (ZETA_ROUTER_CLASSIFIER=rules).",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        asyncio.run(serve(settings, model=model))
    except KubeConfigError as e:
        print(f"zeta-router: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
