"""Parsing and checking an OpenAI-style request body, once, before anything else looks at it.

The body is decoded as strict UTF-8 and parsed as JSON exactly once; the fields the router relies on are
type-checked (the backend checks the rest). The prompt is reduced to a bounded, lower-cased window (the head
and the tail) so that classification costs the same for a 1 KiB and a 10 MiB prompt.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["chat", "completion", "embedding"]

SCAN_CHARS = 16 * 1024
"""Characters of the prompt's head, and as many of its tail, that classification scans."""
TURN_HEAD_CHARS = 4 * 1024
TURN_TAIL_CHARS = 1024
"""The window over the last user turn that the learned classifier reads: the ask is usually at the start or
the end of a turn, and pasted material in between adds cost, not evidence (its size is counted apart)."""
CONTEXT_CHARS = 300
"""Of the user turn before the last one and of the assistant turn before the last user turn, the characters
the learned classifier reads as the conversation's context (what a short follow-up is about)."""

MAX_MODEL_CHARS = 256


class BadRequest(Exception):
    """A client error, answered with an OpenAI-style error body."""

    def __init__(
        self, message: str, *, status: int = 400, code: str = "invalid_request", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param


@dataclass(frozen=True, slots=True)
class PromptView:
    """What the classifier may look at: a bounded lower-cased text window and the estimated prompt size."""

    text: str
    tokens: int
    last_user: str = ""
    """A bounded window (`TURN_HEAD_CHARS` + `TURN_TAIL_CHARS`) of the last user turn, as sent (not
    lower-cased): the turn that decides the task. For completions and embeddings, the last prompt."""
    last_user_chars: int = 0
    """The full length of the last user turn."""
    system: bool = False
    """A system (or developer) message is present: context, not the task."""
    history: int = 0
    """Messages before the last user turn, other than system messages."""
    previous_user: str = ""
    """The first `CONTEXT_CHARS` characters of the user turn before the last one, as sent ("" without one)."""
    previous_assistant: str = ""
    """The first `CONTEXT_CHARS` characters of the last assistant turn before the last user turn."""
    system_prompt: str = ""
    """The first `CONTEXT_CHARS` characters of the system (and developer) messages, one after another ("" without
    one): an operator's standing instruction often says what the user's material is for."""
    earlier: PromptView | None = None
    """The conversation as it stood at the user turn before the last one (None without one): the ask a
    follow-up continues. A follow-up's difficulty is often there ("now prove it"), so the spill gate wants
    that ask to be simple too (`model.Prediction.spill_simple`)."""


@dataclass(slots=True)
class ParsedRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    prompt: PromptView


def parse_request(raw: bytes, kind: Kind) -> ParsedRequest:
    """Decode, parse and type-check; raises BadRequest with the first problem found."""
    body = _decode_object(raw)
    model = _model(body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    if kind == "chat":
        view = _chat_view(_chat_turns(body))
    else:
        parts, token_ids = _token_or_text_parts(body, "prompt" if kind == "completion" else "input")
        view = prompt_view(parts, token_ids)
    return ParsedRequest(body=body, model=model, stream=stream, prompt=view)


def decompress(raw: bytes, content_encoding: str | None, *, limit: int) -> bytes:
    """The body without its Content-Encoding (identity, gzip, x-gzip, deflate; in the order listed), at most
    ``limit`` bytes decoded. The router decodes, not its HTTP server: a body aiohttp decoded itself would fail
    while it drains a request the handler never read (a 404, a 405), after the answer, as an unhandled error
    and a reset connection."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    for coding in reversed(codings):  # the last one listed was applied last
        if coding == "identity":
            continue
        if coding not in _WBITS:
            raise BadRequest(
                f"Content-Encoding {coding!r} is not supported (send identity, gzip or deflate)",
                status=415,
                code="unsupported_encoding",
            )
        decoder = zlib.decompressobj(_WBITS[coding])
        try:
            raw = decoder.decompress(raw, limit + 1)
        except zlib.error:
            raise BadRequest(f"the body is not valid {coding} data", code="invalid_encoding") from None
        if len(raw) > limit:
            raise BadRequest(
                f"the decompressed request body is larger than {limit} bytes",
                status=413,
                code="body_too_large",
            )
        if not decoder.eof:
            raise BadRequest(f"the {coding} body is cut short", code="invalid_encoding")
    return raw


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""zlib window bits per content coding: gzip framing, or zlib framing (HTTP's "deflate", RFC 9110 8.4.1.2)."""


def serialise(body: dict[str, Any]) -> bytes:
    return _ENCODER.encode(body).encode()


SYSTEM_ROLES = frozenset({"system", "developer"})


def _chat_view(turns: list[tuple[str, str]], *, earlier: bool = True) -> PromptView:
    """The view of a conversation, and (``earlier``) of the conversation as it stood at the user turn before
    the last one."""
    before = _earlier_ask(turns) if earlier else None
    return prompt_view(
        [text for _, text in turns],
        last_user=_last_user(turns),
        system=any(role in SYSTEM_ROLES for role, _ in turns),
        # Each message is cut before they are joined, so a huge system prompt is never copied whole.
        system_prompt="\n".join(text[:CONTEXT_CHARS] for role, text in turns if role in SYSTEM_ROLES),
        history=_history(turns),
        previous=_previous(turns),
        earlier=None if before is None else _chat_view(turns[: before + 1], earlier=False),
    )


def prompt_view(
    parts: list[str],
    token_ids: int = 0,
    *,
    last_user: str | None = None,
    system: bool = False,
    system_prompt: str = "",
    history: int = 0,
    previous: tuple[str, str] = ("", ""),
    earlier: PromptView | None = None,
) -> PromptView:
    """The bounded window over ``parts`` and an estimate of tokens (about four characters each).

    ``last_user``: the last user turn (default: the last part). ``previous``: the user turn before it and the
    assistant turn before it (`_previous`), each cut to `CONTEXT_CHARS`, as is ``system_prompt``.
    ``earlier``: `PromptView.earlier`."""
    total = sum(len(p) for p in parts)
    turn = last_user if last_user is not None else (parts[-1] if parts else "")
    return PromptView(
        text=_window(parts, total).lower(),
        tokens=total // 4 + token_ids,
        last_user=turn_window(turn),
        last_user_chars=len(turn),
        system=system,
        system_prompt=system_prompt[:CONTEXT_CHARS],
        history=history,
        previous_user=previous[0][:CONTEXT_CHARS],
        previous_assistant=previous[1][:CONTEXT_CHARS],
        earlier=earlier,
    )


def turn_window(turn: str) -> str:
    if len(turn) <= TURN_HEAD_CHARS + TURN_TAIL_CHARS:
        return turn
    return turn[:TURN_HEAD_CHARS] + "\n...\n" + turn[-TURN_TAIL_CHARS:]


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"invalid JSON: {name} is not a number JSON allows", code="invalid_json")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""Built once: json.loads and json.dumps build a new decoder and encoder per call when given options."""


def _decode_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise BadRequest("the request body is empty; send a JSON object", code="invalid_json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(f"the body is not valid UTF-8 (byte {e.start})", code="invalid_encoding") from None
    try:
        if text.startswith("\ufeff"):  # as json.loads does (JSONDecoder.decode does not check)
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        body = _DECODER.decode(text)
    except json.JSONDecodeError as e:
        raise BadRequest(
            f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}", code="invalid_json"
        ) from None
    except RecursionError:
        raise BadRequest("invalid JSON: nested too deeply", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {_json_type(body)}", code="invalid_json")
    return body


def _model(body: dict[str, Any]) -> str:
    if "model" not in body:
        raise BadRequest("missing required field 'model'", param="model")
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise BadRequest(f"'model' must be a non-empty string, not {_json_type(model)}", param="model")
    if len(model) > MAX_MODEL_CHARS:
        raise BadRequest(f"'model' is longer than {MAX_MODEL_CHARS} characters", param="model")
    return model


def _chat_turns(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of every message with text; a message of several text parts is one turn."""
    messages = body.get("messages")
    if messages is None:
        raise BadRequest("missing required field 'messages'", param="messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array of message objects", param="messages")
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{i}] must be an object, not {_json_type(message)}", param="messages")
        role = message.get("role")
        if not isinstance(role, str):
            raise BadRequest(f"messages[{i}].role must be a string", param="messages")
        parts: list[str] = []
        _content_parts(message.get("content"), i, parts)
        if parts:
            turns.append((role, parts[0] if len(parts) == 1 else "\n".join(parts)))
    return turns


