"""One client request, end to end: body -> classification -> slot -> upstream attempts -> relayed response.

Nothing is sent to the client until the chosen backend has produced its first body byte, so a connect error,
a dropped connection or a 5xx before that point is retried on another eligible endpoint (up to ``retries``,
never one already tried; after a connect error or a dropped connection, a retry waits in the queue when every
untried endpoint is busy, as a new request would, instead of failing). Once the first byte is relayed, the
request is committed: a failure after that point breaks the client connection rather than replaying work.
Chunks are relayed as they arrive (``iter_any``), so a stream keeps its timing. A client that goes away cancels
the handler (aiohttp handler cancellation), which closes the upstream connection and so stops the backend's
generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ..api.table import TableBackend
from .admission import Admission, Rejected
from .balancer import Choice, ClassRoute, Eligible
from .classify import Classification, plausible_tasks, spill_floor
from .endpoints import EndpointTracker
from .metrics import RouterMetrics
from .payload import BadRequest, Kind, decompress, parse_request, serialise
from .second_opinion import SecondOpinion
from .settings import RouterSettings, Timeouts
from .snapshot import TableSnapshot
from .tables import TableStore

log = logging.getLogger("zeta.router.proxy")

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade",
    }
)  # fmt: skip
"""Headers that describe one connection, not the message (RFC 9110 7.6.1): never forwarded."""
DROP_REQUEST = HOP_BY_HOP | {"host", "content-length", "content-encoding", "expect", "accept-encoding"}
"""Also recomputed for the upstream request: the body is re-serialised (`payload.decompress` has decoded a
compressed request body), and identity encoding upstream keeps chunk relaying simple."""
DROP_RESPONSE = HOP_BY_HOP | {"content-length", "date", "server"}
NO_BACKEND = "none"
BUFFER_LIMIT = 1024 * 1024
"""A non-streamed upstream answer (a Content-Length, not an event stream) up to this size is read whole and
sent as one ``web.Response`` (headers and body in one write). The backend has produced it all already, so
nothing waits longer; streams (chunked, or ``text/event-stream``) and larger bodies are relayed chunk by
chunk."""


class UpstreamError(Exception):
    """An attempt failed before or during the response; ``retryable`` when nothing reached the backend's
    answer yet (connect errors and connections dropped before the first byte)."""

    def __init__(self, kind: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


@dataclass
class Exchange:
    """An upstream response whose first body chunk has arrived (or that has an empty body)."""

    response: aiohttp.ClientResponse
    first_chunk: bytes
    chunks: AsyncIterator[bytes]

    @property
    def status(self) -> int:
        return self.response.status

    def close(self) -> None:
        self.response.close()


@dataclass
class _Request:
    """What one request carries through its attempts, for headers, metrics and logs."""

    started: float
    snapshot: TableSnapshot
    request_id: str
    task_class: str = "unknown"
    classification: Classification | None = None
    eligible: Eligible | None = None
    body: dict[str, Any] = field(default_factory=dict)
    router_seconds: float = 0.0
    queue_seconds: float = 0.0
    retries: int = 0
    code: str = ""
    backend: str = NO_BACKEND
    endpoint: str = ""
    reason: str = ""
    ttfb: float | None = None
    opened: float = 0.0
    """When the current attempt went to its backend (its service time runs from here to the answer's end)."""


class Forwarder:
    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        store: TableStore,
        admission: Admission,
        metrics: RouterMetrics,
        settings: RouterSettings,
        second_opinion: SecondOpinion | None = None,
    ) -> None:
        """``second_opinion``: the encoder asked where the learned model is unsure (--second-opinion)."""
        self._session = session
        self._second_opinion = second_opinion
        self._store = store
        self._admission = admission
        self._tracker: EndpointTracker = admission.tracker
        self._metrics = metrics
        self._settings = settings
        self._timeouts: Timeouts = settings.timeouts
        self._client_timeout = client_timeout(settings.timeouts)

    async def handle(self, request: web.Request, kind: Kind) -> web.StreamResponse:
        started = time.perf_counter()
        snapshot = self._store.current
        if snapshot is None:
            return error_response(503, "the router has no routing table yet", code="not_ready", retry_after=1)
        req = _Request(started, snapshot, _request_id(request.headers.get("X-Request-Id")))
        try:
            return await self._serve(request, req, kind)
        except BadRequest as e:
            self._reject(req, e.status, e.code)
            response = error_response(
                e.status, e.message, code=e.code, param=e.param, close=e.status in (408, 413)
            )
            self._classification_headers(response.headers, req)
            return response
        except Rejected as e:
            self._reject(req, e.status, e.reason)
            response = error_response(e.status, e.message, code=e.reason, retry_after=e.retry_after)
            self._classification_headers(response.headers, req)
            return response
        except asyncio.CancelledError:
            req.code = req.code or "499"  # the client went away
            raise
        finally:
            self._account(req)

    async def _serve(self, request: web.Request, req: _Request, kind: Kind) -> web.StreamResponse:
        raw = await self._read_body(request)
        parsed = parse_request(raw, kind)
        req.body = parsed.body
        classifier = req.snapshot.classifier
        cls = classifier.classify(request.headers, parsed.model, parsed.prompt, embedding=kind == "embedding")
        if self._second_opinion is not None:
            cls = await self._second_opinion.revise(cls, parsed.prompt, classifier)
        req.classification, req.task_class = cls, cls.task_class.name
        self._metrics.confidence.labels(cls.source).observe(cls.confidence)
        route = req.snapshot.routes[cls.task_class.name]
        settings = req.snapshot.table.classifier
        eligible = self._eligible(
            route,
            cls,
            settings.offload_confidence,
            settings.task_confidence,
            settings.offload_task_confidence,
        )
        if not eligible:
            self._no_capable_backend(
                req, cls, too_long=route.too_long(complexity=cls.complexity, tokens=cls.tokens)
            )
        req.eligible = eligible
        req.router_seconds = time.perf_counter() - req.started
        choice, req.queue_seconds = await self._admission.acquire(
            eligible,
            priority=cls.priority,
            complexity=cls.complexity,
            task_class=req.task_class,
            queue=req.snapshot.table.queue,
            objective=cls.task_class.latency_objective_seconds,
        )
        return await self._attempts(request, req, choice)

    @staticmethod
    def _eligible(
        route: ClassRoute,
        cls: Classification,
        offload_confidence: float,
        task_confidence: float = 0.0,
        offload_task_confidence: float = 0.0,
    ) -> Eligible:
        """The capable backends, never down on doubt: without the smaller ones unless the classifier is
        confident enough that the request is within their ceiling, and without those lacking a task type the
        request plausibly is (`plausible_tasks`, at the policy's taskConfidence; off the class's preferred
        backends at its offloadTaskConfidence). When nothing that careful has endpoints, the least likely task
        types are dropped first, then the complexity floor, down to the estimate alone, as it would be without
        a confidence."""
        floor = spill_floor(
            cls, protected_ceiling=route.protected_ceiling, offload_confidence=offload_confidence
        )
        # The first plausible task type is the request's own, which its class stands for: not checked again.
        plausible = plausible_tasks(cls, confidence=max(task_confidence, offload_task_confidence))
        everywhere = len(plausible_tasks(cls, confidence=task_confidence))
        for kept in range(len(plausible), 0, -1):
            eligible = route.eligible(
                complexity=floor,
                tokens=cls.tokens,
                tasks=plausible[1 : min(kept, everywhere)],
                off_preferred=plausible[1:kept],
            )
            if eligible:
                return eligible
        if floor == cls.complexity:
            return eligible  # the same filter again would find nothing either
        return route.eligible(complexity=cls.complexity, tokens=cls.tokens)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self._settings.max_body_bytes
        too_large = BadRequest(
            f"the request body is larger than {limit} bytes", status=413, code="body_too_large"
        )
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        try:
            async with asyncio.timeout(self._timeouts.client_body):
                raw = await request.read()
            return decompress(raw, request.headers.get("Content-Encoding"), limit=limit)
        except web.HTTPRequestEntityTooLarge:
            raise too_large from None
        except TimeoutError:
            raise BadRequest(
                f"the request body did not arrive within {self._timeouts.client_body:g}s",
                status=408,
                code="body_timeout",
            ) from None

    def _no_capable_backend(self, req: _Request, cls: Classification, *, too_long: bool) -> None:
        if too_long:
            raise BadRequest(
                f"the prompt (about {cls.tokens} tokens) is longer than the context window of every backend "
                f"that serves {req.task_class}",
                code="context_length_exceeded",
            )
        raise Rejected(
            503,
            "no_backend",
            f"no backend with endpoints can serve task class {req.task_class} at complexity {cls.complexity}",
            retry_after=5,
        )

    async def _attempts(self, request: web.Request, req: _Request, choice: Choice) -> web.StreamResponse:
        held: Choice | None = choice
        tried: set[str] = set()
        try:
            for attempt in range(self._settings.retries + 1):
                assert held is not None
                tried.add(held.endpoint.url)
                self._metrics.decisions.labels(req.task_class, held.backend.name, held.reason).inc()
                req.backend, req.endpoint, req.reason = held.backend.name, held.endpoint.url, held.reason
                last = attempt == self._settings.retries
                try:
                    exchange = await self._open(request, req, held.backend, held.endpoint.url)
                except UpstreamError as e:
                    self._failed(held, req)
                    held = None
                    retry = None if last or not e.retryable else await self._retry_slot(req, tried)
                    if retry is None:
                        return self._upstream_failure(req, e)
                    held = self._retried(req, retry, failed_backend=req.backend)
                    continue
                if exchange.status >= 500 and not last:
                    retry = self._retry_choice(req, tried)
                    if retry is not None:
                        exchange.close()
                        self._failed(held, req)
                        held = self._retried(req, retry, failed_backend=req.backend)
                        continue
                return await self._relay(request, req, held, exchange)
            raise AssertionError("unreachable: the last attempt always returns")
        finally:
            if held is not None:
                self._admission.release(held)

    async def _retry_slot(self, req: _Request, tried: set[str]) -> Choice | None:
        """Another endpoint for a request whose attempt failed before reaching the backend: one with room now,
        else a place in the queue for the capable endpoints not tried yet, as a new request would get. (A
        capable backend that is only busy must not turn a dead endpoint into a failed request.) None when
        every capable endpoint has been tried; Rejected when the queue is full or the wait too long."""
        choice = self._retry_choice(req, tried)
        if choice is not None:
            return choice
        assert req.eligible is not None and req.classification is not None
        untried = req.eligible.without(frozenset(tried))
        if not untried:
            return None
        choice, waited = await self._admission.acquire(
            untried,
            priority=req.classification.priority,
            complexity=req.classification.complexity,
            task_class=req.task_class,
            queue=req.snapshot.table.queue,
            objective=req.classification.task_class.latency_objective_seconds,
        )
        req.queue_seconds += waited
        return choice

    def _retry_choice(self, req: _Request, tried: set[str]) -> Choice | None:
        assert req.eligible is not None
        started = time.perf_counter()
        choice = self._admission.try_now(req.eligible, exclude=frozenset(tried))
        req.router_seconds += time.perf_counter() - started
        return choice

    def _retried(self, req: _Request, choice: Choice, *, failed_backend: str) -> Choice:
        self._metrics.retries.labels(failed_backend).inc()
        req.retries += 1
        return choice

    def _failed(self, choice: Choice, req: _Request) -> None:
        """Count a failure against the endpoint and give its slot back."""
        self._count_failure(choice, req)
        self._admission.release(choice)

    def _count_failure(self, choice: Choice, req: _Request) -> None:
        assert req.eligible is not None
        seconds = self._tracker.record_failure(choice.endpoint.url, peers=req.eligible.endpoint_urls())
        if seconds:
            self._metrics.ejections.labels(choice.backend.name, choice.endpoint.url).inc()
            log.warning(
                "endpoint ejected",
                extra={
                    "fields": {
                        "backend": choice.backend.name,
                        "endpoint": choice.endpoint.url,
                        "seconds": seconds,
                    }
                },
            )

    async def _open(self, request: web.Request, req: _Request, backend: TableBackend, url: str) -> Exchange:
        started = req.opened = time.perf_counter()
        req.body["model"] = backend.model
        body = serialise(req.body)
        headers = upstream_headers(request.headers, peer=request.remote, request_id=req.request_id)
        req.router_seconds += time.perf_counter() - started
        return await open_exchange(
            self._session, url + request.raw_path, body, headers, self._timeouts, self._client_timeout
        )

    async def _relay(
        self, request: web.Request, req: _Request, choice: Choice, exchange: Exchange
    ) -> web.StreamResponse:
        try:
            started = time.perf_counter()
            req.ttfb = started - req.started
            upstream = exchange.response
            headers = downstream_headers(upstream.headers)
            length = upstream.content_length
            req.router_seconds += time.perf_counter() - started
            received = [exchange.first_chunk] if exchange.first_chunk else []
            if length is not None and length <= BUFFER_LIMIT and not _is_event_stream(upstream):
                try:
                    if len(exchange.first_chunk) != length:
                        while (chunk := await _next_chunk(exchange.chunks)) is not None:
                            received.append(chunk)
                except UpstreamError as e:
                    broken: UpstreamError | None = e  # relay what arrived, then break the connection
                else:
                    # The whole answer is here: one response, its headers and body in one write.
                    headers["Content-Length"] = str(length)  # where the streamed relay puts it too
                    self._zeta_headers(headers, req)
                    req.code = str(exchange.status)
                    self._record_outcome(choice, exchange.status, req)
                    body = received[0] if len(received) == 1 else b"".join(received)
                    return web.Response(status=exchange.status, body=body, headers=headers)
            else:
                broken = None
            response = _RelayResponse(status=exchange.status, headers=headers)
            if length is not None:
                response.content_length = length
            return await self._relay_chunks(request, req, choice, exchange, response, received, broken)
        finally:
            exchange.close()

    async def _relay_chunks(
        self,
        request: web.Request,
        req: _Request,
        choice: Choice,
        exchange: Exchange,
        response: web.StreamResponse,
        received: list[bytes],
        broken: UpstreamError | None,
    ) -> web.StreamResponse:
        """Relay ``received`` (the chunks read so far), then every further chunk as it arrives; ``broken``:
        the backend's response already broke off after ``received``."""
        try:
            self._zeta_headers(response.headers, req)
            await response.prepare(request)
            for chunk in received:
                await response.write(chunk)
            if broken is not None:
                raise broken
            while (more := await _next_chunk(exchange.chunks)) is not None:
                await response.write(more)
            await response.write_eof()
            req.code = str(exchange.status)
            self._record_outcome(choice, exchange.status, req)
            return response
        except UpstreamError:
            req.code = "error"
            self._count_failure(choice, req)
            if request.transport is not None:
                request.transport.close()  # the client sees a truncated response, never a fake clean end
            return response
        except ConnectionResetError:
            req.code = "499"
            return response

    def _record_outcome(self, choice: Choice, status: int, req: _Request) -> None:
        if status >= 500:
            self._count_failure(choice, req)
        else:
            self._tracker.record_success(choice.endpoint.url)
            if status < 400:  # an answer (a refusal comes back fast and says nothing of the service time)
                seconds = time.perf_counter() - req.opened
                self._admission.service.observe(req.task_class, choice.backend.name, seconds)

    def _zeta_headers(self, h: CIMultiDict[str], req: _Request) -> None:
        h["X-Zeta-Backend"] = req.backend
        h["X-Zeta-Endpoint"] = req.endpoint
        h["X-Zeta-Decision"] = req.reason
        h["X-Zeta-Overhead-Ms"] = f"{req.router_seconds * 1000:.3f}"
        self._classification_headers(h, req)
        if req.queue_seconds:
            h["X-Zeta-Queue-Ms"] = f"{req.queue_seconds * 1000:.1f}"
        if req.retries:
            h["X-Zeta-Retries"] = str(req.retries)
        self._metrics.overhead.observe(req.router_seconds)

    @staticmethod
    def _classification_headers(h: CIMultiDict[str], req: _Request) -> None:
        """What the router made of the request, also on the answers it gives itself (a full queue, no capable
        backend): a client told 429 can see which class was full and how sure the router was of it."""
        h["X-Zeta-Table-Version"] = str(req.snapshot.version)
        h["X-Request-Id"] = req.request_id
        if req.classification is None:
            return
        h["X-Zeta-Task-Class"] = req.task_class
        h["X-Zeta-Complexity"] = str(req.classification.complexity)
        h["X-Zeta-Priority"] = str(req.classification.priority)
        h["X-Zeta-Confidence"] = f"{req.classification.confidence:.3f}"
        h["X-Zeta-Classified-By"] = req.classification.source

    def _upstream_failure(self, req: _Request, e: UpstreamError) -> web.Response:
        status = 504 if e.kind == "timeout" else 502
        req.code = str(status)
        response = error_response(status, f"backend {req.backend}: {e}", code=f"upstream_{e.kind}")
        self._zeta_headers(response.headers, req)
        return response

    def _reject(self, req: _Request, status: int, reason: str) -> None:
        req.code = str(status)
        self._metrics.rejected.labels(req.task_class, reason).inc()

    def _account(self, req: _Request) -> None:
        duration = time.perf_counter() - req.started
        code = req.code or "error"
        self._metrics.requests.labels(req.backend, req.task_class, code).inc()
        if req.backend != NO_BACKEND:
            self._metrics.duration.labels(req.backend, req.task_class).observe(duration)
            if req.ttfb is not None:
                self._metrics.ttfb.labels(req.backend, req.task_class).observe(req.ttfb)
        if self._settings.access_log:
            self._access_log(req, code, duration)

    def _access_log(self, req: _Request, code: str, duration: float) -> None:
        cls = req.classification
        fields: dict[str, Any] = {
            "request_id": req.request_id,
            "code": code,
            "task_class": req.task_class,
            "backend": req.backend,
            "endpoint": req.endpoint,
            "decision": req.reason,
            "retries": req.retries,
            "duration_ms": round(duration * 1000, 3),
            "overhead_ms": round(req.router_seconds * 1000, 3),
            "queue_ms": round(req.queue_seconds * 1000, 1),
            "table_version": req.snapshot.version,
        }
        if cls is not None:
            fields.update(
                complexity=cls.complexity,
                priority=cls.priority,
                tokens=cls.tokens,
                source=cls.source,
                confidence=round(cls.confidence, 3),
            )
        log.info("request", extra={"fields": fields})


