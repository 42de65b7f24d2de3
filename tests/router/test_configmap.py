"""The in-cluster table source against the REAL kube-apiserver (RBAC on): the router runs as a ServiceAccount
whose Role allows only get/list/watch on its one ConfigMap (resourceNames), authenticated with a real
TokenRequest token through a kubeconfig, and follows the table as an admin rewrites it, across watch requests
that the server ends every second (each resumed from the last resourceVersion)."""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml
from kubernetes.client import ApiException

from zeta_dev.launch.router import RunningRouter, start_router
from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims
from zeta_dev.localcluster.cluster import Cluster
from zeta_dev.localcluster.controlplane import write_kubeconfig
from zeta_operator.api.table import CONFIGMAP_KEY, RoutingTable

from .helpers import backend, eventually, post_chat, table, task_class

pytestmark = pytest.mark.controlplane

NAME = "zeta-routes"
RBAC = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: zeta-router}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: zeta-router}}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    resourceNames: [{NAME}]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: zeta-router}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: zeta-router}}
subjects:
  - {{kind: ServiceAccount, name: zeta-router}}
"""


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[RunningSim, RunningSim]]:
    specs = [
        SimSpec(model="a", size_b=4, time_scale=0.05, seed=1),
        SimSpec(model="b", size_b=4, time_scale=0.05, seed=2),
    ]
    with start_sims(specs) as (a, b):
        yield a, b


def configmap(name: str, data: dict[str, str]) -> kubernetes.client.V1ConfigMap:
    return kubernetes.client.V1ConfigMap(metadata=kubernetes.client.V1ObjectMeta(name=name), data=data)


def routes(sims: tuple[RunningSim, RunningSim], weights: dict[str, float], version: int) -> RoutingTable:
    a, b = sims
    return table(
        [backend("a", [a]), backend("b", [b])], [task_class("chat", "chat", weights)], version=version
    )


def watches(router: RunningRouter, start: str) -> float:
    """Watch requests the router made on its ConfigMap: after a "list", or "resume"d from a resourceVersion."""
    return router.metric("zeta_router_table_watch_requests_total", start=start)


def test_configmap_watch_with_a_least_privilege_service_account(
    cluster: Cluster, namespace: str, sims: tuple[RunningSim, RunningSim], tmp_path: Path
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=RBAC)
    admin = kubernetes.client.CoreV1Api(cluster.api_client())
    admin.create_namespaced_config_map(
        namespace, configmap(NAME, {CONFIGMAP_KEY: routes(sims, {"a": 1.0}, 1).to_json()})
    )
    admin.create_namespaced_config_map(namespace, configmap("unrelated", {"secret-ish": "no"}))
    token = cluster.service_account_token(namespace, "zeta-router")
    user = f"system:serviceaccount:{namespace}:zeta-router"
    kubeconfig = cluster.kubeconfig_for_token(token, user=user, directory=tmp_path, namespace=namespace)

    def replace(data: dict[str, str]) -> None:
        admin.replace_namespaced_config_map(NAME, namespace, configmap(NAME, data))

    with start_router(
        configmap=f"{namespace}/{NAME}",
        kubeconfig=kubeconfig,
        log_dir=tmp_path / "logs",
        args=["--watch-seconds", "1"],
    ) as router:
        first = post_chat(router)
        assert (
            first.status_code,
            first.headers["X-Zeta-Table-Version"],
            first.headers["X-Zeta-Backend"],
        ) == (200, "1", "a")

        # the server ends each 1 s watch; the router resumes from the last resourceVersion, without a new list
        eventually(lambda: watches(router, "resume") >= 3, timeout=60, what="three resumed watches")
        assert watches(router, "list") == 1
        replace({CONFIGMAP_KEY: routes(sims, {"b": 1.0}, 2).to_json()})
        eventually(lambda: post_chat(router).headers["X-Zeta-Table-Version"] == "2", what="version 2")
        assert post_chat(router).headers["X-Zeta-Backend"] == "b"

        replace({CONFIGMAP_KEY: "{ this is not a table"})
        eventually(
            lambda: router.metric("zeta_router_table_reloads_total", result="invalid") == 1, what="rejection"
        )
        replace({"wrong-key": routes(sims, {"a": 1.0}, 9).to_json()})
        eventually(
            lambda: router.metric("zeta_router_table_reloads_total", result="invalid") == 2, what="rejection"
        )
        kept = post_chat(router)
        assert (kept.status_code, kept.headers["X-Zeta-Table-Version"]) == (200, "2")

        admin.delete_namespaced_config_map(NAME, namespace)
        assert post_chat(router).headers["X-Zeta-Table-Version"] == "2"  # deleted: the last good table stays
        assert router.status("/readyz") == 200
        admin.create_namespaced_config_map(
            namespace, configmap(NAME, {CONFIGMAP_KEY: routes(sims, {"a": 1.0}, 3).to_json()})
        )
        eventually(lambda: post_chat(router).headers["X-Zeta-Table-Version"] == "3", what="version 3")
        assert router.metric("zeta_router_table_reloads_total", result="ok") == 3
        assert router.metric("zeta_router_table_reloads_total", result="error") == 0

        as_router = kubernetes.client.CoreV1Api(cluster.client_for_token(token))
        writes = {
            "patch": lambda: as_router.patch_namespaced_config_map(NAME, namespace, {"data": {"x": "y"}}),
            "replace": lambda: as_router.replace_namespaced_config_map(NAME, namespace, configmap(NAME, {})),
            "delete": lambda: as_router.delete_namespaced_config_map(NAME, namespace),
            "create": lambda: as_router.create_namespaced_config_map(namespace, configmap("other", {})),
            "read another": lambda: as_router.read_namespaced_config_map("unrelated", namespace),
            "list all": lambda: as_router.list_namespaced_config_map(namespace),
        }
        for what, call in writes.items():
            with pytest.raises(ApiException) as err:
                call()
            assert err.value.status == 403, f"{what}: {err.value.status}"
        # ...while the one read the router needs is allowed
        assert as_router.list_namespaced_config_map(namespace, field_selector=f"metadata.name={NAME}").items

        log = router.process.log.read_text()
        assert token not in log
        assert "routing table loaded" in log
        assert "watch expired" not in log
        assert watches(router, "list") == 1  # every change above came through resumed watches
        assert watches(router, "resume") >= 3


class Relay:
    """A plain TCP relay in front of the apiserver (TLS passes through untouched) that can cut every
    connection and refuse new ones for a while: a network outage between the router and the API."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._refusing = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def outage(self) -> None:
        self._refusing.set()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def recover(self) -> None:
        self._refusing.clear()

    def close(self) -> None:
        self.outage()
        self._listener.close()


