"""Requests generated two ways against a real router process in front of real simulator processes.

- **schema-driven** (schemathesis): cases for every operation of the router's OpenAPI description
  (docs/openapi.yaml), in schemathesis' positive mode (valid by the description) and negative mode (each case
  breaks it somewhere: a wrong type, a missing field, a bad header). Every answer is also checked against the
  description (status documented, content type, body schema).
- **byte-level** (hypothesis): any method on any path, headers the classifier reads with arbitrary values, and
  bodies that are valid requests with bytes flipped, inserted or cut, arbitrary JSON values, arbitrary bytes,
  gzip of any of these (or bytes that only claim to be gzip).

Every answer is judged by `problems`: the router must answer (no dropped connection, no dead process), never
with a 5xx (the fleet's backends are healthy and fast, so a 502/503/504 would be the router's own failure),
and a 4xx it makes itself carries an OpenAI-style error body with a message. A backend's own 4xx is relayed as
it is.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup

from zeta_dev.launch.router import RunningRouter, start_router
from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims
from zeta_operator.api.table import RoutingTable

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs" / "openapi.yaml"
MAX_BODY = 256 * 1024
CONTEXT = 4096
POSTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
GETS = ("/v1/models", "/healthz", "/readyz", "/metrics")
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


# ---------------------------------------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    router: RunningRouter
    sims: list[RunningSim]

    def rss_kib(self) -> int:
        """The router's resident set size now (VmRSS), in KiB."""
        return _proc_status_kib(self.router.process.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        return _proc_status_kib(self.router.process.pid, "VmHWM")


def _proc_status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise LookupError(field_name)


def fuzz_table(small: str, large: str) -> RoutingTable:
    """Two backends (a small one up to complexity 2, a large one up to 5) and a class per task type, so that
    every well-formed request has a capable backend: an answer other than 2xx/4xx is never the table's fault.
    No class serves embeddings (the simulator does not), so /v1/embeddings is a 400 unless a header says
    otherwise."""

    def backend(name: str, url: str, tasks: list[str], ceiling: int) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "tasks": tasks,
            "maxComplexity": ceiling,
            "contextWindow": CONTEXT,
            "endpoints": [{"url": url, "maxConcurrency": 16}],
            "state": "Healthy",
        }

    def cls(name: str, task: str, lo: int, hi: int, weights: dict[str, float]) -> dict[str, Any]:
        return {
            "name": name,
            "taskType": task,
            "complexity": {"min": lo, "max": hi},
            "priority": 5,
            "latencyObjectiveSeconds": 10.0,
            "weights": weights,
        }

    wire = {
        "policy": "fuzz/router",
        "queue": {"maxSize": 256, "maxWaitSeconds": 10.0, "agingSeconds": 2.0},
        "defaultClass": "chat-simple",
        "classifier": {
            "modelAliases": [{"alias": "zeta-coder", "taskType": "code", "complexity": 2}],
            "rules": [{"taskType": "summarize", "keywords": ["tl;dr", "summary"], "complexityBonus": 1}],
        },
        "backends": [
            backend("small", small, ["chat", "code", "summarize"], 2),
            backend("large", large, ["chat", "code", "summarize", "reasoning"], 5),
        ],
        "classes": [
            cls("chat-simple", "chat", 1, 2, {"small": 0.7, "large": 0.3}),
            cls("chat-complex", "chat", 3, 5, {"large": 1.0}),
            cls("code", "code", 1, 5, {"large": 1.0}),
            cls("summarize", "summarize", 1, 5, {"large": 1.0}),
            cls("reasoning", "reasoning", 1, 5, {"large": 1.0}),
        ],
    }
    return RoutingTable.model_validate(wire).sealed(version=1, generated_at="2026-01-01T00:00:00Z")


@contextlib.contextmanager
def fuzz_fleet(log_dir: Path) -> Iterator[Fleet]:
    """Two simulator processes (fast: time_scale 0.005) behind one router process reading a table file."""
    specs = [
        SimSpec(model=name, size_b=size, max_seqs=32, time_scale=0.005, seed=i, max_model_len=CONTEXT)
        for i, (name, size) in enumerate((("small", 4), ("large", 14)))
    ]
    with start_sims(specs, log_dir=log_dir) as (small, large):
        table = log_dir / "routing-table.json"
        table.write_text(fuzz_table(small.url, large.url).to_json())
        args = ["--seed", "1", "--max-body-bytes", str(MAX_BODY), "--body-timeout", "10"]
        with start_router(table_file=table, args=args, log_dir=log_dir) as router:
            yield Fleet(router, [small, large])


# ---------------------------------------------------------------------------------------------- judging


@dataclass
class Answer:
    status: int
    """0: no answer (the connection was dropped or refused)."""
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    method: str = "POST"
    error: str = ""


