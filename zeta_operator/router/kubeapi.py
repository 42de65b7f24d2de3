"""Just enough of the Kubernetes API for the router: credentials and a TLS context, read once.

Two sources: the Pod's ServiceAccount (token, CA and KUBERNETES_SERVICE_HOST/PORT) or a kubeconfig file (its
current context: server, certificate-authority[-data], token or tokenFile, client certificate files). The
router has no kubernetes-client dependency on the hot path; only the table watcher uses this. Tokens are read
from their file on every (re)connect, so rotated ServiceAccount tokens are picked up, and are never logged.
"""

from __future__ import annotations

import base64
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeConfigError(Exception):
    """The credentials could not be read (the message never contains secrets)."""


@dataclass(frozen=True)
class KubeCredentials:
    server: str
    ssl_context: ssl.SSLContext
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None

    def headers(self) -> dict[str, str]:
        token = self.token
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except OSError as e:
                raise KubeConfigError(f"cannot read the token file {self.token_file}: {e.strerror}") from None
        return {"Authorization": f"Bearer {token}"} if token else {}


def in_cluster() -> KubeCredentials:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeConfigError("not in a cluster (no KUBERNETES_SERVICE_HOST); pass --kubeconfig")
    if ":" in host:
        host = f"[{host}]"
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT_DIR / "ca.crt"))
    return KubeCredentials(
        server=f"https://{host}:{port}", ssl_context=context, token_file=SERVICE_ACCOUNT_DIR / "token"
    )


def from_kubeconfig(path: Path) -> KubeCredentials:
    try:
        config: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {type(e).__name__}") from None
    if not isinstance(config, dict):
        raise KubeConfigError(f"kubeconfig {path} is not a mapping")
    context = _named(config, "contexts", config.get("current-context"), "context")
    cluster = _named(config, "clusters", context.get("cluster"), "cluster")
    user = _named(config, "users", context.get("user"), "user") if context.get("user") else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeConfigError(f"kubeconfig {path}: the cluster has no server URL")
    base = path.parent
    return KubeCredentials(
        server=server.rstrip("/"),
        ssl_context=_ssl_context(cluster, user, base),
        token=user.get("token"),
        token_file=_path(base, user["tokenFile"]) if user.get("tokenFile") else None,
    )


def _named(config: dict[str, Any], section: str, name: Any, key: str) -> dict[str, Any]:
    for item in config.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get(key), dict):
            return dict(item[key])
    raise KubeConfigError(f"kubeconfig: no {key} named {name!r} in {section}")


def _ssl_context(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cluster.get("certificate-authority"):
        context.load_verify_locations(cafile=str(_path(base, cluster["certificate-authority"])))
    elif cluster.get("certificate-authority-data"):
        context.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if user.get("client-certificate") and user.get("client-key"):
        context.load_cert_chain(
            str(_path(base, user["client-certificate"])), str(_path(base, user["client-key"]))
        )
    elif user.get("client-certificate-data"):
        raise KubeConfigError(
            "kubeconfig: inline client-certificate-data is not supported; use files or a token"
        )
    return context


def _path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p
