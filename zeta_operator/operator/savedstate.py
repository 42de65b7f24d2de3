"""The controller's memory across restarts: `ControllerState` saved next to the routing table it produced.

Saved as JSON in an annotation of the routing-table ConfigMap (`routestore.STATE_ANNOTATION`)::

    {"version": 1, "state": {<ControllerState.to_json() without "weights">}}

The weights are left out because the table holds them (and the table is what the routers follow). The text is
bounded (`MAX_BYTES`; a larger state is not saved and a restart falls back to the table's weights), and saved with
every table write, whenever a flag changes (offloading, overloaded, slowed, stale fallback, metrics lost or back) and
otherwise at most every `SAVE_EVERY` seconds, so a steady loop does not rewrite its ConfigMap every cycle. A
state that cannot be read (another format version, bad JSON) is ignored: the caller logs why and rebuilds from
the table, as before this existed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from .weights import ControllerState

FORMAT_VERSION = 1
MAX_BYTES = 64 * 1024
"""An annotation budget well inside the API server's 256 KiB for all annotations (about 1,000 backends; fewer
when the classes list many fallbacks, whose smoothed views per class are saved too)."""
SAVE_EVERY = 30.0
"""Seconds after which a state whose flags did not change is saved anyway (smoothed loads move slowly)."""


class Unreadable(ValueError):
    """The saved text is not a state this version can use."""


def encode(state: ControllerState) -> str | None:
    """The annotation text, or None when it would exceed `MAX_BYTES`."""
    body = state.to_json()
    body.pop("weights", None)
    text = json.dumps({"version": FORMAT_VERSION, "state": body}, separators=(",", ":"), sort_keys=True)
    return text if len(text.encode()) <= MAX_BYTES else None


def decode(text: str) -> ControllerState:
    """The saved state (without weights); raises `Unreadable`."""
    if len(text.encode()) > MAX_BYTES:
        raise Unreadable(f"larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError as e:
        raise Unreadable(f"not JSON: {e}") from e
    if not isinstance(data, Mapping) or not isinstance(data.get("state"), Mapping):
        raise Unreadable("no state object")
    if data.get("version") != FORMAT_VERSION:
        raise Unreadable(f"format version {data.get('version')!r}, this operator reads {FORMAT_VERSION}")
    return ControllerState.from_json(data["state"])


def resume(saved: ControllerState, weights: Mapping[str, Mapping[str, float]], now: float) -> ControllerState:
    """The state to continue from after a restart: the saved memory with the live table's weights.

    If measurements were good when it was saved, they count as good until now (as `from_table_weights` does):
    the operator was away, the measurements were not bad, so a static fallback waits a full staleAfter. If an
    outage was already under way, its clock keeps running.
    """
    measuring = saved.last_good_at is not None and saved.last_good_at == saved.decided_at
    return dataclasses.replace(
        saved,
        weights={str(c): dict(w) for c, w in weights.items()},
        last_good_at=now if measuring else saved.last_good_at,
    )


def due(live_text: str | None, state: ControllerState, now: float) -> bool:
    """Whether ``state`` should be saved although the table did not change."""
    if live_text is None:
        return True
    try:
        saved = decode(live_text)
    except Unreadable:
        return True
    if _flags(saved) != _flags(state):
        return True
    return saved.decided_at is None or now - saved.decided_at >= SAVE_EVERY


def _flags(state: ControllerState) -> tuple[Any, ...]:
    """The discrete part of the memory: a change here must survive a restart at once."""
    return (
        sorted(c for c, on in state.offloading.items() if on),
        sorted(state.overloaded),
        sorted(state.slowed),
        state.stale,
        state.last_good_at is not None and state.last_good_at == state.decided_at,
    )
