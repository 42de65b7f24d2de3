"""A router process with the shipped learned classifier, in front of a simulator, over real HTTP: a prompt close
to one of the table's examples is classified as the example says, and the examples arrive with a table version
(hot reload)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zeta_dev.launch.router import RunningRouter
from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims
from zeta_operator.api.table import RoutingTable

from .conftest import StartRouter
from .helpers import backend, chat, eventually, post_chat, table, task_class, write_table

EXAMPLES = [
    {
        "text": "Add the tenant id to every row of the nightly billing export",
        "taskType": "code",
        "complexity": 4,
    },
    {
        "text": "Reword our release note so customers understand the outage",
        "taskType": "summarize",
        "complexity": 2,
    },
]
NEAR_COMPLEX = "add the tenant ID to each row of the nightly billing exports"
EXACT_SIMPLE = "reword our release note so customers   understand the outage"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    with start_sims([SimSpec(model="general", size_b=7, max_seqs=16, time_scale=0.05, seed=1)]) as sims:
        yield sims[0]


def routing_table(sim: RunningSim, *, version: int, examples: list[dict[str, Any]]) -> RoutingTable:
    one = {"general": 1.0}
    return table(
        [backend("general", [sim], tasks=("chat", "code", "summarize", "reasoning"))],
        [
            task_class("chat", "chat", one),
            task_class("code-simple", "code", one, complexity=(1, 2)),
            task_class("code-complex", "code", one, complexity=(3, 5)),
            task_class("summarize", "summarize", one),
            task_class("reasoning", "reasoning", one),
        ],
        version=version,
        classifier={"examples": examples},
    )


def decision(router: RunningRouter, text: str) -> tuple[str, str, str, str]:
    response = post_chat(router, chat(text))
    assert response.status_code == 200, response.text
    h = response.headers
    return h["X-Zeta-Task-Class"], h["X-Zeta-Complexity"], h["X-Zeta-Classified-By"], h["X-Zeta-Confidence"]


def test_a_prompt_close_to_an_example_is_classified_as_it_says(
    sim: RunningSim, router_factory: StartRouter, table_path: Path
) -> None:
    router = router_factory(routing_table(sim, version=1, examples=[]))
    task_class_name, complexity, source, _ = decision(router, NEAR_COMPLEX)  # the model alone: simple
    assert (task_class_name, source) == ("code-simple", "model") and int(complexity) <= 2

    write_table(table_path, routing_table(sim, version=2, examples=EXAMPLES))
    eventually(
        lambda: post_chat(router, chat("hi")).headers["X-Zeta-Table-Version"] == "2",
        what="the table with examples",
    )
    task_class_name, complexity, source, _ = decision(router, NEAR_COMPLEX)
    assert (task_class_name, source) == ("code-complex", "example")
    assert int(complexity) >= 3

    assert decision(router, EXACT_SIMPLE) == ("summarize", "2", "example", "1.000")
    unrelated = decision(router, "What is the capital of France?")
    assert unrelated[2] == "model"
