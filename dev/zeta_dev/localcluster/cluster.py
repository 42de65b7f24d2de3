"""A handle on "the cluster" for tests and the demo: the local control plane or one from a kubeconfig.

Everything that talks to Kubernetes in tests goes through `Cluster`, so the same suite runs on the embedded
control plane or, with ``ZETA_TEST_KUBECONFIG=~/.kube/config``, on kind or a real cluster.
"""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import yaml

from .. import waiting
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

    def kubeconfig_for_client_certificate(
        self, user: str, *, directory: Path, groups: Sequence[str] = (), seconds: int = 3600
    ) -> Path:
        """A kubeconfig that authenticates ``user`` with a client certificate (inline data, no token), issued
        through the CertificateSigningRequest API (signer kubernetes.io/kube-apiserver-client), so it works on
        kind and real clusters too. The admin approves the request; the controller manager signs it."""
        subject = "/CN=" + user + "".join(f"/O={g}" for g in groups)
        key, csr = directory / f"{user}.key", directory / f"{user}.csr"
        subprocess.run(
            ["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
             "-keyout", str(key), "-out", str(csr)],
            check=True, capture_output=True,
        )  # fmt: skip
        certificates = kubernetes.client.CertificatesV1Api(self.api_client())
        name = f"{user}-{uuid.uuid4().hex[:8]}"
        request = kubernetes.client.V1CertificateSigningRequest(
            metadata=kubernetes.client.V1ObjectMeta(name=name),
            spec=kubernetes.client.V1CertificateSigningRequestSpec(
                request=base64.b64encode(csr.read_bytes()).decode(),
                signer_name="kubernetes.io/kube-apiserver-client",
                usages=["client auth"],
                expiration_seconds=seconds,
            ),
        )
        certificates.create_certificate_signing_request(request)
        approval = certificates.read_certificate_signing_request(name)
        approval.status = kubernetes.client.V1CertificateSigningRequestStatus(
            conditions=[
                kubernetes.client.V1CertificateSigningRequestCondition(
                    type="Approved", status="True", reason="ZetaTest", message="approved by the test harness"
                )
            ]
        )
        certificates.replace_certificate_signing_request_approval(name, approval)

        def signed() -> str | None:
            status = certificates.read_certificate_signing_request(name).status
            return str(status.certificate) if status is not None and status.certificate else None  # base64

        issued = waiting.eventually(signed, timeout=60, what=f"the signed certificate of CSR {name}")
        admin = self.api_client().configuration
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "c", "cluster": {"server": admin.host, "certificate-authority": admin.ssl_ca_cert}}
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": issued,
                        "client-key-data": base64.b64encode(key.read_bytes()).decode(),
                    },
                }
            ],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": user}}],
            "current-context": "c",
        }
        path = directory / f"{user}-cert.kubeconfig"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        key.unlink()  # its only copy is now in the kubeconfig
        return path

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