def client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=timeouts.total, sock_connect=timeouts.connect, sock_read=timeouts.first_byte
    )


async def open_exchange(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: CIMultiDict[str],
    timeouts: Timeouts,
    timeout: aiohttp.ClientTimeout | None = None,
) -> Exchange:
    """Send the request and wait for the first body chunk; UpstreamError on connect errors and timeouts.
    ``timeout``: `client_timeout` of ``timeouts``, when the caller has it already."""
    if timeout is None:
        timeout = client_timeout(timeouts)
    try:
        async with asyncio.timeout(timeouts.first_byte):
            response = await session.post(url, data=body, headers=headers, timeout=timeout)
            try:
                chunks = response.content.iter_any().__aiter__()
                first = await anext(chunks, b"")
            except BaseException:
                response.close()
                raise
    except aiohttp.ConnectionTimeoutError:
        raise UpstreamError(
            "connect", f"connect timeout after {timeouts.connect:g}s", retryable=True
        ) from None
    except aiohttp.ClientConnectorError as e:
        raise UpstreamError("connect", f"connect error: {e.os_error.strerror or e}", retryable=True) from None
    except TimeoutError:
        raise UpstreamError(
            "timeout", f"no first byte within {timeouts.first_byte:g}s", retryable=False
        ) from None
    except (aiohttp.ClientError, OSError) as e:
        raise UpstreamError(
            "disconnect", f"connection failed before the first byte: {_describe(e)}", retryable=True
        ) from None
    return Exchange(response, first, chunks)


