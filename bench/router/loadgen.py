"""A small HTTP/1.1 load generator on bare asyncio protocols, the same for every target.

One keep-alive connection per worker, one request in flight per connection. Requests are prebuilt bytes and
responses are parsed just enough to find their end (Content-Length, chunked or close), so the client costs
far less CPU per request than any proxy under test (the benchmark prints both, so this can be checked).

Two ways to drive it:

- `closed_loop`: ``concurrency`` workers send back to back for ``duration`` seconds (the throughput phase);
- `paced`: requests leave at a fixed rate, with at most ``concurrency`` in flight (the moderate-load phase).

Each response records its latency (request written -> last byte), its time to first body byte (for SSE: the
first event), the number of SSE ``data:`` events, and, when the target sends one, its self-reported
overhead header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

STUCK_AFTER = 30.0
"""Seconds past the end of a measurement after which a request still unanswered counts as an error."""

_HEADERS, _BODY_LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILER, _UNTIL_CLOSE = range(7)


@dataclass(frozen=True)
class Address:
    host: str
    port: int


@dataclass(frozen=True)
class RequestSpec:
    """What every request of one run sends and how its answer is checked."""

    path: str
    body: dict[str, Any]
    stream: bool
    overhead_header: str | None = None
    """Response header (lower case) with the target's own overhead in milliseconds, if it sends one."""
    min_events: int = 0
    """A streamed answer with fewer ``data:`` events counts as an error (a proxy that buffered or broke it)."""

    def wire(self, address: Address) -> bytes:
        payload = json.dumps(self.body, separators=(",", ":")).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {address.host}:{address.port}\r\nUser-Agent: zeta-bench\r\n"
            f"Content-Type: application/json\r\nAccept: */*\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload


