"""Zeta installed on a real node the way a user installs it: `helm install charts/zeta` with the locally built
image, simulated model servers as Deployments behind Services, a Prometheus that finds Pods through Kubernetes
service discovery (the chart's ``prometheus.io/*`` annotations), and ``kubectl apply -k manifests/samples/``
with the policy's documented ``spec.prometheus.address`` pointed at that Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from ..launch.sim import SimSpec
from ..waiting import eventually
from .controlplane import REPO_ROOT
from .fleet import read_table
from .node import GATEWAY, Image, Node
from .prometheus import Prometheus

CHART = REPO_ROOT / "charts" / "zeta"
MANIFESTS = REPO_ROOT / "manifests"
SAMPLES = MANIFESTS / "samples"
HELM_SCRIPT = REPO_ROOT / "hack" / "build-helm.sh"
Engines = Mapping[str, tuple[float, int]]
"""backend name -> (size in billions, concurrent sequences) of the simulated engine behind it."""
FLEET: Engines = {"general-4b": (4, 32), "coder-7b": (7, 16), "large-14b": (14, 8)}
"""The sample ModelBackends (manifests/samples): size in billions, and maxConcurrency as the sim's max-seqs."""
SIM_PORT = 8000
RELEASE = "zeta"
TABLE = "zeta-routes-demo"
"""The sample policy's routing table (the chart's default `router.policy.configMapName`)."""


def helm_binary() -> Path:
    configured = os.environ.get("HELM_BIN")
    if configured and Path(configured).is_file():
        return Path(configured)
    out = subprocess.run(["bash", str(HELM_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def simulator_manifests(
    image: Image, *, backend: str, replicas: int, model: str, size: float, max_seqs: int
) -> list[dict[str, Any]]:
    """A model server as users run one: a Deployment of zeta-sim behind a Service of the backend's name."""
    labels = {"app.kubernetes.io/name": "zeta-sim", "zeta.dev/backend": backend}
    argv = [
        "zeta-sim",
        "--host=0.0.0.0",
        *SimSpec(model=model, size_b=size, max_seqs=max_seqs).argv(port=SIM_PORT),
    ]
    security = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": backend, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(SIM_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "server",
                            "image": image.reference,
                            "imagePullPolicy": "Never",
                            "command": argv,
                            "ports": [{"name": "http", "containerPort": SIM_PORT}],
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": "http"},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            },
                            "securityContext": security,
                            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": backend, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": SIM_PORT, "targetPort": "http"}]},
    }
    return [deployment, service]


def _sample_docs() -> list[dict[str, Any]]:
    docs = [yaml.safe_load(path.read_text()) for path in SAMPLES.glob("*.yaml")]
    return [d for d in docs if d.get("kind") != "Kustomization"]


def sample_models() -> dict[str, str]:
    """backend name -> served model name, from the sample ModelBackends."""
    return {d["metadata"]["name"]: d["spec"]["model"] for d in _sample_docs() if d["kind"] == "ModelBackend"}


def deploy_fleet(
    node: Node, image: Image, *, namespace: str, replicas: int = 2, engines: Engines = FLEET
) -> None:
    """The simulator Deployments and Services (applied again with other ``engines``: a rollout), rolled out."""
    models = sample_models()
    docs = [d for backend, (size, seqs) in engines.items()
            for d in simulator_manifests(image, backend=backend, replicas=replicas, model=models[backend],
                                         size=size, max_seqs=seqs)]  # fmt: skip
    node.cluster.apply(docs, namespace=namespace)
    for backend in engines:
        node.cluster.kubectl("rollout", "status", f"deployment/{backend}", "-n", namespace, "--timeout=110s")


def annotated_pod_targets(pods: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Scrape targets for running Pods annotated ``prometheus.io/scrape: "true"`` (the chart's documented path
    without the Prometheus Operator): their ``prometheus.io/port`` and ``/path``, with the namespace, pod and
    container labels a Kubernetes scrape config gives and the operator's default queries select on."""
    targets = {}
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status", {})
        notes = meta.get("annotations") or {}
        if notes.get("prometheus.io/scrape") != "true" or status.get("phase") != "Running":
            continue
        if not status.get("podIP") or not notes.get("prometheus.io/port"):
            continue
        targets[f"{status['podIP']}:{notes['prometheus.io/port']}"] = {
            "namespace": meta["namespace"],
            "pod": meta["name"],
            "container": pod["spec"]["containers"][0]["name"],
            "__metrics_path__": notes.get("prometheus.io/path", "/metrics"),
        }
    return targets


@contextlib.contextmanager
def node_prometheus(node: Node, *, namespace: str, every: float = 1.0) -> Iterator[Prometheus]:
    """The harness's Prometheus on the node's bridge (Pods reach it), scraping annotated Pods.

    Debian's Prometheus is built without Kubernetes service discovery, so a thread does its job: it lists Pods
    every second as a ServiceAccount that may only list them, and writes file-based targets.
    """
    rbac = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: prometheus, namespace: {namespace}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: zeta-test-prometheus}}
