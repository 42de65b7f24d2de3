"""The live terminal view: per-backend load and per-class weights, refreshed every two seconds, with the
operator's decisions (offload started/stopped) as they happen."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable

from ..localcluster.cluster import Cluster
from ..localcluster.fleet import list_objects, policy_status, read_table
from .report import Sample, Timeline

REFRESH = 2.0


class LiveView:
    def __init__(self, cluster: Cluster, namespace: str, policy: str, configmap: str, *,
                 phase: Callable[[], str], live: bool) -> None:  # fmt: skip
        self.cluster, self.namespace, self.policy, self.configmap = cluster, namespace, policy, configmap
        self.phase = phase
        self.live = live and sys.stdout.isatty()
        self.timeline = Timeline()
        self._stopped = asyncio.Event()
        self._offloading: dict[str, bool] = {}

    def share(self, task_class: str, backend: str) -> float | None:
        """``backend``'s weight for ``task_class`` in the routing table, as last seen (None: not seen yet)."""
        if not self.timeline.samples:
            return None
        return self.timeline.samples[-1].weights.get(task_class, {}).get(backend)

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        start = time.monotonic()
        while not self._stopped.is_set():
            t = time.monotonic() - start
            try:
                sample, decisions = await asyncio.to_thread(self._look, t)
            except Exception as e:  # a view must never break the demo
                print(f"    (view: {type(e).__name__}: {e})", flush=True)
            else:
                self.timeline.samples.append(sample)
                self._show(sample, decisions)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), REFRESH)

    def _look(self, t: float) -> tuple[Sample, list[str]]:
        table = read_table(self.cluster, self.namespace, self.configmap)
        weights = {c.name: dict(c.weights) for c in table.classes} if table else {}
        loads: dict[str, float | None] = {}
        for mb in list_objects(self.cluster, "modelbackends", self.namespace):
            loads[mb["metadata"]["name"]] = (mb.get("status") or {}).get("load")
        status = policy_status(self.cluster, self.namespace, self.policy)
        decisions = []
        for c in status.get("classes", []):
            now, before = bool(c.get("offloading")), self._offloading.get(c["name"], False)
            if now != before:
                why = "; ".join(
                    f"{b}: {r}" for b, r in sorted(c.get("reasons", {}).items()) if r.startswith("offload")
                )
                decisions.append(
                    f"{'OFFLOAD' if now else 'RECOVERED'} {c['name']}" + (f" ({why})" if why else "")
                )
            self._offloading[c["name"]] = now
        return Sample(t, weights, loads, table.version if table else 0), decisions

    def _show(self, s: Sample, decisions: list[str]) -> None:
        lines = [f"t={s.t:5.0f}s  phase={self.phase():<6}  table v{s.table_version}"]
        lines.append(
            "  load   "
            + "  ".join(f"{b}={'-' if v is None else f'{v:.2f}'}" for b, v in sorted(s.loads.items()))
        )
        for name, shares in sorted(s.weights.items()):
            bars = "  ".join(
                f"{b}={w:.2f}" for b, w in sorted(shares.items(), key=lambda kv: -kv[1]) if w > 0
            )
            lines.append(f"  {name:<13}{bars}")
        lines += [f"  >> {d}" for d in decisions]
        if self.live:
            sys.stdout.write("\x1b[2J\x1b[H" + "\n".join(lines) + "\n")
        else:
            print("\n".join(lines), flush=True)