def _last_user(turns: list[tuple[str, str]]) -> str:
    """The last user turn's text; without a user turn, the last turn's (a client that sends only a system
    prompt still has an ask)."""
    for role, text in reversed(turns):
        if role == "user":
            return text
    return turns[-1][1] if turns else ""


def _history(turns: list[tuple[str, str]]) -> int:
    last = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=len(turns) - 1)
    return sum(1 for role, _ in turns[:last] if role not in SYSTEM_ROLES)


def _earlier_ask(turns: list[tuple[str, str]]) -> int | None:
    """The index of the user turn before the last user turn, None without one."""
    users = [i for i, (role, _) in enumerate(turns) if role == "user"]
    return users[-2] if len(users) > 1 else None


def _previous(turns: list[tuple[str, str]]) -> tuple[str, str]:
    """(the user turn before the last user turn, the last assistant turn before it), "" where none: what a
    follow-up ("now in Rust", "shorter") is about."""
    last = next((i for i in range(len(turns) - 1, -1, -1) if turns[i][0] == "user"), None)
    if last is None:
        return "", ""
    before = turns[last - 1 :: -1] if last else []
    user = next((text for role, text in before if role == "user"), "")
    assistant = next((text for role, text in before if role == "assistant"), "")
    return user, assistant


def _content_parts(content: Any, i: int, parts: list[str]) -> None:
    if content is None:
        return
    if isinstance(content, str):
        parts.append(content)
        return
    if not isinstance(content, list):
        raise BadRequest(
            f"messages[{i}].content must be a string or an array of parts, not {_json_type(content)}",
            param="messages",
        )
    for part in content:
        if not isinstance(part, dict):
            raise BadRequest(f"messages[{i}].content parts must be objects", param="messages")
        text = part.get("text")
        if isinstance(text, str):
            parts.append(text)