rules:
  - {{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: zeta-test-prometheus}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: zeta-test-prometheus}}
subjects: [{{kind: ServiceAccount, name: prometheus, namespace: {namespace}}}]
"""
    node.cluster.kubectl("apply", "-f", "-", input=rbac)
    token = node.cluster.service_account_token(namespace, "prometheus", seconds=7200)
    core = kubernetes.client.CoreV1Api(node.cluster.client_for_token(token))
    stop = threading.Event()

    def discover(prom: Prometheus) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # the apiserver may be restarting; try again next round
                pods = core.list_pod_for_all_namespaces(_request_timeout=5).to_dict()["items"]
                prom.set_targets("pods", annotated_pod_targets(_camel(pods)))
            stop.wait(every)

    with Prometheus.running(listen_host=GATEWAY) as prom:
        thread = threading.Thread(target=discover, args=(prom,), name="pod-discovery", daemon=True)
        thread.start()
        try:
            yield prom
        finally:
            stop.set()
            thread.join(10)


def _camel(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The client's snake_case dicts, with just the keys `annotated_pod_targets` reads in API spelling."""
    return [
        {
            "metadata": p["metadata"],
            "status": {"phase": p["status"]["phase"], "podIP": p["status"]["pod_ip"]},
            "spec": p["spec"],
        }
        for p in pods
    ]


def helm_install(node: Node, image: Image, *, namespace: str, values: dict[str, Any] | None = None) -> None:
    """`helm install` of charts/zeta with the local image (pullPolicy Never: nothing is pulled), waiting for it."""
    overrides = {
        "image": {"repository": image.repository, "tag": image.tag, "pullPolicy": "Never"},
        **(values or {}),
    }
    with tempfile.NamedTemporaryFile("w", prefix="zeta-values-", suffix=".yaml") as f:
        yaml.safe_dump(overrides, f)
        f.flush()
        subprocess.run(
            [str(helm_binary()), "install", RELEASE, str(CHART), f"--kubeconfig={node.cluster.kubeconfig}",
             "-n", namespace, "--create-namespace", "-f", f.name, "--wait", "--timeout=5m"],
            check=True, capture_output=True, text=True, timeout=600,
        )  # fmt: skip


def apply_samples(
    node: Node, *, namespace: str, prometheus_url: str, spec: Mapping[str, Mapping[str, Any]] | None = None
) -> None:
    """``kubectl apply -k manifests/samples/``, through an overlay that sets the policy's documented
    ``spec.prometheus.address`` (the samples name a prometheus-operated Service this node does not have) and,
    per sample object name, the documented fields in ``spec`` (paths under ``spec``, e.g. ``adaptation`` or
    ``prometheus/window``: the demo's faster adaptation)."""
    with tempfile.TemporaryDirectory(prefix="zeta-samples-") as tmp:
        overlay = Path(tmp)
        shutil.copytree(SAMPLES, overlay / "samples")
        address = [{"op": "replace", "path": "/spec/prometheus/address", "value": prometheus_url}]
        patches = {("RoutingPolicy", "demo"): address}
        kinds = {doc["metadata"]["name"]: doc["kind"] for doc in _sample_docs()}
        for name, fields in (spec or {}).items():
            kind = kinds[name]
            ops = [{"op": "add", "path": f"/spec/{key}", "value": value} for key, value in fields.items()]
            patches[(kind, name)] = patches.get((kind, name), []) + ops
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": namespace,
            "resources": ["samples"],
            "patches": [
                {"target": {"kind": kind, "name": name}, "patch": yaml.safe_dump(ops)}
                for (kind, name), ops in patches.items()
            ],
        }
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        node.cluster.kubectl("apply", "-k", str(overlay))


def kustomize_install(node: Node, image: Image) -> str:
    """``kubectl apply -k manifests/`` through an overlay that only names the local image (kustomize's documented
    ``images`` override); waits for the operator and returns the namespace. The router becomes Ready once its
    policy's routing table exists (apply the samples next)."""
    with tempfile.TemporaryDirectory(prefix="zeta-manifests-") as tmp:
        overlay = Path(tmp)
        shutil.copytree(MANIFESTS, overlay / "manifests", ignore=shutil.ignore_patterns("samples"))
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": ["manifests"],
            "images": [{"name": "ghcr.io/zeta-dev/zeta", "newName": image.repository, "newTag": image.tag}],
        }
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        node.cluster.kubectl("apply", "-k", str(overlay))
    namespace = str(yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["namespace"])
    wait_for_rollout(node, "deployment/zeta-operator", namespace=namespace)
    return namespace


