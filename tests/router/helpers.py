"""Routing tables, requests and checks shared by the router tests."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import requests

from zeta_dev import waiting
from zeta_dev.launch.router import RunningRouter
from zeta_dev.launch.sim import RunningSim
from zeta_operator.api.table import RoutingTable

QUEUE = {"maxSize": 64, "maxWaitSeconds": 10.0, "agingSeconds": 2.0}


def backend(
    name: str,
    sims: Sequence[RunningSim] | Sequence[str],
    *,
    tasks: Sequence[str] = ("chat",),
    max_complexity: int = 5,
    max_concurrency: int = 8,
    context_window: int = 8192,
    model: str | None = None,
) -> dict[str, Any]:
    """A table backend over sims (their served model is the backend's) or bare URLs."""
    urls = [s if isinstance(s, str) else s.url for s in sims]
    served = model or (sims[0].spec.model if sims and not isinstance(sims[0], str) else name)
    return {
        "name": name,
        "model": served,
        "tasks": list(tasks),
        "maxComplexity": max_complexity,
        "contextWindow": context_window,
        "endpoints": [{"url": u, "maxConcurrency": max_concurrency} for u in urls],
        "state": "Healthy",
    }


def task_class(
    name: str,
    task_type: str,
    weights: dict[str, float],
    *,
    complexity: tuple[int, int] = (1, 5),
    priority: int = 5,
) -> dict[str, Any]:
    return {
        "name": name,
        "taskType": task_type,
        "complexity": {"min": complexity[0], "max": complexity[1]},
        "priority": priority,
        "latencyObjectiveSeconds": 10.0,
        "weights": weights,
    }


def table(
    backends: list[dict[str, Any]],
    classes: list[dict[str, Any]],
    *,
    version: int = 1,
    default_class: str | None = None,
    classifier: dict[str, Any] | None = None,
    queue: dict[str, Any] | None = None,
) -> RoutingTable:
    wire: dict[str, Any] = {
        "policy": "test/policy",
        "queue": queue or QUEUE,
        "backends": backends,
        "classes": classes,
        "classifier": classifier or {},
    }
    if default_class:
        wire["defaultClass"] = default_class
    unsealed = RoutingTable.model_validate(wire)
    return unsealed.sealed(version=version, generated_at="2025-01-01T00:00:00Z")


def write_table(path: Path, content: RoutingTable | str) -> None:
    """Atomic replace, as a ConfigMap volume or an operator would do it."""
    text = content if isinstance(content, str) else content.to_json()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def chat(text: str = "hello there", *, model: str = "any", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 4, **extra}


def post_chat(
    router: RunningRouter, body: dict[str, Any] | None = None, *, headers: dict[str, str] | None = None
) -> requests.Response:
    return requests.post(
        f"{router.url}/v1/chat/completions", json=body or chat(), headers=headers, timeout=30
    )


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str


def fire(
    url: str,
    bodies: Sequence[dict[str, Any]],
    *,
    concurrency: int = 8,
    headers: Sequence[dict[str, str]] | None = None,
) -> list[Answer]:
    """POST every body (at most ``concurrency`` at a time) and return the answers in order."""

    async def run() -> list[Answer]:
        limit = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def one(i: int, body: dict[str, Any]) -> Answer:
                async with limit, session.post(url, json=body, headers=headers[i] if headers else None) as r:
                    return Answer(r.status, dict(r.headers), await r.text())

            return list(await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies))))

    return asyncio.run(run())


def assert_healthy(router: RunningRouter) -> None:
    """The router still serves: /healthz and a normal request both work."""
    assert router.process.alive(), router.process.log_tail()
    assert router.status("/healthz") == 200
    response = post_chat(router)
    assert response.status_code == 200, response.text
    assert response.json()["choices"], response.text


def eventually(check: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition") -> Any:
    return waiting.eventually(check, timeout=timeout, what=what)


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes or stops talking."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_quiet(sock)


def read_until_quiet(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
            if _complete(received):
                break
    except (TimeoutError, ConnectionResetError):
        pass
    return received


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return body.endswith(b"0\r\n\r\n")


def status_of(raw: bytes) -> int:
    line = raw.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 else 0


def error_body(raw: bytes) -> dict[str, Any]:
    body = raw.partition(b"\r\n\r\n")[2]
    return dict(json.loads(body)["error"])
