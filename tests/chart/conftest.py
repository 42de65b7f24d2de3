"""Fixtures of the chart tests: helm (built from pinned Go modules), and the Prometheus Operator's monitor CRDs."""

from __future__ import annotations

import json

import pytest
import yaml

from zeta_dev.localcluster.cluster import Cluster

from .render import MONITORING_CRDS, Helm, helm_binary


@pytest.fixture(scope="session")
def helm() -> Helm:
    return Helm(helm_binary())


@pytest.fixture(scope="session")
def monitoring_crds(cluster: Cluster) -> Cluster:
    """ServiceMonitor and PodMonitor kinds, so the chart's monitors can be dry-run applied.

    The trimmed test copies are installed only where the kinds are missing: on a cluster that runs the real
    Prometheus Operator (ZETA_TEST_KUBECONFIG), its CRDs are used and never replaced.
    """
    for path in sorted(MONITORING_CRDS.glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        found = cluster.kubectl("get", "crd", name, "-o", "json", "--ignore-not-found").stdout.strip()
        if found and json.loads(found)["metadata"].get("labels", {}).get("zeta.dev/test-copy") != "true":
            continue
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    return cluster
