"""Every object the chart renders (defaults, and every optional part on) and every object of the kustomize
manifests passes a server-side dry-run apply on the real kube-apiserver; the kustomize manifests are the chart's
defaults, object for object."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from zeta_dev.localcluster.cluster import Cluster

from .render import ALL_ON, CHART, Doc, Helm, by_kind, dry_run_apply, identity, kustomize

DEFAULT_KINDS = {
    "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service", "ConfigMap",
}  # fmt: skip
OPTIONAL_KINDS = {"HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "PodMonitor"}


@pytest.mark.parametrize("values", [(), (ALL_ON,)], ids=["defaults", "all-optional-on"])
def test_every_rendered_object_passes_server_side_dry_run(
    helm: Helm, crds: Cluster, monitoring_crds: Cluster, namespace: str, values: tuple[Path, ...]
) -> None:
    docs = helm.template(
        namespace=namespace, release=f"zeta-{namespace}", values_files=values, include_crds=True
    )
    expected = DEFAULT_KINDS | {"CustomResourceDefinition"} | (OPTIONAL_KINDS if values else set())
    assert {d["kind"] for d in docs} == expected
    out = dry_run_apply(crds, docs)
    for kind, ns, name in map(identity, docs):
        # kubectl names each object it would have created or configured.
        assert f"/{name} " in out and "(server dry run)" in out, (kind, ns, name, out)
    assert out.count("(server dry run)") == len(docs)


@contextlib.contextmanager
def zeta_system(cluster: Cluster) -> Iterator[None]:
    """The manifests' namespace must exist for a dry-run of what goes into it; removed again if we made it."""
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    made = False
    try:
        core.read_namespace("zeta-system")
    except kubernetes.client.ApiException as e:
        if e.status != 404:
            raise
        core.create_namespace({"metadata": {"name": "zeta-system"}})
        made = True
    try:
        yield
    finally:
        if made:
            with contextlib.suppress(kubernetes.client.ApiException):
                core.delete_namespace("zeta-system")


def test_kustomize_manifests_render_and_pass_server_side_dry_run(crds: Cluster) -> None:
    docs = kustomize(crds)
    assert {d["metadata"].get("namespace", "zeta-system") for d in docs} == {"zeta-system"}
    with zeta_system(crds):
        out = dry_run_apply(crds, docs)
    assert out.count("(server dry run)") == len(docs)


def _body(doc: Doc) -> dict[str, Any]:
    """What an object does: everything but its metadata, plus the labels that select or are selected."""
    body = {k: v for k, v in doc.items() if k not in ("metadata", "status")}
    labels = doc["metadata"].get("labels") or {}
    body["grafana_dashboard"] = labels.get("grafana_dashboard")
    return body


def test_kustomize_manifests_are_the_charts_defaults(helm: Helm, crds: Cluster) -> None:
    chart = helm.template(namespace="zeta-system", release="zeta", include_crds=True)
    manifests = kustomize(crds)
    # The chart leaves the namespace to `helm install --create-namespace`; kustomize creates it.
    assert [identity(d) for d in by_kind(manifests, "Namespace")] == [("Namespace", "", "zeta-system")]
    manifests = [d for d in manifests if d["kind"] != "Namespace"]

    chart_objects = {identity(d): d for d in chart}
    manifest_objects = {identity(d): d for d in manifests}
    assert sorted(manifest_objects) == sorted(chart_objects)
    for key, doc in chart_objects.items():
        assert _body(manifest_objects[key]) == _body(doc), f"{key} differs between manifests/ and the chart"


@pytest.mark.parametrize("values", [(), (ALL_ON,)], ids=["defaults", "all-optional-on"])
def test_helm_install_dry_run_prints_the_notes(
    helm: Helm, crds: Cluster, monitoring_crds: Cluster, namespace: str, values: tuple[Path, ...]
) -> None:
    """helm's own server-side dry-run of an install (it checks the release against the cluster) and its NOTES."""
    args = ["install", f"zeta-{namespace}", str(CHART), "--namespace", namespace, "--dry-run=server"]
    args += [f"--kubeconfig={crds.kubeconfig}", *(a for f in values for a in ("--values", str(f)))]
    result = helm.run(*args, check=False)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    router = f"zeta-{namespace}-router"  # the release name holds "zeta": no second "-zeta"
    assert f"http://{router}.{namespace}.svc:" in notes
    assert f"ConfigMap {namespace}/zeta-routes-demo" in notes
    assert ("both enabled" in notes) == bool(values)  # ServiceMonitor and PodMonitor together scrape twice