@dataclass
class Result:
    status: int
    first_byte: float
    end: float
    body: bytes
    overhead_ms: float | None
    close: bool


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; `send` returns when the whole response has arrived."""

    def __init__(self, overhead_header: str | None) -> None:
        self._overhead = f"\r\n{overhead_header}:".encode() if overhead_header else None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._future: asyncio.Future[Result] | None = None
        self._buf = bytearray()
        self._reset()

    def _reset(self) -> None:
        self._state = _HEADERS
        self._status = 0
        self._remaining = 0
        self._body = bytearray()
        self._first_byte = 0.0
        self._overhead_ms: float | None = None
        self._close = False

    # -- asyncio.Protocol ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buf += data
        try:
            self._parse(now)
        except Exception as e:  # a malformed response fails the request, not the generator
            self._fail(ConnectionError(f"bad response: {e}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._future is not None and self._state == _UNTIL_CLOSE:
            self._finish(time.perf_counter())
        else:
            self._fail(ConnectionError(f"connection closed mid-response: {exc}"))

    # -- requests --------------------------------------------------------------------------------------

    def send(self, wire: bytes) -> asyncio.Future[Result]:
        assert self.transport is not None and self._future is None
        self._future = asyncio.get_running_loop().create_future()
        self.transport.write(wire)
        return self._future

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_exception(error)

    def _finish(self, now: float) -> None:
        future, self._future = self._future, None
        result = Result(
            self._status, self._first_byte or now, now, bytes(self._body), self._overhead_ms, self._close
        )
        self._reset()
        if future is not None and not future.done():
            future.set_result(result)

    def _parse(self, now: float) -> None:
        buf = self._buf
        pos = 0
        while True:
            state = self._state
            if state == _HEADERS:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    break
                self._headers(bytes(buf[pos : end + 2]).lower())
                pos = end + 4
                if self._state == _HEADERS:  # empty body: done
                    self._finish(now)
            elif state == _BODY_LENGTH:
                take = min(self._remaining, len(buf) - pos)
                if take <= 0:
                    break
                self._first_byte = self._first_byte or now
                self._body += buf[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._finish(now)
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                size = int(bytes(buf[pos:end]).split(b";", 1)[0], 16)
                pos = end + 2
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILER
            elif state == _CHUNK_DATA:
                take = min(self._remaining, len(buf) - pos)
                if take <= 0:
                    break
                self._first_byte = self._first_byte or now
                self._body += buf[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buf) - pos < 2:
                    break
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                blank = end == pos
                pos = end + 2
                if blank:  # the empty line after the last chunk (and any trailer lines)
                    self._finish(now)
            else:  # _UNTIL_CLOSE
                if len(buf) > pos:
                    self._first_byte = self._first_byte or now
                    self._body += buf[pos:]
                    pos = len(buf)
                break
        del buf[:pos]

    def _headers(self, head: bytes) -> None:
        self._status = int(head[9:12])
        self._close = b"\r\nconnection: close" in head or head.startswith(b"http/1.0")
        if self._overhead is not None:
            at = head.find(self._overhead)
            if at >= 0:
                start = at + len(self._overhead)
                with contextlib.suppress(ValueError):
                    self._overhead_ms = float(head[start : head.find(b"\r\n", start)])
        at = head.find(b"\r\ntransfer-encoding:")
        if at >= 0 and b"chunked" in head[at : head.find(b"\r\n", at + 2)]:
            self._state = _CHUNK_SIZE
            return
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            start = at + len(b"\r\ncontent-length:")
            self._remaining = int(head[start : head.find(b"\r\n", start)])
            self._state = _BODY_LENGTH if self._remaining else _HEADERS
            return
        if self._status in (204, 304) or 100 <= self._status < 200:
            self._state = _HEADERS
            return
        self._state = _UNTIL_CLOSE
        self._close = True


@dataclass
class Measurement:
    """What one run of one target saw."""

    target: str
    mode: str
    phase: str
    started: float = 0.0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    overheads: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    late: int = 0
    """Paced sends that left more than 2 ms after their slot (the target or the client fell behind)."""
    dropped: int = 0
    """Paced slots never sent because the window ended first (the target could not keep up)."""
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0


class _Pool:
    """Connections of one run: opened before the clock starts, reopened when a target closes one."""

    def __init__(self, addresses: list[Address], spec: RequestSpec) -> None:
        self.addresses = addresses
        self.spec = spec
        self.wires = {a: spec.wire(a) for a in addresses}

    async def open(self, i: int) -> tuple[_Connection, bytes]:
        address = self.addresses[i % len(self.addresses)]
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _Connection(self.spec.overhead_header), address.host, address.port
        )
        return conn, self.wires[address]


def _record(m: Measurement, spec: RequestSpec, sent: float, result: Result) -> None:
    if result.status != 200:
        m.errors[f"http {result.status}"] += 1
        return
    if spec.stream:
        events = result.body.count(b"data:")
        if events < spec.min_events or not result.body.rstrip().endswith(b"[DONE]"):
            m.errors[f"stream cut ({events} events)"] += 1
            return
        m.events.append(events)
    elif b'"choices"' not in result.body:
        m.errors["no choices in body"] += 1
        return
    m.latencies.append(result.end - sent)
    m.ttfbs.append(result.first_byte - sent)
    if result.overhead_ms is not None:
        m.overheads.append(result.overhead_ms)


async def _exchange(
    pool: _Pool, conn: _Connection, wire: bytes, i: int, m: Measurement
) -> tuple[_Connection, bytes, float, Result | None]:
    """Send once (reconnecting first if the target closed the connection); errors are counted, not raised."""
    if conn.closed:
        conn, wire = await pool.open(i)
    sent = time.perf_counter()
    try:
        result = await conn.send(wire)
    except ConnectionError as e:
        m.errors[str(e).split(":")[0]] += 1
        conn.close()
        return await pool.open(i) + (sent, None)
    if result.close:
        conn.close()
    return conn, wire, sent, result


async def closed_loop(
    m: Measurement, addresses: list[Address], spec: RequestSpec, *, concurrency: int, duration: float
) -> Measurement:
    """``concurrency`` workers, each sending its next request as soon as the last one has finished."""
    pool = _Pool(addresses, spec)
    conns = [await pool.open(i) for i in range(concurrency)]
    m.started = start = time.perf_counter()
    deadline = start + duration
    last_end = start

    async def worker(i: int) -> None:
        nonlocal last_end
        conn, wire = conns[i]
        while time.perf_counter() < deadline:
            conn, wire, sent, result = await _exchange(pool, conn, wire, i, m)
            if result is not None:
                _record(m, spec, sent, result)
                last_end = max(last_end, result.end)
        conns[i] = (conn, wire)

    await _run_workers(m, conns, [worker(i) for i in range(concurrency)], limit=duration + STUCK_AFTER)
    m.elapsed = max(last_end, deadline) - start
    return m


async def paced(
    m: Measurement,
    addresses: list[Address],
    spec: RequestSpec,
    *,
    rate: float,
    concurrency: int,
    duration: float,
) -> Measurement:
    """Requests leave every ``1/rate`` seconds (a fixed schedule, the same for every target), at most
    ``concurrency`` in flight; a send that leaves over 2 ms after its slot counts as late, and slots still
    unsent when the window ends are dropped (a target that cannot keep up shows it in both)."""
    pool = _Pool(addresses, spec)
    conns = [await pool.open(i) for i in range(concurrency)]
    total = max(1, int(duration * rate))
    interval = 1.0 / rate
    next_ticket = 0
    m.started = start = time.perf_counter() + 0.01
    deadline = start + duration
    last_end = start

    async def worker(i: int) -> None:
        nonlocal next_ticket, last_end
        conn, wire = conns[i]
        while next_ticket < total:
            slot = start + next_ticket * interval
            next_ticket += 1
            wait = slot - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            elif time.perf_counter() > deadline:
                m.dropped += 1
                continue
            elif wait < -0.002:
                m.late += 1
            conn, wire, sent, result = await _exchange(pool, conn, wire, i, m)
            if result is not None:
                _record(m, spec, sent, result)
                last_end = max(last_end, result.end)
        conns[i] = (conn, wire)

    await _run_workers(m, conns, [worker(i) for i in range(concurrency)], limit=duration + STUCK_AFTER)
    m.elapsed = max(last_end, deadline) - start
    return m


async def _run_workers(
    m: Measurement, conns: list[tuple[_Connection, bytes]], workers: list[Any], *, limit: float
) -> None:
    """Run the workers; requests still unanswered ``STUCK_AFTER`` seconds past the window count as errors
    (the client has no per-request timeout: it would cost more than the requests themselves)."""
    tasks = [asyncio.ensure_future(w) for w in workers]
    try:
        done, stuck = await asyncio.wait(tasks, timeout=limit)
        for task in stuck:
            task.cancel()
            m.errors["no answer"] += 1
        await asyncio.gather(*stuck, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                m.errors[f"client: {task.exception()}"] += 1
    finally:
        for conn, _ in conns:
            conn.close()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
