"""Shared by the simulator tests: a plain HTTP client (the sims are real processes on loopback)."""

from __future__ import annotations

import functools
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from zeta_dev import waiting


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Http:
    """Blocking requests that return every status as a `Reply` instead of raising."""

    def request(self, method: str, url: str, body: bytes | None = None, *, timeout: float = 30) -> Reply:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        req = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return Reply(response.status, response.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read())

    def get(self, url: str, **kw: Any) -> Reply:
        return self.request("GET", url, **kw)

    def post(self, url: str, payload: Any, **kw: Any) -> Reply:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", url, body, **kw)


@pytest.fixture(scope="session")
def http() -> Http:
    return Http()


@pytest.fixture(scope="session")
def eventually() -> Callable[..., Any]:
    """``eventually(check, timeout=..., what=...)``: poll until ``check()`` is truthy, with a deadline."""
    return functools.partial(waiting.eventually, timeout=30.0, what="condition")
