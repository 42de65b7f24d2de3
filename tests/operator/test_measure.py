"""The metrics provider against a real Prometheus: every kind of answer is classified, never turned into a number
it is not. Queries are built with label_replace so each case is exact without waiting for scrapes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from zeta_dev.localcluster.processes import free_port
from zeta_dev.localcluster.prometheus import Prometheus
from zeta_operator.api.backend import SignalQueries
from zeta_operator.api.policy import RoutingPolicySpec
from zeta_operator.operator.measure import (
    MAX_PARALLEL_QUERIES,
    MeasuredBackend,
    PrometheusSource,
    measure,
    promql_duration,
)
from zeta_operator.operator.promql import (
    DEFAULT_QUERIES,
    ENGINE_QUERIES,
    placeholders,
    render,
    unknown_placeholders,
)
from zeta_operator.operator.weights import Reading


@pytest.fixture(scope="module")
def prom() -> Iterator[Prometheus]:
    with Prometheus.running() as p:
        yield p


def series(pod: str, value: str) -> str:
    return f'label_replace(vector({value}), "pod", "{pod}", "", "")'


def policy(**queries: str) -> RoutingPolicySpec:
    return RoutingPolicySpec.model_validate(
        {
            "backends": {"names": ["a", "b"]},
            "routingTable": {"configMapName": "t"},
            "classes": [{"name": "c", "taskType": "chat", "preferred": ["a"]}],
            "prometheus": {"queries": queries},
        }
    )


BACKENDS = [MeasuredBackend("a", ("a-0", "a-1")), MeasuredBackend("b", ("b-0",))]


def test_values_are_mapped_by_pod_worst_or_mean(prom: Prometheus) -> None:
    cpu = (
        f"{series('a-0', '0.2')} or {series('a-1', '0.7')} or {series('b-0', '0.4')} or {series('zzz', '9')}"
    )
    queue = f"{series('a-0', '2')} or {series('a-1', '4')}"
    m = measure(
        PrometheusSource(prom.url, timeout=2),
        policy(cpu=cpu, queueDepth=queue),
        namespace="n",
        backends=BACKENDS,
    )
    assert m.signals["a"]["cpu"] == Reading(0.7, "ok")  # worst pod
    assert m.signals["b"]["cpu"] == Reading(0.4, "ok")
    assert m.signals["a"]["queueDepth"] == Reading(3.0, "ok")  # mean per endpoint
    assert m.signals["b"]["queueDepth"] == Reading(None, "no-data")  # absent from the answer


def test_nan_inf_and_empty_are_not_numbers(prom: Prometheus) -> None:
    q = policy(
        cpu=f"{series('a-0', '0')} / 0",
        memory=series("a-0", "+Inf"),
        kvCache="absent(up{job='none'}) * 0 > 1",
    )
    m = measure(PrometheusSource(prom.url, timeout=2), q, namespace="n", backends=BACKENDS[:1])
    assert m.signals["a"]["cpu"].state == "error" and m.signals["a"]["cpu"].value is None
    assert m.signals["a"]["memory"].state == "error"
    assert m.signals["a"]["kvCache"] == Reading(None, "no-data")


def test_duplicate_series_where_one_was_expected_is_an_error(prom: Prometheus) -> None:
    one = 'label_replace(vector(1), "backend", "a", "", "")'
    twice = f'{one} or label_replace({one}, "instance", "other", "", "")'  # two series for backend "a"
    m = measure(
        PrometheusSource(prom.url, timeout=2), policy(requestRate=twice), namespace="n", backends=BACKENDS[:1]
    )
    assert m.signals["a"]["requestRate"].state == "error"


def test_bad_promql_is_an_http_error(prom: Prometheus) -> None:
    m = measure(
        PrometheusSource(prom.url, timeout=2), policy(cpu="sum(("), namespace="n", backends=BACKENDS[:1]
    )
    assert m.signals["a"]["cpu"].state == "error"
    assert m.errors.get("http") == 1


def test_refused_connection_is_reported_never_a_number() -> None:
    m = measure(
        PrometheusSource(f"http://127.0.0.1:{free_port()}", timeout=1),
        policy(),
        namespace="n",
        backends=BACKENDS,
    )
    assert m.queries == 8 and m.errors == {"connection": 8}
    assert m.failure_kind == "connection" and m.unreachable and "cannot reach" in m.unreachable
    assert all(r.state == "error" and r.value is None for sig in m.signals.values() for r in sig.values())


def test_silent_server_times_out_under_one_deadline() -> None:
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        url = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        m = measure(PrometheusSource(url, timeout=0.5), policy(), namespace="n", backends=BACKENDS)
    assert m.errors == {"timeout": 8} and m.failure_kind == "timeout"
    assert m.unreachable == f"no answer from {url} within 0.5s"


def test_a_cycles_queries_are_in_flight_at_the_same_time() -> None:
    """A server that answers nothing until it holds every query's connection at once: one after another, the
    first query would wait alone until the deadline and the rest would never start."""
    expected = min(8, MAX_PARALLEL_QUERIES)
    held: list[socket.socket] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(60)

        def hold_then_drop() -> None:
            try:
                while len(held) < expected:
                    held.append(server.accept()[0])
            except OSError:
                pass
            for conn in held:
                conn.close()  # every query gets a dropped connection at once

        thread = threading.Thread(target=hold_then_drop)
        thread.start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        m = measure(PrometheusSource(url, timeout=60), policy(), namespace="n", backends=BACKENDS)
        thread.join()
    assert len(held) == expected
    assert m.errors == {"connection": 8}


def test_queries_are_batched_per_signal_not_per_backend(prom: Prometheus) -> None:
    many = [MeasuredBackend(f"b{i}", (f"b{i}-0",)) for i in range(50)]
    m = measure(PrometheusSource(prom.url, timeout=2), policy(), namespace="n", backends=many)
    assert m.queries == 8  # one per signal for all 50 backends


def test_per_backend_override_gets_its_own_query(prom: Prometheus) -> None:
    own = MeasuredBackend("a", ("a-0",), overrides=SignalQueries(cpu=series("a-0", "0.9")))
    m = measure(PrometheusSource(prom.url, timeout=2), policy(), namespace="n", backends=[own, BACKENDS[1]])
    assert m.queries == 9
    assert m.signals["a"]["cpu"] == Reading(0.9, "ok")


def test_default_templates_use_only_known_placeholders_and_render() -> None:
    for name, template in {**DEFAULT_QUERIES, **ENGINE_QUERIES["vllm"], **ENGINE_QUERIES["sglang"]}.items():
        assert unknown_placeholders(template) == [], name
        rendered = render(
            template, {"namespace": "n", "pods": "p", "backends": "b", "window": "30s", "quantile": "0.9"}
        )
        assert placeholders(rendered) == set(), name  # every placeholder filled
        assert ("[30s]" in rendered) == ("{window}" in template), name


def test_fractional_timeouts_are_sent_in_a_form_prometheus_accepts(prom: Prometheus) -> None:
    m = measure(
        PrometheusSource(prom.url, timeout=1.5),
        policy(cpu=series("a-0", "0.3")),
        namespace="n",
        backends=BACKENDS[:1],
    )
    assert m.signals["a"]["cpu"] == Reading(0.3, "ok") and not m.errors


def test_windows_render_as_promql_durations_below_a_second_too() -> None:
    assert [promql_duration(x) for x in (0.5, 1.5, 30, 60, 0.0001)] == [
        "500ms",
        "1500ms",
        "30s",
        "60s",
        "1ms",
    ]


def test_a_sub_second_window_is_a_valid_range_for_prometheus(prom: Prometheus) -> None:
    """The default templates with a 500ms window: Prometheus parses every one (no data here, no error); a
    window rendered as [0s] would be rejected."""
    spec = policy().model_copy(
        update={"prometheus": policy().prometheus.model_copy(update={"window": "500ms"})}
    )
    m = measure(PrometheusSource(prom.url, timeout=5), spec, namespace="n", backends=BACKENDS)
    assert m.queries == 8 and m.errors == {}
    assert all(r.state == "no-data" for sig in m.signals.values() for r in sig.values())