def problems(answer: Answer) -> list[str]:
    """What is wrong with the router's answer; empty when it is acceptable."""
    if answer.status == 0:
        return [f"no answer: {answer.error}"]
    if answer.status >= 500:
        return [f"{answer.status} {_error_code(answer.body)}"]
    relayed = answer.headers.get("x-zeta-backend", "none") != "none"
    if 400 <= answer.status < 500 and not relayed and answer.method != "HEAD":
        try:
            error = json.loads(answer.body)["error"]
            if not (isinstance(error["message"], str) and error["message"]):
                return [f"{answer.status} without an error message"]
        except (ValueError, KeyError, TypeError):
            return [f"{answer.status} without an OpenAI-style JSON error body: {answer.body[:80]!r}"]
    return []


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return repr(body[:80])


def status_class(status: int) -> str:
    return "none" if status == 0 else f"{status // 100}xx"


@dataclass
class Finding:
    signature: str
    count: int
    reproducer: str


@dataclass
class Tally:
    """Counts per generator and status class, and the distinct problems with one reproducer each."""

    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)
    findings: dict[str, Finding] = field(default_factory=dict)
    unsendable: int = 0

    def record(self, generator: str, answer: Answer, found: list[str], reproducer: Callable[[], str]) -> None:
        self.cases[generator] += 1
        self.statuses[(generator, status_class(answer.status))] += 1
        self.codes[answer.status] += 1
        for problem in found:
            signature = f"{generator}: {problem}"[:200]
            if signature in self.findings:
                self.findings[signature].count += 1
            else:
                self.findings[signature] = Finding(signature, 1, reproducer())

    @property
    def total(self) -> int:
        return sum(self.cases.values())


# ---------------------------------------------------------------------------------------------- schema-driven


def openapi_schema() -> Any:
    return schemathesis.openapi.from_path(str(OPENAPI))


def schema_operations() -> list[tuple[str, Any]]:
    """(label, hypothesis strategy of schemathesis Cases) for every documented operation and mode; GET
    operations have no inputs, so only positive mode."""
    schema = openapi_schema()
    out = []
    for path in POSTS:
        for mode in GenerationMode:
            out.append(
                (f"schema {mode.value} POST {path}", schema[path]["POST"].as_strategy(generation_mode=mode))
            )
    for path in GETS:
        out.append((f"schema positive GET {path}", schema[path]["GET"].as_strategy()))
    return out


def call_schema_case(case: Any, base_url: str, session: requests.Session) -> tuple[Answer, list[str]]:
    """Send a schemathesis case; the answer and any conformance failures against the description."""
    try:
        response = case.call(base_url=base_url, session=session, timeout=60)
    except requests.exceptions.InvalidHeader:
        raise Unsendable from None
    except requests.RequestException as e:
        return Answer(0, {}, b"", case.method.upper(), f"{type(e).__name__}: {e}"), []
    headers = {k.lower(): ", ".join(v) for k, v in response.headers.items()}
    answer = Answer(response.status_code, headers, response.content, case.method.upper())
    conformance: list[str] = []
    try:
        case.validate_response(response, checks=CONFORMANCE)
    except (FailureGroup, Failure) as e:
        conformance.append("not as documented: " + _first_line(e))
    return answer, conformance


class Unsendable(Exception):
    """The HTTP client refuses to send this case (a header value it cannot encode): not a router question."""


def _first_line(e: BaseException) -> str:
    inner = getattr(e, "exceptions", None)
    if inner:
        e = inner[0]
    title = getattr(e, "title", None) or type(e).__name__
    return str(title).splitlines()[0]


def schema_reproducer(case: Any, base_url: str) -> str:
    try:
        return str(case.as_curl_command(base_url=base_url))
    except Exception:
        return f"{case.method} {case.path} headers={case.headers!r} body={case.body!r}"[:4000]


# ---------------------------------------------------------------------------------------------- byte-level


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def reproducer(self, base_url: str) -> str:
        return (
            f"requests.request({self.method!r}, {base_url!r} + {self.path!r}, "
            f"headers={self.headers!r}, data={self.body[:2000]!r})"
        )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant"]), "content": st.text(max_size=200)}
)
_VALID_BODIES = {
    "/v1/chat/completions": st.fixed_dictionaries(
        {"model": st.sampled_from(["any", "zeta-coder", "small"]), "messages": st.lists(_MESSAGE, min_size=1, max_size=4)},
        optional={"stream": st.booleans(), "max_tokens": st.integers(1, 64)},
    ),
    "/v1/completions": st.fixed_dictionaries(
        {"model": st.just("any"), "prompt": st.text(max_size=200) | st.lists(st.integers(0, 50000), min_size=1, max_size=50)},
        optional={"stream": st.booleans(), "max_tokens": st.integers(1, 64)},
    ),
    "/v1/embeddings": st.fixed_dictionaries({"model": st.just("any"), "input": st.text(max_size=100)}),
}  # fmt: skip
_HEADER_VALUE = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
)
_HEADER_NAMES = (
    "X-Zeta-Task", "X-Zeta-Complexity", "X-Zeta-Priority", "X-Request-Id", "Content-Type", "Accept",
    "Accept-Encoding", "X-Forwarded-For", "Authorization",
)  # fmt: skip
_HEADERS = st.dictionaries(
    st.sampled_from(_HEADER_NAMES),
    st.one_of(
        _HEADER_VALUE,
        st.sampled_from(["chat", "code", "reasoning", "embeddings", "1", "5", "9", "high", "0", "-1", "6"]),
    ),
    max_size=4,
)


