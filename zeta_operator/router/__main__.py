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

import asyncio
import sys
from collections.abc import Sequence

from .app import serve
from .kubeapi import KubeConfigError
from .logs import configure
from .model import LearnedModel, ModelError, load, shipped
from .second_opinion import Encoder, Head, SecondOpinionError, load_encoder, load_head
from .settings import RouterSettings, build_parser, from_args


def parse_args(argv: Sequence[str] | None = None) -> tuple[RouterSettings, str]:
    """The router's settings and the log level, from flags and ZETA_ROUTER_* variables (flags win)."""
    parser = build_parser(prog="zeta-router", description=__doc__)
    args = parser.parse_args(argv)
    return from_args(parser, args), args.log_level


def load_classifier(settings: RouterSettings) -> LearnedModel | None:
    """The learned model, or None when the rule classifier was chosen; ModelError when the weights are
    unusable."""
    if settings.classifier == "rules":
        return None
    if settings.classifier_weights is not None:
        return load(settings.classifier_weights)
    return shipped()


def load_second_opinion(settings: RouterSettings) -> tuple[Head, Encoder] | None:
    """The encoder and its head when --second-opinion encoder is set; SecondOpinionError when unusable."""
    if settings.second_opinion == "off":
        return None
    if settings.classifier != "learned":
        raise SecondOpinionError(
            "the second opinion revises the learned classifier's answers: not with --classifier rules"
        )
    head = load_head(settings.second_opinion_head) if settings.second_opinion_head else load_head()
    return head, load_encoder()


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
        second_opinion = load_second_opinion(settings)
    except SecondOpinionError as e:
        print(
            f"zeta-router: {e}\nzeta-router: not starting (or run without --second-opinion).", file=sys.stderr
        )
        sys.exit(2)
    try:
        asyncio.run(serve(settings, model=model, second_opinion=second_opinion))
    except KubeConfigError as e:
        print(f"zeta-router: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
