"""Durations stay strings on the wire and in the CRD schema, and are parsed into seconds once, when a model is
built: the operator reads the ``*_seconds`` views."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from zeta_operator.api.policy import Adaptation, PrometheusSettings, QueueSettings, TaskClass
from zeta_operator.api.table import TableQueue


def test_seconds_views_and_unchanged_wire() -> None:
    queue = QueueSettings.model_validate({"maxWait": "1m30s", "aging": "250ms"})
    assert (queue.max_wait_seconds, queue.aging_seconds) == (90.0, 0.25)
    assert queue.to_wire() == {"maxSize": 256, "maxWait": "1m30s", "aging": "250ms", "shedLate": False}
    table_queue = TableQueue.of(queue.model_copy(update={"shed_late": True}))
    assert (table_queue.max_wait_seconds, table_queue.aging_seconds, table_queue.shed_late) == (
        90.0,
        0.25,
        True,
    )
    adaptation = Adaptation()
    assert (adaptation.interval_seconds, adaptation.stale_after_seconds, adaptation.blackout_seconds) == (
        5,
        60,
        10,
    )
    task = TaskClass(name="chat", task_type="chat", preferred=["a"], latency_objective="2s")
    assert task.latency_objective_seconds == 2.0


def test_a_copy_with_a_new_duration_has_its_seconds() -> None:
    prometheus = PrometheusSettings().model_copy(update={"window": "500ms"})
    assert (prometheus.window_seconds, prometheus.timeout_seconds) == (0.5, 2.0)


def test_a_bad_duration_is_rejected_at_the_boundary() -> None:
    with pytest.raises(ValidationError, match="maxWait"):
        QueueSettings.model_validate({"maxWait": "10 seconds"})
