"""Overload over real HTTP: one endpoint with max_concurrency 1, held by a request to a hung simulator, so
every other request must wait in the router's queue. Order, aging, deadline, a full queue, and "never queue
while a capable backend has room"."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from zeta_dev.launch.router import RunningRouter
from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims
from zeta_dev.localcluster.processes import free_port

from .conftest import StartRouter
from .helpers import assert_healthy, backend, chat, eventually, post_chat, table, task_class


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, RunningSim]]:
    specs = [
        SimSpec(model="slow", size_b=4, max_seqs=2, time_scale=0.05, seed=1),
        SimSpec(model="spare", size_b=4, max_seqs=8, time_scale=0.05, seed=2),
    ]
    with start_sims(specs) as started:
        yield {s.spec.model: s for s in started}


def one_slot_table(slow: RunningSim, **queue: Any) -> Any:
    settings = {"maxSize": 16, "maxWaitSeconds": 30.0, "agingSeconds": 60.0, **queue}
    return table(
        [backend("slow", [slow], max_concurrency=1)],
        [task_class("chat", "chat", {"slow": 1.0})],
        queue=settings,
    )


class Requests:
    """Requests sent from threads, each named by its X-Request-Id; results by name."""

    def __init__(self, router: RunningRouter) -> None:
        self.router = router
        self.results: dict[str, requests.Response] = {}
        self.threads: list[threading.Thread] = []

    def send(self, name: str, *, priority: int | None = None, max_tokens: int = 200) -> None:
        headers = {"X-Request-Id": name}
        if priority is not None:
            headers["X-Zeta-Priority"] = str(priority)

        def run() -> None:
            self.results[name] = post_chat(self.router, chat(name, max_tokens=max_tokens), headers=headers)

        thread = threading.Thread(target=run, name=name)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(60)

    def served_order(self) -> list[str]:
        """The order the router finished them in, from its access log (needs --access-log). With one slot,
        each request reaches the backend only after the previous one released it, so this is the order in
        which the queue granted the slot, whatever the client threads' timing."""
        lines = (
            json.loads(line)
            for line in self.router.process.log.read_text().splitlines()
            if line.startswith("{")
        )
        return [line["request_id"] for line in lines if line.get("request_id") in self.results]


def depth(router: RunningRouter) -> float:
    return router.metric("zeta_router_queue_depth")


def blocked(router: RunningRouter, slow: RunningSim, traffic: Requests) -> None:
    """Hang the sim and send a request that holds the only slot."""
    slow.set_faults(hang=True)
    traffic.send("blocker", max_tokens=2)
    eventually(
        lambda: router.metric("zeta_router_inflight_requests", backend="slow") == 1, what="the blocker"
    )


def queued_behind_a_blocker(router: RunningRouter, slow: RunningSim) -> requests.Response:
    """The answer to a request ("late") sent while a blocker holds the only slot (then the sim is let go)."""
    traffic = Requests(router)
    try:
        blocked(router, slow, traffic)
        traffic.send("late", priority=5)
        eventually(lambda: "late" in traffic.results, what="the late request's answer")
        return traffic.results["late"]
    finally:
        slow.set_faults(hang=False)
        traffic.join()


def queue_in_order(router: RunningRouter, traffic: Requests, priorities: list[tuple[str, int]]) -> None:
    for n, (name, priority) in enumerate(priorities, start=1):
        traffic.send(name, priority=priority)
        eventually(lambda n=n: depth(router) == n, what=f"{n} waiting")


def test_waiters_are_served_by_priority(sims: dict[str, RunningSim], router_factory: StartRouter) -> None:
    slow = sims["slow"]
    router = router_factory(one_slot_table(slow), "--access-log")
    traffic = Requests(router)
    try:
        blocked(router, slow, traffic)
        queue_in_order(router, traffic, [("p1", 1), ("p5", 5), ("p9", 9), ("p3", 3), ("p7", 7)])
    finally:
        slow.set_faults(hang=False)
        traffic.join()
    assert traffic.served_order() == ["blocker", "p9", "p7", "p5", "p3", "p1"]
    assert all(r.status_code == 200 for r in traffic.results.values())
    assert float(traffic.results["p1"].headers["X-Zeta-Queue-Ms"]) > 0
    assert router.metric("zeta_router_queue_wait_seconds_count", task_class="chat") == 5
    assert depth(router) == 0


