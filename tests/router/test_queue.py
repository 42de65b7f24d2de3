"""Queue ordering and aging with an injected clock, and admission (slot hand-over, deadline, full queue)."""

from __future__ import annotations

import asyncio
import random

import pytest

from zeta_operator.api.table import TableQueue
from zeta_operator.router.admission import Admission, Rejected, ServiceTimes, wait_budget
from zeta_operator.router.balancer import ClassRoute, Eligible
from zeta_operator.router.endpoints import EndpointTracker
from zeta_operator.router.metrics import RouterMetrics
from zeta_operator.router.queue import QueueFull, Waiter, WaitQueue
from zeta_operator.router.settings import Ejection

from .helpers import backend, table, task_class

ALL = frozenset({"http://a:1"})


def waiter(
    name: str, priority: int, arrived: float, *, complexity: int = 1, endpoints: frozenset[str] = ALL
) -> Waiter[str]:
    return Waiter(priority, complexity, arrived, endpoints, name)


def drain(
    queue: WaitQueue[str], *, now: float, aging: float = 10.0, endpoint: str | None = None
) -> list[str]:
    order = []
    while (w := queue.best(now=now, aging_seconds=aging, endpoint=endpoint)) is not None:
        queue.remove(w)
        order.append(w.payload)
    return order


def test_priority_then_complexity_then_arrival() -> None:
    queue: WaitQueue[str] = WaitQueue()
    for w in [
        waiter("p1", 1, 0.0),
        waiter("p5-old", 5, 0.1),
        waiter("p9", 9, 0.2),
        waiter("p5-new", 5, 0.3),
        waiter("p5-complex", 5, 0.4, complexity=4),
    ]:
        queue.push(w, max_size=10)
    assert drain(queue, now=1.0) == ["p9", "p5-complex", "p5-old", "p5-new", "p1"]
    assert len(queue) == 0


def test_aging_lifts_one_level_per_aging_period_so_nothing_starves() -> None:
    queue: WaitQueue[str] = WaitQueue()
    queue.push(waiter("old-p0", 0, 0.0), max_size=10)
    queue.push(waiter("new-p9", 9, 17.0), max_size=10)
    # at t=17.5 with 2 s aging: old-p0 is at 0 + 8 = 8, new-p9 at 9
    assert queue.best(now=17.5, aging_seconds=2.0).payload == "new-p9"  # type: ignore[union-attr]
    # at t=18.9: old-p0 is at 0 + 9 = 9, new-p9 still at 9 (1.9 s < one aging): the older goes first
    assert queue.best(now=18.9, aging_seconds=2.0).payload == "old-p0"  # type: ignore[union-attr]
    # a steady stream of fresh p9 requests cannot hold it back for ever
    late = WaitQueue[str]()
    late.push(waiter("old-p0", 0, 0.0), max_size=10)
    late.push(waiter("fresh-p9", 9, 100.0), max_size=10)
    assert late.best(now=100.0, aging_seconds=2.0).payload == "old-p0"  # type: ignore[union-attr]


def test_a_freed_endpoint_goes_to_the_best_waiter_that_may_use_it() -> None:
    queue: WaitQueue[str] = WaitQueue()
    big_only = frozenset({"http://big:1"})
    both = frozenset({"http://big:1", "http://small:1"})
    queue.push(waiter("complex-p9", 9, 0.0, complexity=4, endpoints=big_only), max_size=10)
    queue.push(waiter("simple-p5", 5, 0.1, endpoints=both), max_size=10)
    queue.push(waiter("simple-p3", 3, 0.2, endpoints=both), max_size=10)
    assert drain(queue, now=1.0, endpoint="http://small:1") == ["simple-p5", "simple-p3"]
    assert drain(queue, now=1.0, endpoint="http://big:1") == ["complex-p9"]


def test_bounded() -> None:
    queue: WaitQueue[str] = WaitQueue()
    queue.push(waiter("a", 1, 0.0), max_size=2)
    queue.push(waiter("b", 1, 0.0), max_size=2)
    with pytest.raises(QueueFull):
        queue.push(waiter("c", 1, 0.0), max_size=2)
    with pytest.raises(QueueFull):
        WaitQueue[str]().push(waiter("off", 1, 0.0), max_size=0)


def test_remove_from_the_middle_and_twice() -> None:
    queue: WaitQueue[str] = WaitQueue()
    ws = [waiter(str(i), 1, float(i)) for i in range(4)]
    for w in ws:
        queue.push(w, max_size=10)
    queue.remove(ws[2])
    queue.remove(ws[2])
    assert drain(queue, now=5.0) == ["0", "1", "3"]


# -- admission: the async glue, on a real event loop ------------------------------------------------------


def one_slot() -> tuple[Eligible, Admission]:
    t = table(
        [backend("a", ["http://a:1"], max_complexity=5, max_concurrency=1)],
        [task_class("chat", "chat", {"a": 1.0})],
    )
    route = ClassRoute.build(t.classes[0], t.backends)
    admission = Admission(EndpointTracker(Ejection()), RouterMetrics(), random.Random(1))
    return route.eligible(complexity=1, tokens=1), admission


def queue_settings(*, max_size: int = 10, max_wait: float = 5.0, aging: float = 100.0) -> TableQueue:
    return TableQueue(max_size=max_size, max_wait_seconds=max_wait, aging_seconds=aging)


