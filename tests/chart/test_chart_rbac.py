"""The chart's RBAC, applied as rendered to the real kube-apiserver and exercised with real ServiceAccount tokens
(TokenRequest): each component can do its job and gets 403 on anything else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client import ApiException

from zeta_dev.localcluster.cluster import Cluster
from zeta_operator.api.common import GROUP, VERSION

from .render import MANIFESTS, Doc, Helm, by_kind, one

BACKEND = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "ModelBackend",
    "metadata": {"name": "tiny"},
    "spec": {
        "model": "tiny",
        "endpoints": {"static": ["http://10.0.0.9:8000"]},
        "capabilities": {"tasks": ["chat"], "maxComplexity": 1},
    },
}


def test_operator_clusterrole_rules_equal_the_manifests(helm: Helm) -> None:
    """manifests/operator/rbac.yaml is what tests/operator runs the operator under; the chart must grant the same."""
    shipped = one(yaml.safe_load_all((MANIFESTS / "operator" / "rbac.yaml").read_text()), "ClusterRole")
    for values in ({}, {"operator": {"allNamespaces": False}}):
        chart = one(helm.template(namespace="zeta-system", values=values), "ClusterRole", "zeta-operator")
        assert chart["rules"] == shipped["rules"], f"with {values}"
    # Namespaced mode binds the cluster-scoped part of those rules on its own; it grants nothing beyond them.
    docs = helm.template(namespace="zeta-system", values={"operator": {"allNamespaces": False}})
    cluster_scope = one(docs, "ClusterRole", "-cluster-scope")
    assert cluster_scope["rules"] and all(rule in shipped["rules"] for rule in cluster_scope["rules"])
    assert {r for rule in cluster_scope["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }


def _apply(cluster: Cluster, docs: list[Doc]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


@contextlib.contextmanager
def _cluster_scoped_cleanup(cluster: Cluster, docs: list[Doc]) -> Iterator[None]:
    """ClusterRoles and ClusterRoleBindings outlive the test namespace; delete them afterwards."""
    try:
        yield
    finally:
        for doc in docs:
            if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                cluster.kubectl(
                    "delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", check=False
                )


def _forbidden(what: str, call: Callable[[], Any], service_account: str) -> None:
    with pytest.raises(ApiException) as err:
        call()
    assert err.value.status == 403, f"{what}: expected 403, got {err.value.status} {err.value.reason}"
    assert f"system:serviceaccount:{service_account}" in err.value.body, err.value.body


def test_router_reads_its_one_configmap_and_nothing_else(
    helm: Helm, cluster: Cluster, namespace: str
) -> None:
    table = "zeta-routes-demo"
    docs = helm.template(
        namespace=namespace, values={"router": {"policy": {"name": "demo", "configMapName": table}}}
    )
    rbac = [
        d
        for d in docs
        if d["kind"] in ("ServiceAccount", "Role", "RoleBinding") and d["metadata"]["name"] == "zeta-router"
    ]
    assert [d["kind"] for d in rbac] == ["ServiceAccount", "Role", "RoleBinding"]
    assert one(rbac, "Role")["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [table],
            "verbs": ["get", "list", "watch"],
        }
    ]
    _apply(cluster, rbac)

    admin = kubernetes.client.CoreV1Api(cluster.api_client())
    admin.create_namespaced_config_map(namespace, {"metadata": {"name": table}, "data": {"table.json": "{}"}})
    admin.create_namespaced_config_map(namespace, {"metadata": {"name": "someone-else"}, "data": {"k": "v"}})
    as_router = kubernetes.client.CoreV1Api(
        cluster.client_for_token(cluster.service_account_token(namespace, "zeta-router"))
    )
    who = f"{namespace}:zeta-router"

    # What the router does: get, then list and watch with a field selector on its one ConfigMap.
    assert as_router.read_namespaced_config_map(table, namespace).data == {"table.json": "{}"}
    selector = f"metadata.name={table}"
    listed = as_router.list_namespaced_config_map(namespace, field_selector=selector)
    assert [cm.metadata.name for cm in listed.items] == [table]
    watch = kubernetes.watch.Watch()
    events = watch.stream(
        as_router.list_namespaced_config_map, namespace, field_selector=selector,
        resource_version=listed.metadata.resource_version, timeout_seconds=5,
    )  # fmt: skip
    admin.patch_namespaced_config_map(table, namespace, {"data": {"table.json": '{"version": 2}'}})
    event = next(iter(events))
    watch.stop()
    assert (event["type"], event["object"].metadata.name) == ("MODIFIED", table)

    # Anything else is forbidden: other ConfigMaps, unfiltered lists, and every write, even to its own.
    body = {"metadata": {"name": table}, "data": {"table.json": "{}"}}
    _forbidden(
        "get another ConfigMap", lambda: as_router.read_namespaced_config_map("someone-else", namespace), who
    )
    _forbidden("list all ConfigMaps", lambda: as_router.list_namespaced_config_map(namespace), who)
    _forbidden(
        "watch all ConfigMaps",
        lambda: as_router.list_namespaced_config_map(namespace, watch=True, timeout_seconds=1),
        who,
    )
    _forbidden("update", lambda: as_router.replace_namespaced_config_map(table, namespace, body), who)
    _forbidden(
        "patch", lambda: as_router.patch_namespaced_config_map(table, namespace, {"data": {"x": "y"}}), who
    )
    _forbidden("delete", lambda: as_router.delete_namespaced_config_map(table, namespace), who)
    _forbidden(
        "create",
        lambda: as_router.create_namespaced_config_map(namespace, {**body, "metadata": {"name": "new"}}),
        who,
    )
    _forbidden("read Secrets", lambda: as_router.list_namespaced_secret(namespace), who)
    _forbidden("read Pods", lambda: as_router.list_namespaced_pod(namespace), who)
    _forbidden(
        "read the table in another namespace",
        lambda: as_router.read_namespaced_config_map(table, "default"),
        who,
    )


def _operator_clients(cluster: Cluster, namespace: str, name: str) -> tuple[Any, Any, Any]:
    client = cluster.client_for_token(cluster.service_account_token(namespace, name))
    return (
        kubernetes.client.CoreV1Api(client),
        kubernetes.client.CustomObjectsApi(client),
        kubernetes.client.ApiextensionsV1Api(client),
    )


def test_operator_clusterrole_allows_its_job_and_nothing_more(
    helm: Helm, crds: Cluster, namespace: str
) -> None:
    # A release name of its own: the chart's cluster-scoped names derive from it, so runs never collide.
    docs = helm.template(namespace=namespace, release=f"op-{namespace}")
    rbac = [
        d
        for d in docs
        if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
        and "-operator" in d["metadata"]["name"]
    ]
    assert sorted(d["kind"] for d in rbac) == ["ClusterRole", "ClusterRoleBinding", "ServiceAccount"]
    name = one(rbac, "ServiceAccount")["metadata"]["name"]
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(BACKEND))
    with _cluster_scoped_cleanup(crds, rbac):
        _apply(crds, rbac)
        core, custom, ext = _operator_clients(crds, namespace, name)
        who = f"{namespace}:{name}"

        # Its job: read the custom resources anywhere, patch their status, write routing tables and Events.
        listed = custom.list_cluster_custom_object(GROUP, VERSION, "modelbackends")
        assert "tiny" in [i["metadata"]["name"] for i in listed["items"]]
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelbackends", "tiny")
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "modelbackends", "tiny", {"status": {"state": "Healthy"}}
        )
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "zeta-routes-x"}, "data": {"t": "1"}}
        )
        core.replace_namespaced_config_map(
            "zeta-routes-x", namespace, {"metadata": {"name": "zeta-routes-x"}, "data": {"t": "2"}}
        )
        core.list_namespaced_pod(namespace)
        # A Secret a RoutingPolicy names (Prometheus credentials or CA), read by name.
        kubernetes.client.CoreV1Api(crds.api_client()).create_namespaced_secret(
            namespace, {"metadata": {"name": "prom-auth"}, "stringData": {"password": "x"}}
        )
        assert core.read_namespaced_secret("prom-auth", namespace).data == {"password": "eA=="}
        core.create_namespaced_event(
            namespace,
            {
                "metadata": {"generateName": "tiny."},
                "involvedObject": {"kind": "ModelBackend", "name": "tiny", "namespace": namespace},
                "reason": "WeightChanged",
                "message": "test",
                "type": "Normal",
            },
        )
        ext.list_custom_resource_definition()

        # Not its job.
        _forbidden("delete a namespace", lambda: core.delete_namespace(namespace), who)
        _forbidden("list Secrets", lambda: core.list_namespaced_secret(namespace), who)
        _forbidden("list Secrets cluster-wide", lambda: core.list_secret_for_all_namespaces(), who)
        _forbidden(
            "watch Secrets",
            lambda: core.list_namespaced_secret(namespace, watch=True, timeout_seconds=1),
            who,
        )
        _forbidden(
            "change a Secret",
            lambda: core.patch_namespaced_secret("prom-auth", namespace, {"stringData": {"password": "y"}}),
            who,
        )
        _forbidden(
            "delete a ConfigMap", lambda: core.delete_namespaced_config_map("zeta-routes-x", namespace), who
        )
        _forbidden("delete a ModelBackend", lambda: custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelbackends", "tiny"), who)  # fmt: skip
        _forbidden("create a ModelBackend", lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelbackends", {**BACKEND, "metadata": {"name": "other"}}), who)  # fmt: skip
        _forbidden("create a Pod", lambda: core.create_namespaced_pod(
            namespace, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}), who)  # fmt: skip
        _forbidden(
            "delete a CRD", lambda: ext.delete_custom_resource_definition(f"modelbackends.{GROUP}"), who
        )


def test_operator_in_namespaced_mode_is_confined_to_its_namespaces(
    helm: Helm, crds: Cluster, namespace: str
) -> None:
    values = {"operator": {"allNamespaces": False, "watchNamespaces": [namespace]}}
    docs = helm.template(namespace=namespace, release=f"op-{namespace}", values=values)
    deployment = one(docs, "Deployment", "-operator")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"][1:2] == [
        f"--namespace={namespace}"
    ]
    rbac = [
        d
        for d in docs
        if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding")
        and "-operator" in d["metadata"]["name"]
    ]
    bindings = by_kind(rbac, "RoleBinding")
    assert [(b["metadata"]["namespace"], b["roleRef"]["kind"]) for b in bindings] == [
        (namespace, "ClusterRole")
    ]
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(BACKEND))
    with _cluster_scoped_cleanup(crds, rbac):
        _apply(crds, rbac)
        name = one(rbac, "ServiceAccount")["metadata"]["name"]
        core, custom, ext = _operator_clients(crds, namespace, name)
        who = f"{namespace}:{name}"

        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modelbackends")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["tiny"]
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "zeta-routes-x"}, "data": {"t": "1"}}
        )
        ext.list_custom_resource_definition()  # kopf's cluster-scoped reads stay granted
        core.list_namespace()

        _forbidden("list ModelBackends cluster-wide", lambda: custom.list_cluster_custom_object(
            GROUP, VERSION, "modelbackends"), who)  # fmt: skip
        _forbidden("read ConfigMaps elsewhere", lambda: core.list_namespaced_config_map("default"), who)
        _forbidden("read Pods elsewhere", lambda: core.list_namespaced_pod("default"), who)
        _forbidden("delete a namespace", lambda: core.delete_namespace(namespace), who)