def test_aging_serves_a_long_waiting_low_priority_request_first(
    sims: dict[str, RunningSim], router_factory: StartRouter
) -> None:
    """Aging 0.2 s: after 2.5 s the priority-0 request has gained 12 levels and passes a fresh priority 9."""
    slow = sims["slow"]
    router = router_factory(one_slot_table(slow, agingSeconds=0.2), "--access-log")
    traffic = Requests(router)
    try:
        blocked(router, slow, traffic)
        queue_in_order(router, traffic, [("old-p0", 0)])
        time.sleep(2.5)  # letting it age: a slower machine only makes it older, never younger
        traffic.send("fresh-p9", priority=9)
        eventually(lambda: depth(router) == 2, what="both waiting")
    finally:
        slow.set_faults(hang=False)
        traffic.join()
    assert traffic.served_order() == ["blocker", "old-p0", "fresh-p9"]


def test_a_full_queue_answers_429_with_retry_after(
    sims: dict[str, RunningSim], router_factory: StartRouter
) -> None:
    slow = sims["slow"]
    router = router_factory(one_slot_table(slow, maxSize=2, maxWaitSeconds=120.0, agingSeconds=2.0))
    traffic = Requests(router)
    try:
        blocked(router, slow, traffic)
        queue_in_order(router, traffic, [("w1", 5), ("w2", 5)])
        full = post_chat(router)
        assert full.status_code == 429
        assert full.headers["Retry-After"] == "2"
        assert full.json()["error"]["code"] == "queue_full"
        assert full.json()["error"]["type"] == "rate_limit_error"
        # what the router made of it, as on an answered request, but no backend: none was chosen
        assert full.headers["X-Zeta-Task-Class"] == "chat"
        assert 0.0 <= float(full.headers["X-Zeta-Confidence"]) <= 1.0
        assert full.headers["X-Zeta-Classified-By"]
        assert full.headers["X-Request-Id"]
        assert "X-Zeta-Backend" not in full.headers
    finally:
        slow.set_faults(hang=False)
        traffic.join()
    assert {name: r.status_code for name, r in traffic.results.items()} == {
        "blocker": 200,
        "w1": 200,
        "w2": 200,
    }
    assert router.metric("zeta_router_rejected_total", reason="queue_full") == 1
    assert router.metric("zeta_router_requests_total", backend="none", code="429") == 1
    assert depth(router) == 0
    assert_healthy(router)


def test_a_waiter_past_its_deadline_answers_429_with_retry_after(
    sims: dict[str, RunningSim], router_factory: StartRouter
) -> None:
    """The deadline is short; nothing waits on the window in which the request is queued, only on its answer."""
    slow = sims["slow"]
    router = router_factory(one_slot_table(slow, maxWaitSeconds=0.5, agingSeconds=2.0))
    late = queued_behind_a_blocker(router, slow)
    assert late.status_code == 429
    assert late.headers["Retry-After"] == "2"
    assert late.json()["error"]["code"] == "deadline"
    assert late.json()["error"]["type"] == "rate_limit_error"
    assert late.headers["X-Zeta-Task-Class"] == "chat"
    assert "X-Zeta-Complexity" in late.headers
    assert late.headers["X-Request-Id"] == "late"
    assert router.metric("zeta_router_rejected_total", reason="deadline") == 1
    assert router.metric("zeta_router_queue_wait_seconds_count", task_class="chat") == 1
    assert depth(router) == 0
    assert_healthy(router)


