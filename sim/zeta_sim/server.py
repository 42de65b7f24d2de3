"""One simulated vLLM instance as an aiohttp application: OpenAI endpoints, health, metrics and faults."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from . import protocol
from .config import SimConfig
from .engine import Engine, Generation
from .faults import CRASH_EXIT_CODE, FaultInjector
from .latency import OutputLengths
from .metrics import CONTENT_TYPE, SimMetrics
from .protocol import ApiError, ChatCompletionRequest, CompletionRequest, GenerationRequest, invalid_request
from .scheduler import Scheduler

log = logging.getLogger(__name__)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UNCOUNTED_PATHS = frozenset({"/metrics"})
"""Paths left out of http_requests_total, as vLLM leaves them out (scrapes would drown the signal)."""


class Simulator:
    """State of one instance (engine, faults, registry) and the aiohttp app that serves it."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.scheduler = Scheduler(
            config.latency_model(),
            time_scale=config.time_scale,
            stream_interval_s=config.stream_interval_ms / 1000,
        )
        self.engine = Engine(self.scheduler)
        self.faults = FaultInjector(config.faults, seed=config.seed)
        self.lengths = OutputLengths(mean=config.mean_output_tokens, seed=config.seed)
        self.metrics = SimMetrics(
            model_name=config.model,
            scheduler=self.scheduler,
            kv_cache_tokens=config.kv_capacity_tokens,
            cpu_limit_cores=config.cpu_limit,
            memory_limit_bytes=config.memory_limit,
        )
        self.started = int(time.time())
        self._not_hung: asyncio.Event | None = None  # made on the serving loop, in `_run_engine`

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[self._count_http])
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/admin/faults", self._get_faults)
        app.router.add_post("/admin/faults", self._post_faults)
        app.cleanup_ctx.append(self._run_engine)
        return app

    async def _run_engine(self, _app: web.Application) -> AsyncIterator[None]:
        self._not_hung = asyncio.Event()
        self._apply_hang(self.faults.current.hang)
        task = asyncio.create_task(self.engine.run(), name=f"engine {self.config.model}")
        task.add_done_callback(_exit_if_engine_failed)
        yield
        task.cancel()  # after the server stopped: handlers are finished or cancelled by now
        await asyncio.gather(task, return_exceptions=True)

    # -- middleware --------------------------------------------------------------------------------------

    @web.middleware
    async def _count_http(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            handler_name = _route_name(request)
            if handler_name not in _UNCOUNTED_PATHS:
                self.metrics.count_http(handler=handler_name, method=request.method, status=status)

    # -- OpenAI endpoints --------------------------------------------------------------------------------

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, ChatCompletionRequest, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, CompletionRequest, chat=False)

    async def _generate(
        self, request: web.Request, kind: type[GenerationRequest], *, chat: bool
    ) -> web.StreamResponse:
        try:
            body = protocol.parse_request(await _read_body(request, self.config.max_body_bytes), kind)
            self._check_model(body.model)
            prompt_tokens = body.prompt_tokens()
            output_tokens, finish_reason = self._output_length(prompt_tokens, body.requested_output_tokens())
        except ApiError as e:
            return _error_response(e)
        if self.faults.should_fail():
            await self._wait_not_hung()  # a hung server does not answer, not even with an error
            return _error_response(
                ApiError(500, "injected fault: internal server error", type="InternalServerError")
            )
        generation = self.engine.submit(
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            stream=bool(body.stream),
            extra_s=self.faults.current.extra_latency_ms / 1000,
        )
        answer = _Answer(
            id=f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=self.config.model,
            chat=chat,
            prompt_tokens=prompt_tokens,
            finish_reason=finish_reason,
            text_seed=generation.seq.id * 7919 + self.config.seed,
        )
        try:
            if body.stream:
                return await _stream(request, generation, answer, include_usage=body.include_usage)
            await generation.finished()
            return _json_response(answer.whole(generation.seq.output_tokens))
        finally:
            generation.release()
            self.metrics.observe_sequence(generation.seq, finished_reason=finish_reason)

    def _check_model(self, model: str | None) -> None:
        if model is not None and model != self.config.model:
            raise ApiError(404, f"The model `{model}` does not exist.", type="NotFoundError", param="model")

    def _output_length(self, prompt_tokens: int, requested: int | None) -> tuple[int, str]:
        """Tokens to generate and the finish reason; 400 when the context window cannot hold them."""
        limit = self.config.max_model_len
        # Drawn for every request, used or not, so the n-th request's length depends only on the seed.
        drawn = self.lengths.draw(max(limit - prompt_tokens, 1))
        if requested is not None and prompt_tokens + requested > limit:
            raise invalid_request(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + requested} tokens ({prompt_tokens} in the messages, {requested} in the "
                "completion). Please reduce the length of the messages or completion.",
                param="max_tokens",
            )
        if prompt_tokens >= limit:
            raise invalid_request(
                f"This model's maximum context length is {limit} tokens. However, your prompt has "
                f"{prompt_tokens} tokens.",
                param="messages",
            )
        if requested is not None:
            return requested, "length"
        return drawn, "stop"

    async def _models(self, _request: web.Request) -> web.Response:
        card = {
            "id": self.config.model,
            "object": "model",
            "created": self.started,
            "owned_by": "vllm",
            "root": self.config.model,
            "parent": None,
            "max_model_len": self.config.max_model_len,
        }
        return _json_response({"object": "list", "data": [card]})

    # -- operations --------------------------------------------------------------------------------------

    async def _health(self, _request: web.Request) -> web.Response:
        if self.faults.healthy:
            return web.Response(status=200)
        reason = "hang" if self.faults.current.hang else "unhealthy"
        return web.Response(status=503, text=f"unhealthy: {reason} fault is on\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def _get_faults(self, _request: web.Request) -> web.Response:
        return _json_response(self.faults.current.model_dump())

    async def _post_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            patch = json.loads(await _read_body(request, self.config.max_body_bytes))
            if not isinstance(patch, dict):
                raise invalid_request("fault settings must be a JSON object")
            faults = self.faults.update(patch)
        except ApiError as e:
            return _error_response(e)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return _error_response(invalid_request(f"request body is not valid JSON: {e}"))
        except ValidationError as e:
            return _error_response(invalid_request(protocol.describe_validation_error(e)))
        log.warning("faults for %s now %s", self.config.model, faults.model_dump())
        self._apply_hang(faults.hang)
        response = _json_response(faults.model_dump())
        if faults.crash:
            await _crash(request, response)
        return response

    def _apply_hang(self, hang: bool) -> None:
        self.engine.set_frozen(hang)
        if self._not_hung is not None:
            if hang:
                self._not_hung.clear()
            else:
                self._not_hung.set()

    async def _wait_not_hung(self) -> None:
        if self._not_hung is not None:
            await self._not_hung.wait()


class _Answer:
    """Renders one request's answer (whole or as stream chunks) in the chat or text-completion shape."""

    def __init__(
        self,
        *,
        id: str,
        created: int,
        model: str,
        chat: bool,
        prompt_tokens: int,
        finish_reason: str,
        text_seed: int,
    ) -> None:
        self.id = id
        self.created = created
        self.model = model
        self.chat = chat
        self.prompt_tokens = prompt_tokens
        self.finish_reason = finish_reason
        self.text_seed = text_seed

    def whole(self, tokens: int) -> dict[str, Any]:
        render = protocol.chat_completion if self.chat else protocol.text_completion
        return render(
            id=self.id,
            created=self.created,
            model=self.model,
            text=self.text(0, tokens),
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=tokens,
        )

    def text(self, start: int, end: int) -> str:
        return protocol.generated_text(self.text_seed, start, end)

    def first_chunk(self) -> bytes:
        """The role announcement that opens a chat stream (text completions have none)."""
        if not self.chat:
            return b""
        delta = {"role": "assistant", "content": ""}
        return protocol.sse(
            protocol.chat_chunk(
                id=self.id, created=self.created, model=self.model, delta=delta, finish_reason=None
            )
        )

    def chunk(self, text: str, finish_reason: str | None = None) -> bytes:
        if self.chat:
            delta = {"content": text} if text else {}
            event = protocol.chat_chunk(
                id=self.id, created=self.created, model=self.model, delta=delta, finish_reason=finish_reason
            )
        else:
            event = protocol.text_chunk(
                id=self.id, created=self.created, model=self.model, text=text, finish_reason=finish_reason
            )
        return protocol.sse(event)

    def usage_chunk(self, completion_tokens: int) -> bytes:
        return protocol.sse(
            protocol.usage_chunk(
                id=self.id,
                created=self.created,
                model=self.model,
                object="chat.completion.chunk" if self.chat else "text_completion",
                prompt_tokens=self.prompt_tokens,
                completion_tokens=completion_tokens,
            )
        )


async def _stream(
    request: web.Request, generation: Generation, answer: _Answer, *, include_usage: bool
) -> web.StreamResponse:
    """Send tokens as SSE events as the engine produces them; headers go out with the first token."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    sent = 0
    try:
        async for ready in generation.progress():
            if not response.prepared:
                await response.prepare(request)
                await response.write(answer.first_chunk())
            await response.write(answer.chunk(answer.text(sent, ready)))
            sent = ready
        tail = answer.chunk("", answer.finish_reason)
        if include_usage:
            tail += answer.usage_chunk(sent)
        await response.write(tail + protocol.sse("[DONE]"))
        await response.write_eof()
    except ConnectionResetError:  # the client left; `release` aborts the sequence
        pass
    return response


def _exit_if_engine_failed(task: asyncio.Task[None]) -> None:
    """A dead engine would leave every request hanging with a healthy /health: fail loudly instead."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("engine task failed; exiting", exc_info=task.exception())
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)


def _route_name(request: web.Request) -> str:
    """The route's path, or "other" for unknown paths: scanners must not create a series per URL."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "other"


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None


def _too_large(limit: int) -> ApiError:
    return invalid_request(f"request body is larger than {limit} bytes", status=413)


def _json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type="application/json"
    )


def _error_response(error: ApiError) -> web.Response:
    return _json_response(error.body(), status=error.status)


async def _crash(request: web.Request, response: web.Response) -> None:
    """Answer the admin call, then exit at once: no cleanup, no graceful shutdown, like a real crash."""
    log.error("crash fault: exiting with code %d", CRASH_EXIT_CODE)
    for handler in logging.getLogger().handlers:
        handler.flush()
    await response.prepare(request)
    await response.write_eof()
    os._exit(CRASH_EXIT_CODE)
