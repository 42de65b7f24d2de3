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


def test_the_rule_classifier_is_reported_when_chosen(router_factory: StartRouter) -> None:
    router = router_factory(one_backend_table(policy="test/p", model="m"), "--classifier", "rules")
    details = requests.get(router.url + "/healthz", timeout=5).json()["classifier"]
    assert details["kind"] == "rules"
    assert "--classifier rules" in details["reason"]
    assert router.metric("zeta_router_classifier_info", kind="rules", weights="") == 1
