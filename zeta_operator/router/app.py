"""The aiohttp application: OpenAI-compatible routes, health, readiness, metrics, and the process lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .admission import Admission
from .balancer import picker
from .endpoints import EndpointTracker
from .kubeapi import KubeCredentials, load_credentials
from .metrics import RouterMetrics
from .model import LearnedModel
from .occupancy import Occupancy, poll_engines
from .payload import Kind
from .proxy import NO_BACKEND, Forwarder, error_response
from .second_opinion import ENCODER, Encoder, Head, SecondOpinion
from .settings import RouterSettings, TableConfigMap, TableFile
from .snapshot import TableSnapshot
from .tables import TableStore, watch_configmap, watch_file

log = logging.getLogger("zeta.router")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

UNCLASSIFIED = "unknown"
"""The task_class label of requests rejected before classification (the default of proxy._Request)."""

OFFER_INTERVAL = 1.0
"""How often waiters are offered capacity that appeared without a release (ejection ended, ...)."""


@dataclass
class Lifecycle:
    draining: bool = False
    """Set on SIGTERM: /readyz fails and every response closes its connection (clients reconnect elsewhere)."""


def build_app(
    *,
    forwarder: Forwarder,
    store: TableStore,
    metrics: RouterMetrics,
    settings: RouterSettings,
    lifecycle: Lifecycle,
    classifier: dict[str, str],
) -> web.Application:
    """``classifier``: which classifier runs (`classifier_details`), reported by /healthz."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_json_errors])

    def route(kind: Kind) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await forwarder.handle(request, kind)

        return handler

    async def models(request: web.Request) -> web.Response:
        snapshot = store.current
        if snapshot is None:
            return error_response(503, "the router has no routing table yet", code="not_ready", retry_after=1)
        return web.Response(body=snapshot.models_body, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "classifier": classifier})

    async def readyz(request: web.Request) -> web.Response:
        if lifecycle.draining:
            return web.json_response({"status": "draining"}, status=503)
        if store.current is None:
            return web.json_response({"status": "no routing table"}, status=503)
        return web.json_response({"status": "ready", "tableVersion": store.current.version})

    async def prometheus(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    app.router.add_post("/v1/chat/completions", route("chat"))
    app.router.add_post("/v1/completions", route("completion"))
    app.router.add_post("/v1/embeddings", route("embedding"))
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)

    async def close_connections_while_draining(request: web.Request, response: web.StreamResponse) -> None:
        # A keep-alive client would otherwise stay pinned to this router until the listener closes; with
        # "Connection: close" its next request opens a new connection, which the load balancer sends to a
        # router that is still ready.
        if lifecycle.draining:
            response.force_close()  # closes the connection after this response...
            response.headers["Connection"] = "close"  # ...and says so (headers are already prepared)

    app.on_response_prepare.append(close_connections_while_draining)
    return app


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own 404/405/413/... as OpenAI-style JSON; unexpected errors as a 500 that names no secret."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        response = error_response(e.status, e.reason, code=e.reason.lower().replace(" ", "_"))
        if isinstance(e, web.HTTPMethodNotAllowed):
            response.headers["Allow"] = ", ".join(sorted(e.allowed_methods))
        return response
    except Exception:
        log.exception("unexpected error", extra={"fields": {"path": request.path}})
        return error_response(500, "internal router error", code="internal_error")


def classifier_details(model: LearnedModel | None, second_opinion: Head | None = None) -> dict[str, str]:
    if model is None:
        return {
            "kind": "rules",
            "reason": "chosen with --classifier rules: keyword vocabulary, no confidence",
        }
    details = {"kind": "learned", "weights": model.source, "corpus": model.corpus, "secondOpinion": "off"}
    if second_opinion is not None:
        details["secondOpinion"] = (
            f"{ENCODER}, head {second_opinion.source}, asked below a task probability of {second_opinion.ask_below:g}"
        )
    return details