def test_configmap_watch_reconnects_and_resumes_after_an_outage(
    cluster: Cluster, namespace: str, sims: tuple[RunningSim, RunningSim], tmp_path: Path
) -> None:
    """The connection to the API drops and stays down while the table changes: the router keeps serving the
    last good table, counts the errors, retries with backoff and, once the API is back, resumes its watch
    from the last resourceVersion and receives the change it missed."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=RBAC)
    admin = kubernetes.client.CoreV1Api(cluster.api_client())
    admin.create_namespaced_config_map(
        namespace, configmap(NAME, {CONFIGMAP_KEY: routes(sims, {"a": 1.0}, 1).to_json()})
    )
    conf = cluster.api_client().configuration
    server = urllib.parse.urlsplit(conf.host)
    relay = Relay(server.hostname or "127.0.0.1", server.port or 443)
    kubeconfig = tmp_path / "via-relay.kubeconfig"
    write_kubeconfig(
        kubeconfig,
        server=f"https://127.0.0.1:{relay.port}",
        ca_file=Path(conf.ssl_ca_cert),
        token=cluster.service_account_token(namespace, "zeta-router"),
        user="zeta-router",
        namespace=namespace,
    )
    try:
        with start_router(
            configmap=f"{namespace}/{NAME}", kubeconfig=kubeconfig, log_dir=tmp_path / "logs"
        ) as router:
            assert post_chat(router).headers["X-Zeta-Table-Version"] == "1"
            relay.outage()
            eventually(
                lambda: router.metric("zeta_router_table_reloads_total", result="error") >= 2,
                what="failed reconnects",
            )
            admin.replace_namespaced_config_map(
                NAME, namespace, configmap(NAME, {CONFIGMAP_KEY: routes(sims, {"b": 1.0}, 2).to_json()})
            )
            kept = post_chat(router)
            assert (kept.status_code, kept.headers["X-Zeta-Table-Version"]) == (200, "1")
            assert router.status("/readyz") == 200
            relay.recover()
            eventually(
                lambda: post_chat(router).headers["X-Zeta-Table-Version"] == "2", what="the missed change"
            )
            assert post_chat(router).headers["X-Zeta-Backend"] == "b"
            # the missed change came through a watch resumed from the last resourceVersion, not a new list
            assert watches(router, "list") == 1
            assert watches(router, "resume") >= 1
            assert "watch expired" not in router.process.log.read_text()
    finally:
        relay.close()


CERT_USER = "zeta-router-by-certificate"


def test_configmap_watch_with_a_client_certificate_from_KUBECONFIG(
    cluster: Cluster, namespace: str, sims: tuple[RunningSim, RunningSim], tmp_path: Path
) -> None:
    """No --kubeconfig: the router finds $KUBECONFIG, whose user authenticates with an inline client
    certificate (issued through the CSR API, no token at all), bound to the same least-privilege Role."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=RBAC)
    cluster.kubectl(
        "create",
        "rolebinding",
        "by-certificate",
        "-n",
        namespace,
        "--role=zeta-router",
        f"--user={CERT_USER}",
    )
    admin = kubernetes.client.CoreV1Api(cluster.api_client())
    admin.create_namespaced_config_map(
        namespace, configmap(NAME, {CONFIGMAP_KEY: routes(sims, {"a": 1.0}, 1).to_json()})
    )
    kubeconfig = cluster.kubeconfig_for_client_certificate(CERT_USER, directory=tmp_path)
    assert "token" not in kubeconfig.read_text()

    with start_router(
        configmap=f"{namespace}/{NAME}", env={"KUBECONFIG": str(kubeconfig)}, log_dir=tmp_path / "logs"
    ) as router:
        assert post_chat(router).headers["X-Zeta-Table-Version"] == "1"
        admin.replace_namespaced_config_map(
            NAME, namespace, configmap(NAME, {CONFIGMAP_KEY: routes(sims, {"b": 1.0}, 2).to_json()})
        )
        eventually(lambda: post_chat(router).headers["X-Zeta-Table-Version"] == "2", what="version 2")
        assert router.metric("zeta_router_table_reloads_total", result="error") == 0
        assert str(kubeconfig) in router.process.log.read_text()  # it says where the credentials came from


