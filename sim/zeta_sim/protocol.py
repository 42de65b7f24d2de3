"""The OpenAI HTTP API as the simulator speaks it: request validation and response shapes.

Validation is strict on the fields the simulator uses or that clients commonly get wrong (a string where a
number belongs is a 400, as on vLLM) and lets every other field through, so real clients' extra sampling
options do not break.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .latency import estimate_tokens

CHAT_TEMPLATE_TOKENS_PER_MESSAGE = 4
"""Tokens a chat template adds around each message (role markers, separators)."""


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(_Lenient):
    type: str
    text: str | None = None


class ChatMessage(_Lenient):
    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(part.text or "" for part in self.content)


class StreamOptions(_Lenient):
    include_usage: bool | None = False


class GenerationRequest(_Lenient):
    """Fields shared by chat and text completions."""

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=1, ge=1, le=1, description="One choice per request in the simulator.")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None

    def prompt_tokens(self) -> int:
        raise NotImplementedError

    def requested_output_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def prompt_tokens(self) -> int:
        text = "".join(m.text() for m in self.messages)
        return estimate_tokens(text) + CHAT_TEMPLATE_TOKENS_PER_MESSAGE * len(self.messages)

    def requested_output_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(GenerationRequest):
    prompt: str | list[str] | list[int] | list[list[int]]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: str | list[str] | list[int] | list[list[int]]) -> object:
        if isinstance(prompt, list):
            if not prompt:
                raise ValueError("prompt must not be empty")
            if not isinstance(prompt[0], int) and len(prompt) != 1:
                raise ValueError("the simulator serves one prompt per request")
        return prompt

    def prompt_tokens(self) -> int:
        prompt = self.prompt
        if isinstance(prompt, str):
            return estimate_tokens(prompt)
        first = prompt[0]
        if isinstance(first, int):
            return len(prompt)
        if isinstance(first, str):
            return estimate_tokens(first)
        return max(1, len(first))


R = TypeVar("R", bound=GenerationRequest)


class ApiError(Exception):
    """An error answer in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, type: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}
        }


def invalid_request(message: str, *, param: str | None = None, status: int = 400) -> ApiError:
    return ApiError(status, message, type="invalid_request_error", param=param)


def parse_request(raw: bytes, kind: type[R]) -> R:
    """Decode and validate a request body, or raise a 400 `ApiError` that says what is wrong."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise invalid_request(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise invalid_request("request body must be a JSON object")
    try:
        return kind.model_validate(body)
    except ValidationError as e:
        raise invalid_request(describe_validation_error(e), param=_first_param(e)) from None


def describe_validation_error(error: ValidationError, *, limit: int = 5) -> str:
    problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()[:limit]]
    return "; ".join(problems)


def _first_param(error: ValidationError) -> str | None:
    errors = error.errors()
    return str(errors[0]["loc"][0]) if errors and errors[0]["loc"] else None


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    *,
    id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(
    *, id: str, created: int, model: str, delta: dict[str, str], finish_reason: str | None
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def text_completion(
    *,
    id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def text_chunk(*, id: str, created: int, model: str, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(
    *, id: str, created: int, model: str, object: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, only usage."""
    return {
        "id": id,
        "object": object,
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def sse(event: dict[str, Any] | str) -> bytes:
    """One server-sent event; the stream ends with ``sse("[DONE]")``."""
    data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


_WORDS = tuple(
    f" {w}"
    for w in (
        "the",
        "a",
        "model",
        "router",
        "answers",
        "requests",
        "with",
        "tokens",
        "that",
        "flow",
        "through",
        "queues",
        "and",
        "batches",
        "while",
        "latency",
        "grows",
        "under",
        "load",
        "so",
        "smaller",
        "models",
        "take",
        "simple",
        "work",
        "and",
        "larger",
        "ones",
        "keep",
        "hard",
        "tasks",
        "every",
        "backend",
        "reports",
        "signals",
        "to",
        "prometheus",
        "which",
        "the",
        "operator",
        "reads",
        "to",
        "set",
        "weights",
    )
)
"""One word per generated token; readable filler that is cheap to produce."""


def generated_text(request_seed: int, start: int, end: int) -> str:
    """Tokens ``start`` to ``end`` of a request's answer: one word per token, the same for the same seed."""
    return "".join(_WORDS[(request_seed + i) % len(_WORDS)] for i in range(start, end))
