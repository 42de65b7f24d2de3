"""What a policy's `spec.prometheus` references, read from the policy's own namespace: a CA bundle (ConfigMap or
Secret), and basic auth or a bearer token (Secrets).

The operator reads exactly the objects named, by name (its RBAC grants `get` on Secrets, never `list` or
`watch`), once per cycle, so a rotated password or CA takes effect on the next cycle. No reference ever crosses
namespaces: a RoutingPolicy can only use Secrets of the namespace it lives in. Values are never logged and never
part of an error message: messages name the object and the key.
"""

from __future__ import annotations

import base64
import binascii
import ssl
from collections.abc import Callable
from typing import TypeVar

import kubernetes
from kubernetes.client import ApiException

from ..api.policy import KeyRef, PrometheusSettings
from .measure import ClientAuth, ClientTLS


class CredentialsError(Exception):
    """A referenced Secret or ConfigMap cannot be used; the message says which and why (never its content)."""


def resolve(
    api: kubernetes.client.ApiClient, namespace: str, settings: PrometheusSettings
) -> tuple[ClientTLS, ClientAuth]:
    """The TLS settings and credentials ``settings`` names, read from ``namespace``."""
    core = kubernetes.client.CoreV1Api(api)
    tls = ClientTLS(insecure_skip_verify=settings.tls.insecure_skip_verify)
    ca = settings.tls.ca
    if ca is not None:
        if ca.config_map is not None:
            pem = _config_map_value(core, namespace, ca.config_map)
            where = f"ConfigMap {ca.config_map.name} key {ca.config_map.key}"
        else:
            assert ca.secret is not None  # the schema requires exactly one
            pem = _secret_value(core, namespace, ca.secret)
            where = f"Secret {ca.secret.name} key {ca.secret.key}"
        _check_pem(pem, where)
        tls = ClientTLS(ca_pem=pem)
    auth = ClientAuth()
    if settings.basic_auth is not None:
        user = _secret_value(core, namespace, settings.basic_auth.username).rstrip("\r\n")
        password = _secret_value(core, namespace, settings.basic_auth.password).rstrip("\r\n")
        auth = ClientAuth(basic=(user, password))
    elif settings.bearer_token is not None:
        token = _secret_value(core, namespace, settings.bearer_token).strip()
        if not token:
            ref = settings.bearer_token
            raise CredentialsError(f"Secret {ref.name} key {ref.key} is empty")
        auth = ClientAuth(bearer_token=token)
    return tls, auth


def _secret_value(core: kubernetes.client.CoreV1Api, namespace: str, ref: KeyRef) -> str:
    secret = _read("Secret", ref.name, namespace, lambda: core.read_namespaced_secret(ref.name, namespace))
    data = secret.data or {}
    if ref.key not in data:
        raise CredentialsError(f"Secret {ref.name} has no key {ref.key} (keys: {', '.join(sorted(data))})")
    try:
        return base64.b64decode(data[ref.key], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise CredentialsError(f"Secret {ref.name} key {ref.key} is not UTF-8 text") from e


def _config_map_value(core: kubernetes.client.CoreV1Api, namespace: str, ref: KeyRef) -> str:
    cm = _read("ConfigMap", ref.name, namespace, lambda: core.read_namespaced_config_map(ref.name, namespace))
    text, binary = cm.data or {}, cm.binary_data or {}
    if ref.key in text:
        return str(text[ref.key])
    if ref.key in binary:
        try:
            return base64.b64decode(binary[ref.key]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as e:
            raise CredentialsError(f"ConfigMap {ref.name} key {ref.key} is not UTF-8 text") from e
    keys = sorted({*text, *binary})
    raise CredentialsError(f"ConfigMap {ref.name} has no key {ref.key} (keys: {', '.join(keys)})")


_T = TypeVar("_T")


def _read(kind: str, name: str, namespace: str, call: Callable[[], _T]) -> _T:
    try:
        return call()
    except ApiException as e:
        if e.status == 404:
            raise CredentialsError(f"{kind} {name} not found in namespace {namespace}") from None
        if e.status == 403:
            raise CredentialsError(
                f"the operator may not read {kind} {name} in namespace {namespace} (HTTP 403): "
                "grant its ServiceAccount get on it"
            ) from None
        raise CredentialsError(f"reading {kind} {name} failed: HTTP {e.status} {e.reason}") from None


def _check_pem(pem: str, where: str) -> None:
    """Fail here, with the object's name, rather than later as a puzzling handshake error."""
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as e:
        raise CredentialsError(f"{where} holds no usable PEM certificate") from e