def test_a_rotated_token_file_is_picked_up_after_a_401(
    cluster: Cluster, namespace: str, sims: tuple[RunningSim, RunningSim], tmp_path: Path
) -> None:
    """The kubeconfig names a tokenFile (as a projected, rotated token would be): while the file holds a token
    the API server rejects, the router counts errors; once the file is rotated to a valid one, the router loads
    its credentials again after the next 401 and follows the table."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=RBAC)
    admin = kubernetes.client.CoreV1Api(cluster.api_client())
    admin.create_namespaced_config_map(
        namespace, configmap(NAME, {CONFIGMAP_KEY: routes(sims, {"a": 1.0}, 1).to_json()})
    )
    conf = cluster.api_client().configuration
    token_file = tmp_path / "token"
    token_file.write_text("not-a-valid-token")
    kubeconfig = tmp_path / "token-file.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": conf.host, "certificate-authority": conf.ssl_ca_cert}}
                ],
                "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    with start_router(
        configmap=f"{namespace}/{NAME}", kubeconfig=kubeconfig, log_dir=tmp_path / "logs", wait_ready=False
    ) as router:
        eventually(
            lambda: router.metric("zeta_router_table_reloads_total", result="error") >= 1,
            what="a rejected token",
        )
        assert router.status("/readyz") == 503
        token = cluster.service_account_token(namespace, "zeta-router")
        token_file.write_text(token)
        eventually(lambda: router.status("/readyz") == 200, timeout=120, what="the rotated token to be used")
        assert post_chat(router).headers["X-Zeta-Table-Version"] == "1"
        assert token not in router.process.log.read_text()
