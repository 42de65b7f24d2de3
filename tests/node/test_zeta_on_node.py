"""Zeta on a real node, installed as a user installs it: `helm install charts/zeta` with the image built from
the Dockerfile, simulated model servers as Deployments behind Services, `kubectl apply -k manifests/samples/`.

Requests go through the router's Service (a ClusterIP, through kube-proxy's iptables rules) to model servers at
real Pod IPs from their EndpointSlices. Failed requests during a router rollout and a model-server Pod deletion
are counted and printed (docs/node.md records them). The last test tears the node down with a failing body and
checks that nothing is left on the machine.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from zeta_dev.demo import on_node, scenario, show
from zeta_dev.localcluster.fleet import policy_status, read_table
from zeta_dev.localcluster.node import Image, leftovers
from zeta_dev.localcluster.zeta_on_node import (
    FLEET,
    TABLE,
    Installed,
    apply_samples,
    deploy_fleet,
    endpoint_slice_addresses,
    helm_binary,
    installed,
    kustomize_install,
    router_service_url,
    wait_for_rollout,
)
from zeta_dev.waiting import eventually

from .load import SteadyLoad, chat

NAMESPACE = "zeta"


class Installation:
    """The module's node with Zeta installed, which its last test tears down itself (with a failing body)."""

    def __init__(self, context: AbstractContextManager[Installed]) -> None:
        self._context = context
        self.zeta = context.__enter__()
        self.open = True

    def close(self, error: BaseException | None = None) -> bool | None:
        """Leave the installation's ``with`` block, raising ``error`` in it if given; True if it was swallowed."""
        self.open = False
        return self._context.__exit__(
            type(error) if error else None, error, error.__traceback__ if error else None
        )


@pytest.fixture(scope="module")
def installation(node_binaries: Path, images: dict[str, Image]) -> Iterator[Installation]:
    assert leftovers() == [], "a previous node left these behind"
    installation = Installation(installed(node_binaries, images, namespace=NAMESPACE))
    print(f"\nnode set-up timings (s): {installation.zeta.timings}")
    try:
        yield installation
    finally:
        if installation.open:
            installation.close()


@pytest.fixture(scope="module")
def zeta(installation: Installation) -> Installed:
    return installation.zeta


def test_requests_through_the_router_service_reach_model_servers_at_pod_ips(zeta: Installed) -> None:
    answers = [
        chat(zeta.router_url, p) for p in ("hello", "def f(): pass  refactor this", "summarize: x") * 3
    ]
    assert all(a.status == 200 for a in answers), answers
    for answer in answers:
        assert answer.backend in FLEET
        address = answer.endpoint.split("//")[-1].split(":")[0]
        # A real Pod IP, from the backend Service's EndpointSlices (never loopback, as in the process tests).
        assert address in endpoint_slice_addresses(zeta.node, namespace=NAMESPACE, service=answer.backend)
        assert address.startswith("10.244.0.")
    # Code goes to the coder while it is not loaded. Every capable fallback keeps a small probing share (the
    # weight floor), so a single request may land elsewhere: count over enough of them.
    code = [chat(zeta.router_url, f"def f{i}(): pass  refactor this") for i in range(20)]
    assert all(a.status == 200 for a in code), code
    to_coder = sum(a.backend == "coder-7b" for a in code)
    assert to_coder >= 15, [a.backend for a in code]


def test_prometheus_scrapes_the_pods_it_finds_through_the_chart_annotations(zeta: Installed) -> None:
    def up_pods() -> set[str]:
        result = zeta.prometheus.query(f'up{{namespace="{NAMESPACE}"}} == 1')
        return {str(r["metric"]["pod"]) for r in result}  # type: ignore[index]

    pods = set(zeta.kubectl("get", "pods", "-o", "jsonpath={.items[*].metadata.name}").split())
    eventually(lambda: up_pods() == pods, timeout=60, what=f"every Pod scraped: {sorted(pods)}")
    # The operator's own metrics and the router's, through the chart's prometheus.io annotations.
    routed = zeta.prometheus.query("sum(zeta_router_requests_total)")
    assert routed and float(routed[0]["value"][1]) > 0  # type: ignore[index]


