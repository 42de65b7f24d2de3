"""The aiohttp application: OpenAI-compatible routes, health, readiness, metrics, and the process lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .admission import Admission
from .endpoints import EndpointTracker
from .kubeapi import KubeCredentials, from_kubeconfig, in_cluster
from .metrics import RouterMetrics
from .payload import Kind
from .proxy import Forwarder, error_response
from .settings import RouterSettings, TableConfigMap, TableFile
from .tables import TableStore, watch_configmap, watch_file

log = logging.getLogger("zeta.router")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OFFER_INTERVAL = 1.0
"""How often waiters are offered capacity that appeared without a release (ejection ended, ...)."""


@dataclass
class Lifecycle:
    draining: bool = False


def build_app(
    *,
    forwarder: Forwarder,
    store: TableStore,
    metrics: RouterMetrics,
    settings: RouterSettings,
    lifecycle: Lifecycle,
) -> web.Application:
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
        return web.json_response({"status": "ok"})

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


async def serve(settings: RouterSettings) -> None:
    """Run until SIGTERM or SIGINT, then drain for up to the grace period and return."""
    metrics = RouterMetrics()
    admission = Admission(EndpointTracker(settings.ejection), metrics, random.Random(settings.seed))
    store = TableStore(
        metrics, on_swap=lambda snapshot: admission.configure(snapshot.table.queue, snapshot.endpoint_owner)
    )
    credentials = _credentials(settings)
    lifecycle = Lifecycle()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=30),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
        timeout=aiohttp.ClientTimeout(total=None),
    )
    forwarder = Forwarder(
        session=session, store=store, admission=admission, metrics=metrics, settings=settings
    )
    app = build_app(forwarder=forwarder, store=store, metrics=metrics, settings=settings, lifecycle=lifecycle)
    background = [
        asyncio.create_task(_table_source(settings, store, credentials), name="table-source"),
        asyncio.create_task(_offer_periodically(admission), name="queue-offers"),
    ]
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
        await _until_signalled()
        lifecycle.draining = True
        log.info("draining", extra={"fields": {"grace_seconds": settings.shutdown_grace}})
    finally:
        await runner.cleanup()  # stops accepting, waits for in-flight requests up to the grace period
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await session.close()
    log.info("stopped")


def _credentials(settings: RouterSettings) -> KubeCredentials | None:
    source = settings.table_source
    if not isinstance(source, TableConfigMap):
        return None
    return from_kubeconfig(source.kubeconfig) if source.kubeconfig else in_cluster()


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


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