def test_admission_queues_only_when_full_and_hands_slots_over_by_priority() -> None:
    async def scenario() -> list[int]:
        eligible, admission = one_slot()
        first, waited = await admission.acquire(
            eligible, priority=5, complexity=1, task_class="chat", queue=queue_settings()
        )
        assert waited == 0.0
        served: list[int] = []

        async def wait_for_slot(priority: int) -> None:
            choice, _ = await admission.acquire(
                eligible, priority=priority, complexity=1, task_class="chat", queue=queue_settings()
            )
            served.append(priority)
            admission.release(choice)

        tasks = []
        for p in (1, 7, 3, 9):
            tasks.append(asyncio.create_task(wait_for_slot(p)))
            await asyncio.sleep(0)
        assert admission.waiting == 4
        admission.release(first)
        await asyncio.gather(*tasks)
        assert admission.tracker.inflight("http://a:1") == 0
        return served

    assert asyncio.run(scenario()) == [9, 7, 3, 1]


def test_admission_deadline_and_full_queue_are_429_with_retry_after() -> None:
    async def scenario() -> None:
        eligible, admission = one_slot()
        await admission.acquire(eligible, priority=5, complexity=1, task_class="chat", queue=queue_settings())
        with pytest.raises(Rejected) as err:
            await admission.acquire(
                eligible,
                priority=5,
                complexity=1,
                task_class="chat",
                queue=queue_settings(max_wait=0.05, aging=2.5),
            )
        assert (err.value.status, err.value.reason, err.value.retry_after) == (429, "deadline", 3)
        assert admission.waiting == 0
        with pytest.raises(Rejected) as err:
            await admission.acquire(
                eligible, priority=5, complexity=1, task_class="chat", queue=queue_settings(max_size=0)
            )
        assert (err.value.status, err.value.reason) == (429, "queue_full")

    asyncio.run(scenario())


def test_a_waiter_that_goes_away_gives_back_a_slot_handed_to_it() -> None:
    async def scenario() -> None:
        eligible, admission = one_slot()
        first, _ = await admission.acquire(
            eligible, priority=5, complexity=1, task_class="chat", queue=queue_settings()
        )
        task = asyncio.create_task(
            admission.acquire(eligible, priority=5, complexity=1, task_class="chat", queue=queue_settings())
        )
        await asyncio.sleep(0)
        admission.release(first)  # handed over to the waiter...
        task.cancel()  # ...which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await task
        assert admission.tracker.inflight("http://a:1") == 0
        assert admission.waiting == 0

    asyncio.run(scenario())


def test_service_times_are_a_moving_average_per_class_and_backend() -> None:
    times = ServiceTimes()
    assert times.fastest("chat", ["a", "b"]) is None
    times.observe("chat", "a", 4.0)
    times.observe("chat", "a", 2.0)  # 4 + 0.2 x (2 - 4)
    times.observe("chat", "b", 5.0)
    times.observe("code", "b", 1.0)
    assert times.fastest("chat", ["a", "b"]) == pytest.approx(3.6)
    assert times.fastest("chat", ["b"]) == 5.0
    assert times.fastest("code", ["a"]) is None


def test_the_wait_leaves_time_to_answer_within_the_objective_only_under_shed_late() -> None:
    on = queue_settings(max_wait=10.0).model_copy(update={"shed_late": True})
    assert wait_budget(on, 6.0, 3.5) == pytest.approx(2.5)
    assert wait_budget(on, 6.0, 7.0) == 0.0  # even a free slot now would answer too late
    assert wait_budget(on, 60.0, 1.0) == 10.0  # never longer than maxWait
    assert wait_budget(on, 6.0, None) == 10.0  # no answer seen yet: no evidence to refuse on
    assert wait_budget(queue_settings(max_wait=10.0), 6.0, 7.0) == 10.0  # off: maxWait, as before


def test_shed_late_refuses_a_request_that_can_no_longer_be_answered_in_time() -> None:
    """With shedLate, a request that finds every capable endpoint busy is refused at once (429 "late") when
    the backend's recent answers took longer than its class's objective, and waits only the time that leaves
    when they were quicker; a free endpoint always takes it. Without shedLate it waits maxWait."""

    async def scenario() -> None:
        eligible, admission = one_slot()
        on = queue_settings(max_wait=30.0).model_copy(update={"shed_late": True})
        held, _ = await admission.acquire(
            eligible, priority=5, complexity=1, task_class="chat", queue=on, objective=0.5
        )
        admission.service.observe("chat", "a", 0.8)
        with pytest.raises(Rejected) as err:
            await admission.acquire(
                eligible, priority=5, complexity=1, task_class="chat", queue=on, objective=0.5
            )
        assert (err.value.status, err.value.reason) == (429, "late")
        assert "0.5s objective of class chat" in err.value.message
        assert admission.waiting == 0

        admission.service.observe("chat", "a", 0.8 - 0.75 / 0.2)  # the estimate drops to 0.05 s
        with pytest.raises(Rejected) as err:  # waits 0.45 s, not maxWait's 30 s, for a slot that never frees
            await admission.acquire(
                eligible, priority=5, complexity=1, task_class="chat", queue=on, objective=0.5
            )
        assert (err.value.reason, admission.waiting) == ("late", 0)

        admission.release(held)  # room again: taken at once, whatever the estimate
        admission.service.observe("chat", "a", 100.0)
        choice, waited = await admission.acquire(
            eligible, priority=5, complexity=1, task_class="chat", queue=on, objective=0.5
        )
        assert waited == 0.0
        off = queue_settings(max_wait=0.05)
        with pytest.raises(Rejected) as err:
            await admission.acquire(
                eligible, priority=5, complexity=1, task_class="chat", queue=off, objective=0.5
            )
        assert err.value.reason == "deadline"  # shedLate off: the estimate is not read
        admission.release(choice)

    asyncio.run(scenario())