def test_shed_late_refuses_at_once_what_can_no_longer_be_answered_in_time(
    sims: dict[str, RunningSim], router_factory: StartRouter
) -> None:
    """shedLate, and a class objective (1 ms) shorter than any answer the router has seen from the backend: a
    request that finds the only slot busy is refused at once (429 "late"), not after maxWait (30 s here)."""
    slow = sims["slow"]
    hurried = {**task_class("chat", "chat", {"slow": 1.0}), "latencyObjectiveSeconds": 0.001}
    queue = {"maxSize": 16, "maxWaitSeconds": 30.0, "agingSeconds": 2.0, "shedLate": True}
    router = router_factory(table([backend("slow", [slow], max_concurrency=1)], [hurried], queue=queue))
    first = post_chat(router, chat("an answer to learn the service time from", max_tokens=50))
    assert first.status_code == 200 and first.elapsed.total_seconds() > 0.001
    late = queued_behind_a_blocker(router, slow)
    assert (late.status_code, late.headers["Retry-After"]) == (429, "2")
    assert late.json()["error"]["code"] == "late"
    assert "objective of class chat" in late.json()["error"]["message"]
    assert router.metric("zeta_router_rejected_total", reason="late") == 1
    assert depth(router) == 0
    assert_healthy(router)


def test_never_queued_while_a_capable_backend_has_room(
    sims: dict[str, RunningSim], router_factory: StartRouter
) -> None:
    slow, spare = sims["slow"], sims["spare"]
    router = router_factory(
        table(
            [backend("slow", [slow], max_concurrency=1), backend("spare", [spare], max_concurrency=4)],
            [task_class("chat", "chat", {"slow": 1.0})],
        )
    )
    traffic = Requests(router)
    try:
        blocked(router, slow, traffic)
        answers = [post_chat(router) for _ in range(6)]
    finally:
        slow.set_faults(hang=False)
        traffic.join()
    assert {(r.status_code, r.headers["X-Zeta-Backend"], r.headers["X-Zeta-Decision"]) for r in answers} == {
        (200, "spare", "fallback")
    }
    assert not any("X-Zeta-Queue-Ms" in r.headers for r in answers)
    assert router.metric("zeta_router_queue_wait_seconds_count") == 0


def test_a_client_that_leaves_the_queue_frees_its_place(
    sims: dict[str, RunningSim], router_factory: StartRouter
) -> None:
    slow = sims["slow"]
    router = router_factory(one_slot_table(slow))
    traffic = Requests(router)
    try:
        blocked(router, slow, traffic)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{router.url}/v1/chat/completions", json=chat(), timeout=(5, 0.5))
        eventually(lambda: depth(router) == 0, what="the abandoned waiter to leave")
    finally:
        slow.set_faults(hang=False)
        traffic.join()
    assert router.metric("zeta_router_requests_total", code="499") == 1
    assert_healthy(router)


def test_no_reachable_backend_is_503_and_too_long_a_prompt_400(
    sims: dict[str, RunningSim], router_factory: StartRouter
) -> None:
    spare = sims["spare"]
    router = router_factory(
        table(
            [
                backend("empty", [], max_complexity=5),
                backend("short", [spare], tasks=["code"], context_window=1000),
            ],
            [
                task_class("chat", "chat", {"empty": 1.0}, complexity=(1, 2)),
                task_class("code", "code", {"short": 1.0}),
            ],
            classifier={"rules": [{"taskType": "code", "keywords": ["code"]}]},
        )
    )
    nobody = post_chat(router, chat("hi"), headers={"X-Zeta-Task": "chat"})
    assert nobody.status_code == 503
    assert nobody.headers["Retry-After"] == "5"
    assert nobody.json()["error"]["code"] == "no_backend"
    too_long = post_chat(router, chat("code " + "x" * 8000))
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    ok = post_chat(router, chat("code please"))
    assert (ok.status_code, ok.headers["X-Zeta-Backend"]) == (200, "short")