def router_service_url(node: Node, *, namespace: str) -> str:
    """The router's Service as a client on this machine sees it: its ClusterIP, through kube-proxy."""
    out = node.cluster.kubectl(
        "get", "service", f"{RELEASE}-router", "-n", namespace, "-o",
        "jsonpath={.spec.clusterIP}:{.spec.ports[0].port}",
    ).stdout  # fmt: skip
    return f"http://{out}"


def wait_for_rollout(node: Node, kind_name: str, *, namespace: str, timeout: float = 110) -> None:
    """`kubectl rollout status` (within the harness's 120 s limit on one kubectl call)."""
    node.cluster.kubectl("rollout", "status", kind_name, "-n", namespace, f"--timeout={int(timeout)}s")


def ready_pod_ips(node: Node, *, namespace: str, selector: str) -> list[str]:
    out = node.cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", selector, "-o",
        'jsonpath={range .items[?(@.status.podIP)]}{.status.podIP}{"\\n"}{end}',
    ).stdout  # fmt: skip
    return out.split()


def endpoint_slice_addresses(node: Node, *, namespace: str, service: str) -> list[str]:
    out = node.cluster.kubectl(
        "get", "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}", "-o",
        'jsonpath={range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\\n"}{end}',
    ).stdout  # fmt: skip
    return sorted(out.split())


@dataclass
class Installed:
    """Zeta installed on a running node: the handles the tests and the demo use."""

    node: Node
    prometheus: Prometheus
    namespace: str
    router_url: str
    images: dict[str, Image]
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds from the start of `installed` to each step."""

    def kubectl(self, *args: str) -> str:
        return self.node.cluster.kubectl(*args, "-n", self.namespace).stdout

    def table_endpoints(self, backend: str) -> list[str]:
        """The Pod IPs the routing table lists for ``backend``."""
        table = read_table(self.node.cluster, self.namespace, TABLE)
        if table is None:
            return []
        return sorted(
            str(e.url).split("//")[1].split(":")[0]
            for b in table.backends
            if b.name == backend
            for e in b.endpoints
        )


@contextlib.contextmanager
def installed(
    binaries: Path,
    images: dict[str, Image],
    *,
    namespace: str,
    engines: Engines = FLEET,
    replicas: int = 2,
    spec: Mapping[str, Mapping[str, Any]] | None = None,
    on_step: Callable[[str, float], None] | None = None,
) -> Iterator[Installed]:
    """A node with Zeta as a user installs it: the CRDs, the simulator Deployments (``engines``, ``replicas``
    each), Prometheus, the samples (with ``spec`` set, see `apply_samples`), `helm install`; yields once the
    router's Service answers. ``on_step`` hears of each step done (its name, seconds since the start).
    Everything is torn down at exit."""
    start = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        timings[name] = round(time.monotonic() - start, 1)
        if on_step:
            on_step(name, timings[name])

    with Node.running(images=images, binaries=binaries) as node:
        lap("node ready")
        node.cluster.install_crds()
        node.cluster.kubectl("create", "namespace", namespace)
        # The model servers are up before Zeta is installed, so its first table has every one of them (started
        # side by side, a CI run's first table came while the coder was pending and sent code to the 14B; and
        # the overlap saved nothing on 2 cores).
        deploy_fleet(node, images["zeta-sim"], namespace=namespace, replicas=replicas, engines=engines)
        lap("model servers ready")
        with node_prometheus(node, namespace=namespace) as prom:
            apply_samples(node, namespace=namespace, prometheus_url=prom.url, spec=spec)
            helm_install(node, images["zeta"], namespace=namespace)
            lap("helm install done")
            url = router_service_url(node, namespace=namespace)
            eventually(lambda: chat(url, "hi").status == 200, timeout=120,
                       what="a first answer through the router's Service")  # fmt: skip
            lap("first answer")
            yield Installed(node, prom, namespace, url, images, timings)


@dataclass
class Answer:
    status: int  # 0: no HTTP answer at all (connection refused or reset, timeout)
    backend: str
    endpoint: str
    error: str = ""


def chat(base_url: str, content: str, *, model: str = "zeta", timeout: float = 30) -> Answer:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    request = urllib.request.Request(
        f"{base_url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            headers = response.headers
            return Answer(
                response.status, headers.get("X-Zeta-Backend", ""), headers.get("X-Zeta-Endpoint", "")
            )
    except urllib.error.HTTPError as e:
        e.read()
        return Answer(e.code, e.headers.get("X-Zeta-Backend", ""), "", error=f"HTTP {e.code}")
    except OSError as e:
        return Answer(0, "", "", error=f"{type(e).__name__}: {e}")
