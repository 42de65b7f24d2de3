"""Shared by the simulator tests: a plain HTTP client (the sims are real processes on loopback)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


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


def _eventually(check: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def eventually() -> Callable[..., Any]:
    """``eventually(check, timeout=..., what=...)``: poll until ``check()`` is truthy, with a deadline."""
    return _eventually