# A read may take the whole interval: 1 s, not less, so that a busy machine cannot make a page look unreadable.
@pytest.mark.parametrize("engine_poll", ["0", "1"])
def test_each_replica_admits_its_share_of_an_endpoints_cap(
    sims: dict[str, RunningSim], router_factory: StartRouter, engine_poll: str
) -> None:
    """With --replicas 2, an endpoint of maxConcurrency 2 takes one request from this replica: the second
    waits in its queue (its peer replica may hold the other slot), where one router alone would send both.
    Also when the engine, read, says it holds only this replica's request: a reading is up to a second old, and
    taking a peer's unused share on it lost goodput at scale (docs/benchmarks.md, scale-burst)."""
    slow = sims["slow"]
    two_slots = table(
        [backend("slow", [slow], max_concurrency=2)],
        [task_class("chat", "chat", {"slow": 1.0})],
        queue={"maxSize": 16, "maxWaitSeconds": 30.0, "agingSeconds": 60.0},
    )
    router = router_factory(two_slots, "--replicas", "2", "--engine-poll-interval", engine_poll)
    traffic = Requests(router)
    try:
        blocked(router, slow, traffic)
        if engine_poll != "0":
            eventually(
                lambda: router.metric("zeta_router_engine_occupancy", backend="slow") == 1, what="read"
            )
        traffic.send("second", max_tokens=2)
        eventually(lambda: depth(router) == 1, what="the second waiting")
        assert router.metric("zeta_router_inflight_requests", backend="slow") == 1
    finally:
        slow.set_faults(hang=False)
        traffic.join()
    assert {r.status_code for r in traffic.results.values()} == {200}
    assert float(traffic.results["second"].headers["X-Zeta-Queue-Ms"]) > 0


def test_a_backend_filled_by_a_client_that_bypasses_the_router_is_passed_over(
    sims: dict[str, RunningSim], router_factory: StartRouter
) -> None:
    """A batch job calls the preferred backend's engine directly and takes its one slot; no router counts it,
    but the engine's /metrics shows it, and the router sends the next request to the spare backend."""
    slow, spare = sims["slow"], sims["spare"]
    router = router_factory(
        table(
            [backend("slow", [slow], max_concurrency=1), backend("spare", [spare], max_concurrency=4)],
            [task_class("chat", "chat", {"slow": 1.0})],
        ),
        "--engine-poll-interval",
        "1",  # a read may take the interval: a failed one would forget what the engine showed
    )
    outside: list[requests.Response] = []
    batch = threading.Thread(
        target=lambda: outside.append(
            requests.post(f"{slow.url}/v1/chat/completions", json=chat("batch", model="slow"), timeout=60)
        )
    )
    try:
        slow.set_faults(hang=True)
        batch.start()
        eventually(lambda: router.metric("zeta_router_engine_occupancy", backend="slow") == 1, what="seen")
        answer = post_chat(router)
    finally:
        slow.set_faults(hang=False)
        batch.join(60)
    assert (answer.status_code, answer.headers["X-Zeta-Backend"], answer.headers["X-Zeta-Decision"]) == (
        200,
        "spare",
        "fallback",
    )
    assert [r.status_code for r in outside] == [200]


def test_a_retry_waits_for_a_busy_backend_instead_of_failing(
    sims: dict[str, RunningSim], router_factory: StartRouter
) -> None:
    """Found by bench/bench_chaos.py: a killed backend's requests failed with 502 whenever the capable fallback
    was at capacity at that moment. A request that could not reach its endpoint waits for a slot elsewhere."""
    slow = sims["slow"]
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here: every attempt is a connect error
    router = router_factory(
        table(
            [backend("dead", [dead], model="slow"), backend("slow", [slow], max_concurrency=1)],
            [task_class("chat", "chat", {"dead": 1.0})],
        ),
        "--access-log",
    )
    traffic = Requests(router)
    try:
        blocked(router, slow, traffic)  # the blocker fails on dead, then holds slow's only slot
        traffic.send("retried")
        eventually(lambda: depth(router) == 1, what="the retry waiting for slow")
    finally:
        slow.set_faults(hang=False)
        traffic.join()
    retried = traffic.results["retried"]
    assert retried.status_code == 200, retried.text
    assert retried.headers["X-Zeta-Backend"] == "slow"
    assert retried.headers["X-Zeta-Retries"] == "1"
    assert float(retried.headers["X-Zeta-Queue-Ms"]) > 0
    assert router.metric("zeta_router_retries_total", backend="dead") == 2
    assert depth(router) == 0