def test_router_rollout_restart_under_steady_load(zeta: Installed) -> None:
    before = zeta.kubectl("get", "pods", "-l", "app.kubernetes.io/component=router", "-o", "name").split()
    with SteadyLoad(zeta.router_url, workers=4) as load:
        eventually(lambda: load.count() >= 20, timeout=60, what="steady load flowing")
        zeta.kubectl("rollout", "restart", "deployment/zeta-router")
        zeta.kubectl("rollout", "status", "deployment/zeta-router", "--timeout=110s")
        # Old Pods finish draining after the rollout reports success; keep the load on until they are gone.
        eventually(
            lambda: not set(before) & set(zeta.kubectl("get", "pods", "-o", "name").split()),
            timeout=120, what="the old router Pods gone",
        )  # fmt: skip
        settled = load.count()
        eventually(
            lambda: load.count() >= settled + 20, timeout=60, what="load still flowing after the rollout"
        )
    print(f"\nrouter rollout restart under load: {load.summary()}")
    assert not load.failures(), load.summary()


def test_model_server_pod_deleted_under_load_is_replaced_and_rejoins(zeta: Installed) -> None:
    backend = "coder-7b"
    old = endpoint_slice_addresses(zeta.node, namespace=NAMESPACE, service=backend)
    eventually(lambda: zeta.table_endpoints(backend) == old, timeout=60, what="the table lists both coders")
    victim = zeta.kubectl("get", "pods", "-l", f"zeta.dev/backend={backend}", "-o", "name").split()[0]
    with SteadyLoad(zeta.router_url, workers=4) as load:
        eventually(lambda: load.count() >= 20, timeout=60, what="steady load flowing")
        zeta.kubectl("delete", victim, "--wait=true")
        # The ReplicaSet's replacement joins through its EndpointSlice, then the routing table.
        new = eventually(
            lambda: (s := endpoint_slice_addresses(zeta.node, namespace=NAMESPACE, service=backend)) != old
            and len(s) == 2 and s,
            timeout=180, what="the replacement Pod in the EndpointSlice",
        )  # fmt: skip
        eventually(
            lambda: zeta.table_endpoints(backend) == new, timeout=120, what="the replacement in the table"
        )
        settled = load.count()
        eventually(lambda: load.count() >= settled + 20, timeout=60, what="load still flowing")
    print(f"\nmodel-server Pod deleted under load: {load.summary()}")
    # Requests in flight on the deleted Pod may fail once (no retry of non-idempotent POSTs); no more than that.
    assert len(load.failures()) <= 4, load.summary()


def test_operator_pod_deleted_comes_back_and_the_router_keeps_serving(zeta: Installed) -> None:
    def version() -> int:
        table = read_table(zeta.node.cluster, NAMESPACE, TABLE)
        assert table is not None
        return int(table.version)

    before, start = version(), time.monotonic()
    with SteadyLoad(zeta.router_url, workers=2) as load:
        zeta.kubectl("delete", "pod", "-l", "app.kubernetes.io/component=operator", "--wait=true")
        zeta.kubectl("rollout", "status", "deployment/zeta-operator", "--timeout=110s")
        # Keep the load on while the new operator adapts (every 5 s): the router must not notice.
        settled = load.count()
        eventually(lambda: load.count() >= settled + 60, timeout=120, what="load flowing past the restart")
    elapsed = time.monotonic() - start
    print(
        f"\noperator Pod deleted under load: {load.summary()}; table {before} -> {version()} in {elapsed:.0f}s"
    )
    assert not load.failures(), load.summary()
    # No rewrite storm: the table changes only with its content, at most once per adaptation interval (5 s).
    assert version() - before <= elapsed / 5 + 2


