"""The routing benchmark's smoke mode (what CI runs): the DES on every scenario compressed to 20 s, sending
held-out labelled prompts with no class headers. It asserts only that the run completes and prints a table per
scenario with the true-label columns, and correctness properties that hold whatever the classifier: Zeta never
answers a request with a backend that cannot serve the class the router's classifier gave it, and every answer's
quality and cost come from the scenario's tables. Never timings."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest

# bench/ is not an installed package: it runs from a checkout, so the test imports it from the checkout too.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bench import bench_routing  # noqa: E402
from bench.routing import des, metrics, prompts, report, scenario, unseen  # noqa: E402


def _code_burst(duration: float) -> scenario.Scenario:
    sc = scenario.shrink(scenario.load("code-burst"), duration=duration)
    held = prompts.load_heldout_prompts()
    return scenario.with_prompts(sc, prompts.pools(sc.policy, held.prompts))


def test_smoke_prints_a_table_per_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_routing.main(["--smoke", "--scenario", "all"]) == 0
    out = capsys.readouterr().out
    for name in scenario.names():
        assert f"### {name} (des)" in out
    bounds = (report.ORACLE_PRIORITY, report.GIVEN_ROUTER, report.GIVEN_ROUTER_PRIORITY)
    for strategy in (*des.STRATEGIES, "oracle (LP bound)", *bounds):
        assert re.search(rf"^\| {re.escape(strategy)} \|", out, re.M), strategy
    header = next(line for line in out.splitlines() if "true cap. violations" in line)
    for column in ("quality goodput", "cost / good answer", "goodput req/s"):
        assert column in header


def test_heldout_prompts_come_from_the_test_split_only() -> None:
    held = prompts.load_heldout_prompts()
    split, _ = prompts.split_function()
    assert held.prompts and all(split(p.group) == "test" for p in held.prompts)


def test_calibration_prompts_never_include_a_held_out_group() -> None:
    """`--split calibration` (choosing a setting by its routing result) must not see the test split."""
    calibration = prompts.load_heldout_prompts(split_to_use="calibration")
    held_groups = {p.group for p in prompts.load_heldout_prompts().prompts}
    split, _ = prompts.split_function()
    assert calibration.prompts and all(split(p.group) == "calibration" for p in calibration.prompts)
    assert not held_groups & {p.group for p in calibration.prompts}
    assert "calibration prompts" in calibration.source


def test_every_prompt_of_a_directory_nothing_was_trained_on_but_never_the_training_corpus(
    tmp_path: Path,
) -> None:
    """`--split all` (the public prompts of zeta_dev.classifier.public): every split of such a directory, and a
    refusal for dev/corpus, whose train split the classifier learned from."""
    rows = [
        json.dumps(
            {
                "id": f"p-{n}",
                "group": f"p-g{n}",
                "source": "p",
                "messages": [{"role": "user", "content": f"question {n}"}],
                "task": "chat",
                "complexity": 2,
            }
        )
        for n in range(40)
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(rows) + "\n")
    every = prompts.load_heldout_prompts(tmp_path, "all")
    assert sorted(p.id for p in every.prompts) == sorted(f"p-{n}" for n in range(40))
    assert "never trained on" in every.source
    assert len(prompts.load_heldout_prompts(tmp_path).prompts) < 40  # the test split alone is a part
    with pytest.raises(SystemExit, match="--split all"):
        prompts.load_heldout_prompts(prompts.CORPUS, "all")
    with pytest.raises(SystemExit, match="--split all"):
        prompts.load_heldout_prompts(None, "all")


def test_zeta_keeps_to_its_own_classification_in_a_burst() -> None:
    sc = _code_burst(30.0)
    result = des.simulate(sc, "zeta")
    assert result.records and result.routing_violations == 0
    assert all(r.routed_class for r in result.records)  # every request was classified by the router
    for r in result.records:
        if r.status == "ok":
            assert r.cost == sc.group_of(r.backend).cost
            assert r.quality == sc.answer_quality(r.backend, r.task, r.complexity)
    summary = metrics.summarize(sc, result)
    assert 0 < summary.quality_goodput <= summary.goodput


def test_zeta_reads_past_the_routers_a_batch_job_on_the_coder() -> None:
    """external-load: a batch job fills the coder through its Service. Zeta's routers, reading the engines'
    occupancy, send fewer requests there while it runs than with the reading off (the routers' own counts
    only), the DES's model of the router's `--engine-poll-interval`."""
    sc = scenario.shrink(scenario.load("external-load"), duration=60.0)
    sc = scenario.with_prompts(sc, prompts.pools(sc.policy, prompts.load_heldout_prompts().prompts))
    (batch,) = sc.externals

    def on_the_coder(engine_poll: float) -> int:
        run = des.simulate(scenario.Scenario(**{**sc.__dict__, "engine_poll": engine_poll}), "zeta")
        during = [r for r in run.records if batch.start <= r.sent_at < batch.start + batch.duration]
        return sum(r.backend == batch.backend for r in during)

    assert on_the_coder(sc.engine_poll) < on_the_coder(0.0)


def test_litellm_requests_name_the_class_the_routers_classifier_gives_them() -> None:
    """LiteLLM has no classifier: real mode sends each request's *classified* class as its model group, the one
    the router gives the same body (the DES's classification), not the true class it was drawn for."""
    from types import SimpleNamespace

    from bench.routing import real

    sc = _code_burst(30.0)
    urls: dict[str, Any] = {name: SimpleNamespace(url=f"http://{name}.sim") for name in sc.backends()}
    table = real._fixed_table(sc, urls, "least-request")
    groups = real.classified_groups(sc, table)
    records = des.simulate(sc, "least-request").records
    assert groups == {r.prompt_id: r.routed_class for r in records}
    true_class = {r.prompt_id: r.task_class for r in records}
    assert any(groups[p] != true_class[p] for p in groups)  # the classifier errs on some held-out prompts
    labelled = scenario.Scenario(**{**sc.__dict__, "label_headers": True})
    assert real.classified_groups(labelled, table) == true_class


@pytest.mark.parametrize("strategy", ["static", "round-robin", "least-request"])
def test_real_modes_fixed_table_routes_like_the_des_table(strategy: str) -> None:
    """The baselines' table in real mode has the classes, classifier settings and queue of the DES's table for
    the same strategy, so DES and real run the same router decisions (it lacked the classes' preferred
    backends, which the router's spill floor reads: the real baselines spilled doubtful requests the DES's
    did not)."""
    from types import SimpleNamespace

    from bench.routing import real

    sc = _code_burst(30.0)
    urls: dict[str, Any] = {name: SimpleNamespace(url=f"http://{name}.sim") for name in sc.backends()}
    fixed = real._fixed_table(sc, urls, strategy)
    simulated = des.Simulation(sc, strategy)._initial_table()
    assert fixed.classes == simulated.classes
    assert any(c.preferred for c in fixed.classes)
    assert (fixed.classifier, fixed.default_class, fixed.queue) == (
        simulated.classifier,
        simulated.default_class,
        simulated.queue,
    )


def _answered(task_class: str, routed: str, task: str, complexity: int, backend: str) -> Any:
    from bench.routing.records import RequestRecord

    r = RequestRecord(sent_at=0.0, task_class=task_class, complexity=complexity, status="ok", backend=backend)
    r.task, r.routed_class = task, routed
    return r


def test_violations_are_split_by_cause_from_the_records() -> None:
    """Each true capability violation has one cause, judged from the true labels, the routed class and the
    backend (sample fleet: the 4B chat/summarize/code up to 2, the coder code/chat up to 4, the 14B all)."""
    sc = scenario.load("code-burst")
    records = [
        _answered("code-complex", "chat-simple", "code", 3, "general-4b"),  # the class's own preferred 4B
        _answered("summarize", "chat-simple", "summarize", 2, "coder-7b"),  # chat's fallback lacks summaries
        _answered("code-complex", "code-simple", "code", 3, "general-4b"),  # below code-simple's coder
        _answered("reasoning", "code-complex", "code", 5, "large-14b"),  # capable: not a violation
        _answered("reasoning", "chat-simple", "chat", 5, "coder-7b"),  # chat on the coder, above its 4
        _answered("reasoning", "", "reasoning", 3, "coder-7b"),  # the proxy did not say the class
        _answered("code-simple", "code-simple", "code", 2, "coder-7b"),  # capable
    ]
    causes = metrics.violation_causes(sc, records)
    assert causes == {"class": 1, "task": 1, "spilled": 1, "complexity": 1, "unknown": 1}
    records[0].status = "rejected"  # only answers count
    assert metrics.violation_causes(sc, records)["class"] == 0


def test_the_output_splits_violations_by_cause_and_sets_both_confidences(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--smoke", "--scenario", "code-burst", "--strategies", "zeta,least-request"]
    assert bench_routing.main([*argv, "--task-confidence", "0.8", "--offload-confidence", "0.6"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "the class's own backends" in line)
    assert all(label in header for k, label in metrics.CAUSES.items() if k != "unknown")
    sc = scenario.with_classifier(scenario.load("code-burst"), task_confidence=0.8, offload_confidence=0.6)
    assert (sc.policy.classifier.task_confidence, sc.policy.classifier.offload_confidence) == (0.8, 0.6)
    kept = scenario.with_classifier(sc, task_confidence=0.5, offload_task_confidence=0.7)
    assert (kept.policy.classifier.task_confidence, kept.policy.classifier.offload_confidence) == (0.5, 0.6)
    assert kept.policy.classifier.offload_task_confidence == 0.7
    with pytest.raises(SystemExit):  # a confidence above 1 is refused as the API refuses it
        bench_routing.main([*argv, "--offload-confidence", "1.5"])


def test_the_bound_given_the_routers_decisions_is_the_oracle_when_nothing_is_held_back() -> None:
    """`scenario.given_router`: the LP over (true class, backends the router allowed). Allowing every backend
    to every request gives the plain quality bound; keeping the burst's simple code off the 4B (a gate that
    never lets it spill) lowers it; and in a run, the sets are the router's own eligibility."""
    sc = scenario.load("code-burst")
    arrived = [(t / 10, c.name) for t in range(int(sc.duration * 10)) for c in sc.classes if t % 3 == 0]
    every = frozenset(sc.backends())
    plain = scenario.oracle_goodput(sc, arrived, weighted=True)[0]
    assert scenario.given_router(sc, arrived, [every] * len(arrived)) == pytest.approx(plain)
    gated = [every - {"general-4b"} if c == "code-simple" else every for _, c in arrived]
    assert 0 < scenario.given_router(sc, arrived, gated) < plain - 0.1

    # priorities in order: the LP may no longer drop the burst's complex code and reasoning for cheap simple code
    in_order = scenario.given_router(sc, arrived, gated, by_priority=True)
    assert 0 < in_order < scenario.given_router(sc, arrived, gated) - 0.1

    run = des.simulate(_code_burst(30.0), "zeta")
    assert all(r.allowed for r in run.records if r.status == "ok")
    assert all(r.backend in r.allowed for r in run.records if r.status == "ok")
    assert any(r.allowed != every for r in run.records)  # the gate kept some requests off a smaller model


def test_the_priority_bound_serves_the_highest_class_first_and_is_the_plain_one_when_all_fit() -> None:
    """`scenario.oracle` with ``by_priority``: a lexicographic optimum. With room for every class it is the plain
    optimum; in the code burst's peak it serves at least as much reasoning (priority 8) and complex code (7) as
    the plain LP, which gives them up for more, cheaper simple code, and so serves less in all."""
    sc = scenario.load("code-burst")
    light = {c.name: 0.01 for c in sc.classes}
    assert scenario.oracle(sc, light, weighted=True, by_priority=True).goodput == pytest.approx(
        scenario.oracle(sc, light, weighted=True).goodput
    )
    peak = {c.name: sc.class_rate(c.name, 70.0) for c in sc.classes}
    allowed = {
        c: (c, frozenset(sc.backends()) - ({"general-4b"} if c == "code-simple" else set())) for c in peak
    }  # the gate keeps simple code off the 4B
    plain = scenario.oracle(sc, peak, weighted=True, allowed=allowed)
    ordered = scenario.oracle(sc, peak, weighted=True, allowed=allowed, by_priority=True)
    assert ordered.goodput < plain.goodput
    for top in ("reasoning", "code-complex"):
        assert ordered.served[top] >= plain.served[top] - 1e-9
    assert ordered.served["reasoning"] == pytest.approx(peak["reasoning"])  # the top class fits whole


def test_unseen_workloads_are_drawn_the_same_way_each_time_and_stay_inside_their_duration() -> None:
    """The family of bench/routing/unseen.py: a seed always draws the same workload, every draw is a valid
    scenario, and every burst, batch job and fault happens while it runs."""
    assert unseen.draw(7) == unseen.draw(7) != unseen.draw(8)
    kinds = set()
    for seed in range(unseen.FIRST_SEED, unseen.FIRST_SEED + 200):
        doc = unseen.draw(seed)
        sc = scenario.build(doc, default_name=doc["name"])
        assert sc.rate > 0 and sc.routers in (2, 3, 4) and abs(sum(c.share for c in sc.classes) - 1) < 1e-9
        for event in (*sc.bursts, *sc.externals, *sc.faults):
            end = event.start + (0 if math.isinf(event.duration) else event.duration)
            assert event.start >= 15 and end <= sc.duration, (seed, event)
        kinds |= {type(e).__name__ for e in (*sc.bursts, *sc.externals, *sc.faults)}
        kinds |= {"Crash" for f in sc.faults if f.crash}
    assert kinds == {"Burst", "External", "Fault", "Crash"}


@pytest.mark.parametrize(
    "wrong", [["--scenario", "code-burst"], ["--mode", "real"], ["--smoke"], ["--unseen", "0"]]
)
def test_unseen_is_refused_beside_what_it_replaces_or_cannot_do(
    wrong: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench_routing.main(["--unseen", "2", *wrong])
    assert exited.value.code == 2
    assert "--unseen N: DES only, N >= 1, instead of --scenario" in capsys.readouterr().err


def test_unseen_prints_a_row_per_workload_and_how_zeta_did_across_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "--unseen",
        "2",
        "--unseen-from",
        "5",
        "--duration",
        "20",
        "--strategies",
        "static,least-request,zeta",
    ]
    assert bench_routing.main(argv) == 0
    out = capsys.readouterr().out
    assert "### 2 workloads nobody tuned on" in out
    rows = [line for line in out.splitlines() if line.startswith("| unseen-")]
    assert [r.split(" | ")[0] for r in rows] == [
        "| unseen-5",
        "| unseen-6",
    ] * 2  # printed as they end, then the table
    assert re.search(r"^Zeta against least-request, quality goodput: median \d\.\d{3}", out, re.M)
    assert re.search(
        r"^\| (nothing|burst|load past the routers|slowed backend|backend lost) \| 1 \|", out, re.M
    )
    assert re.search(
        r"^True capability violations summed over the workloads: zeta \d+, least-request \d+, static",
        out,
        re.M,
    )