def _token_or_text_parts(body: dict[str, Any], field: str) -> tuple[list[str], int]:
    """A string, an array of strings, an array of token ids or an array of such arrays."""
    value = body.get(field)
    if value is None:
        raise BadRequest(f"missing required field '{field}'", param=field)
    if isinstance(value, str):
        return [value], 0
    if not isinstance(value, list):
        raise BadRequest(f"'{field}' must be a string or an array, not {_json_type(value)}", param=field)
    parts: list[str] = []
    token_ids = 0
    for item in value:
        if isinstance(item, str):
            parts.append(item)
        elif _is_token_id(item):
            token_ids += 1
        elif isinstance(item, list) and all(_is_token_id(t) for t in item):
            token_ids += len(item)
        else:
            raise BadRequest(
                f"'{field}' items must be strings, token ids or arrays of token ids, not {_json_type(item)}",
                param=field,
            )
    return parts, token_ids


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _window(parts: list[str], total: int) -> str:
    if total <= 2 * SCAN_CHARS:
        return "\n".join(parts)
    head: list[str] = []
    room = SCAN_CHARS
    for part in parts:
        head.append(part[:room])
        room -= len(head[-1])
        if room <= 0:
            break
    tail: list[str] = []
    room = SCAN_CHARS
    for part in reversed(parts):
        tail.append(part[-room:])
        room -= len(tail[-1])
        if room <= 0:
            break
    return "\n".join(head) + "\n...\n" + "\n".join(reversed(tail))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