def test_a_code_burst_is_offloaded_to_the_4b_and_given_back_after(zeta: Installed, tmp_path: Path) -> None:
    """The demo's story on the node, its test-sized run (`python -m zeta_dev.demo --quick --node` on this
    module's node): a burst of simple code through the router's Service overloads the coder's Pod, the operator
    Pod offloads code-simple to general-4b, and gives it back once the burst is over. After the tests above: it
    switches the simulators and the policy to the demo's (one smaller engine per backend, faster adaptation)."""
    summary = on_node.run_on(zeta, scenario.quick(), out=tmp_path, live=False)
    print(f"\ncode burst on the node: {json.dumps(summary)}")
    assert (tmp_path / "zeta-demo.png").stat().st_size > 10_000
    assert summary["requests"] > 100 and summary["ok"] >= 0.95 * summary["requests"], summary
    # Offloaded, as the answers' X-Zeta-Backend headers say: once the operator had reacted, simple code went to
    # the 4B far more than before the burst ...
    off = summary["offloaded_share"]
    assert summary["reaction_seconds"] is not None, summary
    assert off["offloading"] > 0.4 and off["offloading"] > off["before"] + 0.2, off
    assert summary["classes"]["code-simple"]["backends"].get("general-4b", 0) > 20, summary["classes"]
    # ... as the routing table ConfigMap said (the coder's weight dropped), and gave back after the burst.
    weight = summary["preferred_weight"]
    assert weight["min"] < show.OFFLOADED_BELOW and weight["final"] > show.RECOVERED_ABOVE, weight
    # Complex work never went to the 4B (complexity ceiling 2).
    assert "general-4b" not in summary["classes"]["code-complex"]["backends"]

    def given_back() -> bool:
        table = read_table(zeta.node.cluster, NAMESPACE, TABLE)
        status = policy_status(zeta.node.cluster, NAMESPACE, "demo")
        code = next(c for c in status.get("classes", []) if c["name"] == "code-simple")
        weights = next(c.weights for c in table.classes if c.name == "code-simple") if table else {}
        return not code.get("offloading") and weights.get("coder-7b", 0) > 0.9

    eventually(given_back, timeout=180, what="offload of code-simple withdrawn, the coder's share back")


def test_the_kustomize_install_serves_the_same_way(zeta: Installed) -> None:
    """It replaces the helm release with `kubectl apply -k manifests/` (the next test only tears down)."""
    node = zeta.node
    subprocess.run(
        [str(helm_binary()), "uninstall", "zeta", "-n", NAMESPACE, "--wait", f"--kubeconfig={node.cluster.kubeconfig}"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    namespace = kustomize_install(node, zeta.images["zeta"])
    deploy_fleet(node, zeta.images["zeta-sim"], namespace=namespace, replicas=1)
    apply_samples(node, namespace=namespace, prometheus_url=zeta.prometheus.url)
    wait_for_rollout(node, "deployment/zeta-router", namespace=namespace)
    url = router_service_url(node, namespace=namespace)
    eventually(
        lambda: chat(url, "def f(): pass  refactor this").status == 200,
        timeout=180, what="an answer through the kustomize-installed router's Service",
    )  # fmt: skip
    # As with the chart: code goes to the coder, but every capable fallback keeps the weight floor's probing
    # share, so count over enough requests (a single one landed on general-4b in a CI run).
    code = [chat(url, f"def f{i}(): pass  refactor this") for i in range(20)]
    assert all(a.status == 200 for a in code), code
    to_coder = [a for a in code if a.backend == "coder-7b"]
    assert len(to_coder) >= 15, [a.backend for a in code]
    address = to_coder[0].endpoint.split("//")[-1].split(":")[0]
    assert address in endpoint_slice_addresses(node, namespace=namespace, service="coder-7b")


def test_node_teardown_leaves_nothing_even_when_the_body_fails(installation: Installation) -> None:
    """Last in this module: no process, mount, network namespace, bridge, iptables chain, cgroup or temp
    directory is left on the machine when the code inside the node's ``with`` block fails with Pods running
    (this module's node, so that the suite starts one node, not two)."""
    work = installation.zeta.node.workdir
    # While it runs, there is something to clean up: Pods' network namespaces, mounts, chains, the bridge.
    during = "\n".join(leftovers(work))
    for expected in ("process", "mount", "bridge zeta0", "chain nat/KUBE-SERVICES", "cgroup", "directory"):
        assert expected in during, f"{expected!r} not seen while the node ran:\n{during}"
    boom = RuntimeError("boom")
    assert not installation.close(boom), "the body's error was swallowed"
    assert leftovers(work) == []
