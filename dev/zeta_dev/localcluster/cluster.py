"""A handle on "the cluster" for tests and the demo: the local control plane or one from a kubeconfig.

Everything that talks to Kubernetes in tests goes through `Cluster`, so the same suite runs on the embedded
control plane or, with ``ZETA_TEST_KUBECONFIG=~/.kube/config``, on kind or a real cluster.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import yaml

from .controlplane import REPO_ROOT, write_kubeconfig

CRD_DIR = REPO_ROOT / "crds"


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl_binary: Path | None = None

    def api_client(self) -> kubernetes.client.ApiClient:
        """A client with the kubeconfig's (admin) identity."""
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def client_for_token(self, token: str) -> kubernetes.client.ApiClient:
        """A client that authenticates with a bearer token only (e.g. a ServiceAccount's)."""
        admin = self.api_client()
        conf = copy.copy(admin.configuration)
        conf.api_key = {"authorization": f"Bearer {token}"}
        conf.api_key_prefix = {}
        conf.cert_file = conf.key_file = None
        conf.refresh_api_key_hook = None
        conf.username = conf.password = ""
        return kubernetes.client.ApiClient(conf)

    def kubeconfig_for_token(
        self, token: str, *, user: str, directory: Path, namespace: str = "default"
    ) -> Path:
        """A kubeconfig file for a token (to run the operator or router as a ServiceAccount)."""
        conf = self.api_client().configuration
        path = directory / f"{user.replace(':', '_')}.kubeconfig"
        ca = Path(conf.ssl_ca_cert) if conf.ssl_ca_cert else None
        if ca is None:
            raise ValueError("the cluster's kubeconfig has no CA file; token kubeconfigs need one")
        write_kubeconfig(path, server=conf.host, ca_file=ca, token=token, user=user, namespace=namespace)
        return path

    def service_account_token(self, namespace: str, name: str, *, seconds: int = 3600) -> str:
        """A real, short-lived token for a ServiceAccount (TokenRequest API)."""
        core = kubernetes.client.CoreV1Api(self.api_client())
        request = kubernetes.client.AuthenticationV1TokenRequest(
            spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
        )
        answer = core.create_namespaced_service_account_token(name, namespace, request)
        return str(answer.status.token)  # type: ignore[union-attr]

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        binary = str(self.kubectl_binary) if self.kubectl_binary else shutil.which("kubectl")
        if not binary:
            raise FileNotFoundError("kubectl not found")
        return subprocess.run(
            [binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=input, capture_output=True, text=True, check=check, timeout=120,
        )  # fmt: skip

    def install_crds(self, directory: Path = CRD_DIR) -> None:
        """Apply the CRDs server-side and wait until they are Established."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(directory))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(directory))

    def apply(
        self, documents: Sequence[dict[str, object]] | str, *, namespace: str
    ) -> subprocess.CompletedProcess[str]:
        """kubectl apply of YAML text or documents; raises CalledProcessError with the apiserver's message."""
        text = documents if isinstance(documents, str) else yaml.safe_dump_all(list(documents))
        return self.kubectl("apply", "-n", namespace, "-f", "-", input=text)


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