async def _next_chunk(chunks: AsyncIterator[bytes]) -> bytes | None:
    """The next chunk, None at the end; upstream problems become UpstreamError."""
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise UpstreamError(
            "broken", f"the backend's response broke off: {_describe(e)}", retryable=False
        ) from None


def _is_event_stream(response: aiohttp.ClientResponse) -> bool:
    return response.headers.get("Content-Type", "").lstrip().lower().startswith("text/event-stream")


class _RelayResponse(web.StreamResponse):
    """A relayed stream whose headers go out with its first body chunk (one write, not two). Nothing is
    held back: it is prepared only once that first chunk is there (or the body is known to be empty)."""

    _send_headers_immediately = False


def upstream_headers(
    incoming: CIMultiDictProxy[str], *, peer: str | None, request_id: str
) -> CIMultiDict[str]:
    dropped = _dropped(DROP_REQUEST, incoming)
    headers = CIMultiDict([(k, v) for k, v in incoming.items() if k.lower() not in dropped])
    headers["Content-Type"] = "application/json"
    headers["X-Request-Id"] = request_id
    if peer:
        forwarded = incoming.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
    return headers


def downstream_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    dropped = _dropped(DROP_RESPONSE, upstream)
    return CIMultiDict([(k, v) for k, v in upstream.items() if k.lower() not in dropped])


def _dropped(always: frozenset[str], headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """``always`` and the headers a Connection header lists (usually there is none: no new set)."""
    if "Connection" not in headers:
        return always
    return always | _connection_listed(headers)


def _connection_listed(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    return frozenset(t.strip().lower() for v in headers.getall("Connection", ()) for t in v.split(","))


def error_response(
    status: int,
    message: str,
    *,
    code: str,
    param: str | None = None,
    retry_after: int | None = None,
    close: bool = False,
) -> web.Response:
    """An OpenAI-style error body."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 429:
        kind = "rate_limit_error"
    response = web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status=status
    )
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if close:
        response.force_close()
    return response


def _request_id(given: str | None) -> str:
    """The client's X-Request-Id when it is a sane token (it goes to logs and upstream), else a new one."""
    if given and len(given) <= 128 and given.isascii() and given.isprintable() and " " not in given:
        return given
    return uuid.uuid4().hex


def _describe(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
