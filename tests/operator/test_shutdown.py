"""The operator stops cleanly: SIGTERM in the middle of a control cycle lets that cycle finish (the routing
table written AND its status reported, never one without the other), then the process exits 0.

The cycle is held open by a "Prometheus" that accepts connections and never answers, so the signal certainly
arrives mid-cycle; the real apiserver (RBAC on, the operator's own ServiceAccount token) holds the results."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zeta_dev.localcluster.cluster import Cluster
from zeta_dev.localcluster.fleet import policy_status, read_table, start_operator
from zeta_dev.waiting import eventually
from zeta_operator.api.common import GROUP, VERSION

pytestmark = pytest.mark.controlplane


class SilentServer:
    """Accepts TCP connections and never answers; counts them."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self._listener.accept()
                self._held.append(connection)
                self.accepted += 1

    def close(self) -> None:
        for s in [self._listener, *self._held]:
            s.close()


@pytest.fixture
def silent_prometheus() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def _objects(prometheus_url: str) -> list[dict[str, Any]]:
    backend = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelBackend",
        "metadata": {"name": "general", "labels": {"zeta.dev/fleet": "stop"}},
        "spec": {
            "model": "general",
            "endpoints": {"static": ["http://127.0.0.1:9"]},
            "capabilities": {"tasks": ["chat"], "maxComplexity": 5},
        },
    }
    policy = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RoutingPolicy",
        "metadata": {"name": "stop"},
        "spec": {
            "backends": {"names": ["general"]},
            "routingTable": {"configMapName": "routes-stop"},
            "classes": [
                {"name": "chat", "taskType": "chat", "preferred": ["general"], "latencyObjective": "5s"}
            ],
            "prometheus": {"address": prometheus_url, "timeout": "2s"},
            "adaptation": {"interval": "60s", "staleAfter": "180s"},
        },
    }
    return [backend, policy]


def test_sigterm_mid_cycle_finishes_the_cycle_then_exits_0(
    crds: Cluster, namespace: str, silent_prometheus: SilentServer, tmp_path: Path
) -> None:
    operator = start_operator(crds, namespace, tmp_path)
    try:
        crds.apply(_objects(silent_prometheus.url), namespace=namespace)
        eventually(lambda: silent_prometheus.accepted > 0, timeout=60, what="the first cycle to query")
        assert read_table(crds, namespace, "routes-stop") is None  # the cycle is waiting on Prometheus

        os.kill(operator.process.pid, signal.SIGTERM)
        assert operator.process.popen.wait(120) == 0

        table = read_table(crds, namespace, "routes-stop")
        assert table is not None and table.classes[0].weights == {"general": 1.0}
        status = policy_status(crds, namespace, "stop")
        assert status["table"]["version"] == table.version  # written and reported: nothing half done
        assert "stopped between cycles" in operator.process.log.read_text()
    finally:
        operator.process.stop()
