"""RBAC is really enforced: a ServiceAccount that may only read ModelBackends, authenticated with a real
TokenRequest token, can read them and gets 403 on every write."""

from __future__ import annotations

import kubernetes
import pytest
import yaml
from kubernetes.client import ApiException

from zeta_dev.localcluster.cluster import Cluster
from zeta_operator.api.common import GROUP, VERSION

READER_RBAC = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: mb-reader}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: modelbackend-reader}
rules:
  - apiGroups: [zeta.dev]
    resources: [modelbackends]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: mb-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: modelbackend-reader}
subjects:
  - {kind: ServiceAccount, name: mb-reader}
"""

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


def test_read_only_service_account_gets_403_on_write(crds: Cluster, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=READER_RBAC)
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(BACKEND))
    token = crds.service_account_token(namespace, "mb-reader")
    as_reader = kubernetes.client.CustomObjectsApi(crds.client_for_token(token))

    listed = as_reader.list_namespaced_custom_object(GROUP, VERSION, namespace, "modelbackends")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["tiny"]

    writes = {
        "create": lambda: as_reader.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelbackends", {**BACKEND, "metadata": {"name": "other"}}
        ),
        "patch": lambda: as_reader.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelbackends", "tiny", {"spec": {"cost": 2}}
        ),
        "delete": lambda: as_reader.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelbackends", "tiny"
        ),
        "patch status": lambda: as_reader.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "modelbackends", "tiny", {"status": {"state": "Healthy"}}
        ),
    }
    for verb, write in writes.items():
        with pytest.raises(ApiException) as err:
            write()
        assert err.value.status == 403, f"{verb}: {err.value.status} {err.value.reason}"
        assert "system:serviceaccount:" + namespace + ":mb-reader" in err.value.body

    # Other resources are out of reach too: least privilege, not just "no writes".
    with pytest.raises(ApiException) as err:
        kubernetes.client.CoreV1Api(crds.client_for_token(token)).list_namespaced_config_map(namespace)
    assert err.value.status == 403


def test_unauthenticated_requests_are_refused(crds: Cluster) -> None:
    with pytest.raises(ApiException) as err:
        kubernetes.client.CoreV1Api(crds.client_for_token("not-a-token")).list_namespace()
    assert err.value.status == 401
