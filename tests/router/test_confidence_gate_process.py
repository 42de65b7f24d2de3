"""Never down on doubt, task type half, as a router process over real HTTP: with a hand-made weights file, a
request the classifier finds as likely a summary as a chat is only served by the backend that does both,
although the chat class gives most of its weight to one that cannot summarize; a request that is surely chat
follows the weights. The same off the preferred backends alone (offloadTaskConfidence)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims
from zeta_operator.api.policy import DEFAULT_OFFLOAD_TASK_CONFIDENCE

from .conftest import StartRouter
from .helpers import backend, chat, fire, table, task_class
from .learned import weights_data, weights_file
from .test_confidence_gate import CHAT_OR_SUMMARY_STRUCTURE, LONGER, SHORT


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, RunningSim]]:
    specs = [
        SimSpec(model="coder", size_b=7, max_seqs=16, time_scale=0.05, seed=1),
        SimSpec(model="general", size_b=4, max_seqs=16, time_scale=0.05, seed=2),
    ]
    with start_sims(specs) as running:
        yield {s.spec.model: s for s in running}


def test_a_request_that_may_be_a_summary_is_served_by_a_backend_that_summarizes(
    sims: dict[str, RunningSim], router_factory: StartRouter, tmp_path: Path
) -> None:
    weights = tmp_path / "classifier.json.gz"
    weights.write_bytes(weights_file(weights_data(structure=CHAT_OR_SUMMARY_STRUCTURE)))
    routes = table(
        [
            backend("coder", [sims["coder"]], tasks=("code", "chat"), max_concurrency=64),
            backend("general", [sims["general"]], tasks=("chat", "summarize"), max_concurrency=64),
        ],
        [
            task_class("chat", "chat", {"coder": 0.8, "general": 0.2}),
            task_class("summarize", "summarize", {"general": 1.0}),
        ],
        classifier={"offloadConfidence": 0.9, "taskConfidence": 0.9},
    )
    router = router_factory(routes, "--classifier-weights", str(weights))
    url = f"{router.url}/v1/chat/completions"

    unsure = fire(url, [chat(LONGER) for _ in range(40)])
    assert {a.status for a in unsure} == {200}
    assert {a.headers["X-Zeta-Task-Class"] for a in unsure} == {"chat"}
    assert all(float(a.headers["X-Zeta-Confidence"]) < 0.6 for a in unsure)
    assert Counter(a.headers["X-Zeta-Backend"] for a in unsure) == {"general": 40}

    sure = fire(url, [chat(SHORT) for _ in range(40)])
    assert {a.status for a in sure} == {200}
    served = Counter(a.headers["X-Zeta-Backend"] for a in sure)
    assert served["coder"] > 20  # about 80%, as the table says


def test_leaving_its_preferred_backend_an_unsure_request_goes_only_where_its_task_types_are_served(
    sims: dict[str, RunningSim], router_factory: StartRouter, tmp_path: Path
) -> None:
    """offloadTaskConfidence, at the API's default (the table leaves it out): the chat class prefers the
    general model and the operator offloads most of it to the coder, which cannot summarize; the request that
    may be a summary stays with the general model, the surely-chat one is offloaded as the weights say."""
    weights = tmp_path / "classifier.json.gz"
    weights.write_bytes(weights_file(weights_data(structure=CHAT_OR_SUMMARY_STRUCTURE)))
    chat_class = {**task_class("chat", "chat", {"coder": 0.8, "general": 0.2}), "preferred": ["general"]}
    routes = table(
        [
            backend("coder", [sims["coder"]], tasks=("code", "chat"), max_concurrency=64),
            backend("general", [sims["general"]], tasks=("chat", "summarize"), max_concurrency=64),
        ],
        [chat_class, task_class("summarize", "summarize", {"general": 1.0})],
        classifier={"offloadConfidence": 0.9},
    )
    # above the test model's 0.55 for chat, so summarize is plausible too
    assert routes.classifier.offload_task_confidence == DEFAULT_OFFLOAD_TASK_CONFIDENCE > 0.6
    assert routes.classifier.task_confidence == 0.0
    router = router_factory(routes, "--classifier-weights", str(weights))
    url = f"{router.url}/v1/chat/completions"

    unsure = fire(url, [chat(LONGER) for _ in range(40)])
    assert {a.status for a in unsure} == {200}
    assert Counter(a.headers["X-Zeta-Backend"] for a in unsure) == {"general": 40}

    sure = fire(url, [chat(SHORT) for _ in range(40)])
    assert {a.status for a in sure} == {200}
    assert Counter(a.headers["X-Zeta-Backend"] for a in sure)["coder"] > 20  # about 80%, as the table says
