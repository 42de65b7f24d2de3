"""The CI slice of `python -m bench.fuzz_router`: a few hundred generated requests, deterministic (hypothesis
derandomized), against a real router process in front of two real simulator processes.

Schema-driven cases (schemathesis on docs/openapi.yaml, positive and negative) and byte-level cases
(hypothesis: mutated bodies, arbitrary JSON and bytes, lying Content-Encodings, any method on any path). Each
answer must come (no dropped connection), must not be a 5xx (the backends are healthy), a 4xx the router makes
must carry an OpenAI-style error message, and a schema-driven answer must be as the description documents it.
On failure hypothesis shrinks the case and prints it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings

# bench/ is not an installed package: it runs from a checkout, so the test imports it from the checkout too.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bench.fuzz.router import (  # noqa: E402
    Fleet,
    RawRequest,
    Unsendable,
    call_raw,
    call_schema_case,
    fuzz_fleet,
    problems,
    raw_requests,
    schema_operations,
)

SCHEMA_CASES = 30
"""Per operation and mode (6 POST operation-modes, 4 GET operations)."""
RAW_CASES = 200

CI = settings(
    max_examples=SCHEMA_CASES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fuzz_fleet(tmp_path_factory.mktemp("fuzz-router")) as started:
        yield started


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


OPERATIONS = dict(schema_operations())


@pytest.mark.parametrize("label", list(OPERATIONS), ids=list(OPERATIONS))
def test_schema_driven_requests(label: str, fleet: Fleet, session: requests.Session) -> None:
    @CI
    @given(case=OPERATIONS[label])
    def check(case: Any) -> None:
        try:
            answer, conformance = call_schema_case(case, fleet.router.url, session)
        except Unsendable:
            return
        assert problems(answer) + conformance == [], (answer.status, answer.body[:300])

    check()


def test_byte_level_requests(fleet: Fleet, session: requests.Session) -> None:
    @settings(CI, max_examples=RAW_CASES)
    @given(request=raw_requests())
    def check(request: RawRequest) -> None:
        try:
            answer = call_raw(request, fleet.router.url, session)
        except Unsendable:
            return
        assert problems(answer) == [], (answer.status, answer.body[:300])

    check()


def test_the_router_stayed_up_and_logged_no_error(fleet: Fleet) -> None:
    """Runs after the cases above: the process is alive, healthy, and nothing reached an unexpected path."""
    assert fleet.router.process.alive(), fleet.router.process.log_tail()
    assert fleet.router.status("/healthz") == 200
    log = Path(fleet.router.process.log).read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