@st.composite
def _mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """A valid body with a few bytes flipped, inserted or deleted, or cut short."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=4) | st.sampled_from([b"{", b"[", b'"', b"\\", b"\xff"])
            )
        elif kind == "delete":
            del data[at]
        else:
            del data[at:]
    return bytes(data)


@st.composite
def raw_requests(draw: st.DrawFn) -> RawRequest:
    method = draw(st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))
    path = draw(
        st.sampled_from(POSTS + GETS)
        | st.builds(lambda p: "/" + p, st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#?%"), max_size=30))
    )  # fmt: skip
    if draw(st.booleans()):
        path += "?" + draw(
            st.text(
                st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=30
            )
        )
    headers = dict(draw(_HEADERS))
    valid = json.dumps(
        draw(_VALID_BODIES.get(path.split("?")[0], _VALID_BODIES["/v1/chat/completions"]))
    ).encode()
    body = draw(
        st.one_of(
            st.just(valid),
            _mutated(valid),
            _JSON.map(lambda v: json.dumps(v).encode()),
            st.binary(max_size=300),
            st.sampled_from([b"", b"{}", b"null", b"[]", b'{"model": "x", "messages": [' * 200, b"[" * 5000 + b"]" * 5000]),
        )
    )  # fmt: skip
    encoding = draw(
        st.sampled_from([None] * 6 + ["gzip", "gzip-lie", "deflate", "br", "identity", "x-unknown"])
    )
    if encoding == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif encoding == "deflate":
        body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
    elif encoding == "gzip-lie":
        headers["Content-Encoding"] = "gzip"  # says gzip, is not
    elif encoding is not None:
        headers["Content-Encoding"] = encoding
    return RawRequest(method, path, headers, body)


def call_raw(request: RawRequest, base_url: str, session: requests.Session) -> Answer:
    try:
        response = session.request(
            request.method, base_url + request.path, headers=request.headers, data=request.body, timeout=60
        )
    except requests.exceptions.InvalidHeader:
        raise Unsendable from None
    except requests.RequestException as e:
        return Answer(0, {}, b"", request.method, f"{type(e).__name__}: {e}")
    headers = {k.lower(): v for k, v in response.headers.items()}
    return Answer(response.status_code, headers, response.content, request.method)


# ---------------------------------------------------------------------------------------------- running


def run(strategy: st.SearchStrategy[Any], cases: int, seed: int, each: Callable[[Any], None]) -> None:
    """Draw up to ``cases`` examples from ``strategy`` (generation only: the run records every problem
    instead of stopping at the first) and call ``each`` on each."""

    @settings(
        max_examples=cases,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(strategy)
    def draw(example: Any) -> None:
        each(example)

    hypothesis.seed(seed)(draw)()


def fuzz(fleet: Fleet, *, cases: int, seed: int, tally: Tally, progress: Callable[[str], None]) -> None:
    """Spread ``cases`` over the generators: half schema-driven (spread over the operations by weight),
    half byte-level; records into ``tally``."""
    base = fleet.router.url
    session = requests.Session()
    operations = schema_operations()
    weights = {label: (1 if " GET " in label else 6) for label, _ in operations}
    schema_cases = cases // 2
    total_weight = sum(weights.values())
    rng = random.Random(seed)
    for label, strategy in operations:
        share = max(1, schema_cases * weights[label] // total_weight)

        def one_schema_case(case: Any, label: str = label) -> None:
            try:
                answer, conformance = call_schema_case(case, base, session)
            except Unsendable:
                tally.unsendable += 1
                return
            found = problems(answer) + conformance
            tally.record(label, answer, found, lambda: schema_reproducer(case, base))

        before = tally.total
        run(strategy, share, rng.randrange(2**32), one_schema_case)
        progress(f"{label}: {tally.total - before} cases")
    fuzz_raw(fleet, cases=max(0, cases - tally.total), seed=rng.randrange(2**32), tally=tally)
    progress(f"byte-level: {tally.cases['byte-level']} cases")


def fuzz_raw(fleet: Fleet, *, cases: int, seed: int, tally: Tally, label: str = "byte-level") -> None:
    """``cases`` byte-level requests sent (drawn again when hypothesis ends a run early)."""
    base = fleet.router.url
    session = requests.Session()
    rng = random.Random(seed)

    def one_raw(request: RawRequest) -> None:
        try:
            answer = call_raw(request, base, session)
        except Unsendable:
            tally.unsendable += 1
            return
        tally.record(label, answer, problems(answer), lambda: request.reproducer(base))

    remaining = cases
    while remaining > 0:  # counts requests sent: a case the client cannot send is drawn again
        before = tally.total
        run(raw_requests(), remaining, rng.randrange(2**32), one_raw)
        sent = tally.total - before
        if sent == 0:
            break
        remaining -= sent
