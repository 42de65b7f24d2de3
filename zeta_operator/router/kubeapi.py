"""Credentials for the router's one Kubernetes API call (the routing table watch), loaded by the `kubernetes`
library's own loaders, the way kopf and kubectl load them.

Where they come from, first match wins: ``--kubeconfig``; ``$KUBECONFIG`` (one file or several, merged); the
Pod's ServiceAccount (KUBERNETES_SERVICE_HOST and the mounted token and CA); ``~/.kube/config``. Everything the
library understands works: tokens and tokenFile, client certificates as files or inline data, exec plugins and
auth providers, certificate-authority[-data], insecure-skip-tls-verify, tls-server-name, proxy-url.

The watch itself stays a small aiohttp request (tables.py): only the credentials come from the library. The
Authorization header is asked for on every (re)connect, so the library's refresh hooks run: a rotated
ServiceAccount token is read again (at most a minute late) and an expired exec-plugin credential is renewed.
After a 401, `reload` loads everything again (a kubeconfig tokenFile that was rotated, a changed kubeconfig), and
the watch tries new credentials at once rather than after its backoff.
Tokens are never logged.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import SERVICE_HOST_ENV_NAME

Loader = Callable[[kubernetes.client.Configuration], None]


class KubeConfigError(Exception):
    """The credentials could not be loaded (the message never contains secrets)."""


class KubeCredentials:
    """The API server's address, a TLS context and the Authorization header, from one of the loaders."""

    def __init__(self, load: Loader, *, source: str) -> None:
        self._load = load
        self.source = source
        """Where the credentials come from (for logs and errors): a file name or "in-cluster"."""
        self._use(*self._loaded())

    def reload(self) -> bool:
        """Load everything again (after a 401: a rotated token file, a renewed certificate). True if what the
        requests send changed (the server, the token, the certificates), so a new attempt need not wait."""
        before = _fingerprint(self._config)
        self._use(*self._loaded())
        return _fingerprint(self._config) != before

    def _loaded(self) -> tuple[kubernetes.client.Configuration, ssl.SSLContext]:
        config = kubernetes.client.Configuration()
        try:
            self._load(config)
            context = _ssl_context(config)
        except (ConfigException, OSError, ValueError, KeyError, TypeError, ssl.SSLError) as e:
            # The library's messages name files and fields, not secrets.
            raise KubeConfigError(f"cannot load Kubernetes credentials from {self.source}: {e}") from None
        if not config.host.startswith(("https://", "http://")):
            raise KubeConfigError(f"{self.source}: the cluster has no server URL")
        return config, context

    def _use(self, config: kubernetes.client.Configuration, context: ssl.SSLContext) -> None:
        self._config = config
        self.server: str = config.host.rstrip("/")
        self.ssl_context = context

    def headers(self) -> dict[str, str]:
        """The Authorization header, refreshed by the library when its token is due (may run an exec plugin)."""
        try:
            value = self._config.get_api_key_with_prefix("BearerToken")
        except (ConfigException, OSError) as e:
            raise KubeConfigError(f"cannot refresh the credentials from {self.source}: {e}") from None
        value = (value or "").strip()  # the library keeps a token file's trailing newline
        return {"Authorization": value} if value else {}

    def request_options(self) -> dict[str, Any]:
        """Keyword arguments for an aiohttp request to the API server (TLS, SNI name, proxy)."""
        options: dict[str, Any] = {"ssl": self.ssl_context}
        if self._config.tls_server_name:
            options["server_hostname"] = self._config.tls_server_name
        if self._config.proxy:
            options["proxy"] = self._config.proxy
        return options


def _fingerprint(config: kubernetes.client.Configuration) -> tuple[Any, ...]:
    """What requests send: a change means new credentials (compared, never logged)."""
    return (
        config.host,
        sorted(config.api_key.items()),
        config.cert_file,
        config.key_file,
        config.ssl_ca_cert,
    )


def load_credentials(kubeconfig: Path | None = None) -> KubeCredentials:
    """``kubeconfig``, else $KUBECONFIG, else the in-cluster ServiceAccount, else ~/.kube/config."""
    if kubeconfig is not None:
        return from_kubeconfig(kubeconfig)
    if os.environ.get("KUBECONFIG"):
        return from_kubeconfig(None)
    if os.environ.get(SERVICE_HOST_ENV_NAME):
        return in_cluster()
    default = Path("~/.kube/config").expanduser()
    if not default.exists():
        raise KubeConfigError(
            "not in a cluster (no KUBERNETES_SERVICE_HOST) and no kubeconfig: pass --kubeconfig or set $KUBECONFIG"
        )
    return from_kubeconfig(default)


def in_cluster() -> KubeCredentials:
    def load(config: kubernetes.client.Configuration) -> None:
        kubernetes.config.load_incluster_config(client_configuration=config, try_refresh_token=True)

    return KubeCredentials(load, source="the in-cluster ServiceAccount")


def from_kubeconfig(path: Path | None) -> KubeCredentials:
    """A kubeconfig file's current context; ``None``: $KUBECONFIG (its files merged, as kubectl does)."""
    files = str(path) if path is not None else os.environ["KUBECONFIG"]

    def load(config: kubernetes.client.Configuration) -> None:
        # persist_config=False: an auth provider's refreshed token is never written back into the file.
        kubernetes.config.load_kube_config(
            config_file=files, client_configuration=config, persist_config=False
        )

    return KubeCredentials(load, source=f"kubeconfig {files}")


def _ssl_context(config: kubernetes.client.Configuration) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.ssl_ca_cert or None)
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file or None)
    if not config.verify_ssl:  # insecure-skip-tls-verify: the kubeconfig's explicit choice
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