async def serve(
    settings: RouterSettings,
    *,
    model: LearnedModel | None,
    second_opinion: tuple[Head, Encoder] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then drain without losing a request, and return.

    ``model``: the learned classifier (loaded by the caller, which refuses to start without it), or None when
    the rule classifier was chosen; ``second_opinion``: the encoder and its head (`second_opinion`), if asked
    for.

    Draining has two phases. For ``drain_delay`` seconds /readyz fails but the listener keeps accepting and
    serving: in Kubernetes, kube-proxy, gateways and other load balancers learn of the endpoint's removal
    seconds after the kubelet sends SIGTERM, and keep opening new connections to this pod until then. Then the
    listener closes and requests in flight, streams included, get up to ``shutdown_grace`` seconds to finish.
    """
    metrics = RouterMetrics()
    details = classifier_details(model, second_opinion[0] if second_opinion else None)
    metrics.classifier.labels(details["kind"], details.get("weights", "")).set(1)
    tracker = EndpointTracker(settings.ejection)
    # Zeta's routing reads the engines' own occupancy; the benchmark baselines keep to their own counts.
    engines = None
    if settings.strategy == "weighted" and settings.engine_poll > 0:
        engines = Occupancy(tracker, replicas=settings.replicas, max_age=3 * settings.engine_poll)
    admission = Admission(
        tracker, metrics, random.Random(settings.seed), pick=picker(settings.strategy), load=engines
    )

    def adopt(snapshot: TableSnapshot) -> None:
        admission.configure(snapshot.table.queue, snapshot.endpoint_owner)
        _forget_removed_series(metrics, snapshot)

    # With the engines read, an endpoint's cap is the engine's whole cap: `Occupancy` shares it among the
    # replicas; without, each replica's table keeps its share of it.
    replicas = 1 if engines is not None else settings.replicas
    store = TableStore(metrics, model=model, replicas=replicas, on_swap=adopt)
    credentials = _credentials(settings)
    lifecycle = Lifecycle()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=30),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
        timeout=aiohttp.ClientTimeout(total=None),
    )
    opinion = None
    if second_opinion is not None:
        opinion = SecondOpinion(
            *second_opinion,
            metrics,
            backlog=settings.second_opinion_backlog,
            timeout=settings.second_opinion_timeout,
        )
    forwarder = Forwarder(
        session=session,
        store=store,
        admission=admission,
        metrics=metrics,
        settings=settings,
        second_opinion=opinion,
    )
    app = build_app(
        forwarder=forwarder,
        store=store,
        metrics=metrics,
        settings=settings,
        lifecycle=lifecycle,
        classifier=details,
    )
    background = [
        asyncio.create_task(_table_source(settings, store, credentials), name="table-source"),
        asyncio.create_task(_offer_periodically(admission), name="queue-offers"),
    ]
    if engines is not None:
        poll = poll_engines(
            session, store, engines, metrics, interval=settings.engine_poll, on_reading=admission.offer_all
        )
        background.append(asyncio.create_task(poll, name="engine-reads"))
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=settings.shutdown_grace,
        auto_decompress=False,  # the handlers decode request bodies themselves: payload.decompress
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_address=True)
        await site.start()
        log.info("listening", extra={"fields": {"host": settings.host, "port": settings.port}})
        async with _signals() as received:
            await received.acquire()
            lifecycle.draining = True
            log.info(
                "draining",
                extra={
                    "fields": {
                        "drain_seconds": settings.drain_delay,
                        "grace_seconds": settings.shutdown_grace,
                    }
                },
            )
            # Still accepting and serving while load balancers catch up; a second signal (an impatient ^C)
            # cuts the delay short.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(received.acquire(), settings.drain_delay)
        log.info("closing the listener", extra={"fields": {"grace_seconds": settings.shutdown_grace}})
    finally:
        await runner.cleanup()  # stops accepting, waits for in-flight requests up to the grace period
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await session.close()
        if opinion is not None:
            opinion.close()
    log.info("stopped")


def _forget_removed_series(metrics: RouterMetrics, snapshot: TableSnapshot) -> None:
    """Series of backends, classes and endpoints the new table no longer has go away (a request still in
    flight on a removed backend may bring one back; the next table change removes it again)."""
    table = snapshot.table
    metrics.forget_except(
        backends={b.name for b in table.backends} | {NO_BACKEND},
        classes={c.name for c in table.classes} | {UNCLASSIFIED},
        endpoints=snapshot.endpoint_owner.keys(),
    )


def _credentials(settings: RouterSettings) -> KubeCredentials | None:
    source = settings.table_source
    if not isinstance(source, TableConfigMap):
        return None
    credentials = load_credentials(source.kubeconfig)
    log.info(
        "kubernetes credentials",
        extra={"fields": {"source": credentials.source, "server": credentials.server}},
    )
    return credentials


async def _table_source(
    settings: RouterSettings, store: TableStore, credentials: KubeCredentials | None
) -> None:
    source = settings.table_source
    if isinstance(source, TableFile):
        await watch_file(source.path, store, interval=source.poll_seconds)
    else:
        assert credentials is not None
        await watch_configmap(
            credentials, source.namespace, source.name, store, watch_seconds=source.watch_seconds
        )


async def _offer_periodically(admission: Admission) -> None:
    while True:
        await asyncio.sleep(OFFER_INTERVAL)
        if admission.waiting:
            admission.offer_all()


@contextlib.asynccontextmanager
async def _signals() -> AsyncIterator[asyncio.Semaphore]:
    """A semaphore released once per SIGTERM or SIGINT while the block runs."""
    received = asyncio.Semaphore(0)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, received.release)
    try:
        yield received
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
