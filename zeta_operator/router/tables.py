"""Where the routing table comes from, and the one place it is swapped.

`TableStore.offer` validates a candidate table (schema, cross references, hash) and builds its snapshot; only then
is it published, with one attribute assignment. An invalid table is rejected, logged and counted, and the last
good one stays in use. Two sources feed the store:

- `watch_file`: out of cluster, poll the file's (mtime, size, inode) every 0.5 s; a file that changes while
  being read is read again at the next poll, so a non-atomic writer is not mistaken for an invalid table;
- `watch_configmap`: in cluster, list + watch ONE ConfigMap through the API with
  ``fieldSelector=metadata.name=<name>``, so RBAC can restrict the router to ``resourceNames: [<name>]``;
  resumes from the last resourceVersion, relists on 410 Gone, reconnects with capped, jittered backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from ..api.table import CONFIGMAP_KEY, RoutingTable
from .kubeapi import KubeConfigError, KubeCredentials
from .metrics import RouterMetrics
from .model import LearnedModel
from .snapshot import TableSnapshot

log = logging.getLogger("zeta.router.tables")

MAX_EVENT_BYTES = 8 * 1024 * 1024
"""A watch event is one JSON line; a ConfigMap is at most 1 MiB."""


class TableStore:
    """Holds the current snapshot; `current` is None until the first valid table."""

    def __init__(
        self,
        metrics: RouterMetrics,
        *,
        model: LearnedModel | None,
        replicas: int = 1,
        on_swap: Callable[[TableSnapshot], None] | None = None,
    ) -> None:
        """``model``: the learned classifier every snapshot uses; None for the rule classifier; ``replicas``:
        router replicas sharing the endpoints (`snapshot.replica_share`)."""
        self.current: TableSnapshot | None = None
        self._model = model
        self._replicas = replicas
        self._metrics = metrics
        self._on_swap = on_swap
        self._last_offered: bytes | None = None

    def offer(self, text: str | bytes, *, source: str) -> bool:
        """Validate and publish; False (and the old table kept) when it is invalid or unchanged."""
        raw = text.encode() if isinstance(text, str) else text
        if raw == self._last_offered:
            return False
        self._last_offered = raw
        try:
            snapshot = TableSnapshot.build(
                RoutingTable.from_json(raw), model=self._model, replicas=self._replicas
            )
        except ValueError as e:  # pydantic.ValidationError and json.JSONDecodeError are ValueErrors
            self.reject(f"{type(e).__name__}: {e}", source=source)
            return False
        self.current = snapshot  # the swap: requests in flight keep the snapshot they read
        self._metrics.table_reloads.labels("ok").inc()
        self._metrics.table_version.set(snapshot.version)
        log.info(
            "routing table loaded",
            extra={"fields": {"source": source, "version": snapshot.version, "hash": snapshot.table.hash}},
        )
        if self._on_swap is not None:
            self._on_swap(snapshot)
        return True

    def reject(self, reason: str, *, source: str) -> None:
        self._metrics.table_reloads.labels("invalid").inc()
        kept = self.current.version if self.current else None
        log.warning(
            "routing table rejected, keeping the last good one",
            extra={"fields": {"source": source, "reason": reason[:1000], "kept_version": kept}},
        )

    def watch_started(self, *, resumed: bool) -> None:
        self._metrics.table_watches.labels("resume" if resumed else "list").inc()

    def error(self, reason: str, *, source: str) -> None:
        self._metrics.table_reloads.labels("error").inc()
        log.warning(
            "routing table source failed", extra={"fields": {"source": source, "reason": reason[:1000]}}
        )


async def watch_file(path: Path, store: TableStore, *, interval: float = 0.5) -> None:
    source = f"file:{path}"
    seen: tuple[int, int, int] | None = None
    missing_reported = False
    while True:
        try:
            before = _signature(path)
            if before != seen:
                text = path.read_bytes()
                if _signature(path) == before:  # else it changed while we read: read it again next time
                    seen = before
                    store.offer(text, source=source)
            missing_reported = False
        except OSError as e:
            if not missing_reported:
                store.error(f"cannot read the table file: {e.strerror}", source=source)
                missing_reported = True
            seen = None
        await asyncio.sleep(interval)


def _signature(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class _Gone(Exception):
    """The resourceVersion is too old (410): list again."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Backoff:
    def __init__(self, *, first: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self._first, self._cap = first, cap
        self._next = first
        self._rng = rng or random.Random()

    def reset(self) -> None:
        self._next = self._first

    def next(self) -> float:
        delay = self._next * self._rng.uniform(0.8, 1.2)
        self._next = min(self._cap, self._next * 2)
        return delay


async def watch_configmap(
    credentials: KubeCredentials, namespace: str, name: str, store: TableStore, *, watch_seconds: int = 240
) -> None:
    """Run forever: keep ``store`` fed from the ConfigMap ``namespace/name``; each watch request lasts
    ``watch_seconds`` (server side), then the watch resumes from the last resourceVersion."""
    source = f"configmap:{namespace}/{name}"
    backoff = Backoff()
    version: str | None = None
    retried = False
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as session:
        watcher = _ConfigMapWatch(session, credentials, namespace, name, store, source, watch_seconds)
        while True:
            try:
                resumed = version is not None
                if version is None:
                    version = await watcher.list()
                store.watch_started(resumed=resumed)
                retried = False  # these credentials were accepted
                version = await watcher.watch(version)
                backoff.reset()
            except _Gone:
                log.info("watch expired (410), listing again", extra={"fields": {"source": source}})
                version = None
            except (aiohttp.ClientError, TimeoutError, ApiError, KubeConfigError, ValueError) as e:
                store.error(f"{type(e).__name__}: {e}", source=source)
                rejected = isinstance(e, ApiError) and e.status == 401
                # A rotated token file or a renewed certificate: new credentials are tried at once, but only
                # once before the next backoff (an exec plugin may hand out a new, equally rejected token each time).
                if rejected and _reload(credentials, store, source) and not retried:
                    retried = True
                    continue
                retried = False
                await asyncio.sleep(backoff.next())


def _reload(credentials: KubeCredentials, store: TableStore, source: str) -> bool:
    """Load the credentials again; True if they changed."""
    try:
        return credentials.reload()
    except KubeConfigError as e:
        store.error(str(e), source=source)
        return False


class _ConfigMapWatch:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        creds: KubeCredentials,
        namespace: str,
        name: str,
        store: TableStore,
        source: str,
        watch_seconds: int,
    ) -> None:
        self._session = session
        self._watch_seconds = watch_seconds
        self._creds = creds
        self._path = f"/api/v1/namespaces/{quote(namespace, safe='')}/configmaps"
        self._selector = f"metadata.name={name}"
        self._store = store
        self._source = source

    @property
    def _url(self) -> str:
        return self._creds.server + self._path  # read each time: a reload may move the server

    async def list(self) -> str:
        params = {"fieldSelector": self._selector}
        async with self._session.get(
            self._url, params=params, headers=self._creds.headers(), **self._creds.request_options()
        ) as resp:
            if resp.status != 200:
                raise ApiError(resp.status, await _status_message(resp))
            body = await resp.json()
        items = body.get("items") or []
        if items:
            self._apply(items[0])
        else:
            log.warning("the ConfigMap does not exist (yet)", extra={"fields": {"source": self._source}})
        return str(body["metadata"]["resourceVersion"])

    async def watch(self, version: str) -> str:
        """Follow events from ``version``; returns the last resourceVersion seen when the server ends it."""
        params = {
            "fieldSelector": self._selector,
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._watch_seconds),
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=self._watch_seconds + 30)
        async with self._session.get(
            self._url,
            params=params,
            headers=self._creds.headers(),
            timeout=timeout,
            **self._creds.request_options(),
        ) as resp:
            if resp.status == 410:
                raise _Gone()
            if resp.status != 200:
                raise ApiError(resp.status, await _status_message(resp))
            async for line in _lines(resp.content):
                version = self._event(json.loads(line), version)
        return version

    def _event(self, event: dict[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone()
            raise ApiError(int(obj.get("code") or 500), str(obj.get("message", "watch error")))
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind in ("ADDED", "MODIFIED"):
            self._apply(obj)
        elif kind == "DELETED":
            log.warning(
                "the ConfigMap was deleted; keeping the last good table",
                extra={"fields": {"source": self._source}},
            )
        return new_version

    def _apply(self, configmap: dict[str, Any]) -> None:
        text = (configmap.get("data") or {}).get(CONFIGMAP_KEY)
        if text is None:
            self._store.reject(f"the ConfigMap has no {CONFIGMAP_KEY!r} key", source=self._source)
            return
        self._store.offer(text, source=self._source)


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Newline-delimited JSON events of any size up to MAX_EVENT_BYTES (StreamReader.readline caps at 64 KiB)."""
    buffer = bytearray()
    async for chunk in stream.iter_any():
        buffer += chunk
        while (end := buffer.find(b"\n")) != -1:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                yield line
        if len(buffer) > MAX_EVENT_BYTES:
            raise ValueError(f"a watch event is larger than {MAX_EVENT_BYTES} bytes")
    if buffer.strip():
        yield bytes(buffer)


async def _status_message(resp: aiohttp.ClientResponse) -> str:
    text = await resp.text(errors="replace")
    try:
        return str(json.loads(text).get("message", text))[:500]
    except (ValueError, AttributeError):
        return text[:500]
