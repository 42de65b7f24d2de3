"""The faults, one at a time under load, each brought back and followed until the system shows it recovered.

Each fault runs while `SteadyLoad` keeps sending; `run_fault` counts what happened to the requests sent from
the moment of the fault until recovery was seen. Waits are on conditions; ``dwell`` only sets how long a
fault lasts (at least ``requests`` requests finished, and ``seconds`` when a benchmark asks for longer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..waiting import eventually
from .load import Counts, Outcome, SteadyLoad
from .rig import Rig

TIMEOUT = 180.0
"""Generous: a slow, shared machine makes a run longer, not red."""
VICTIM = "general-4b"
"""The backend killed: preferred for chat and summarize, with capable fallbacks for both."""
TOGGLED = "coder-7b"
"""The backend whose pod goes NotReady and Ready again to make the operator write a new table on demand."""


@dataclass(frozen=True)
class Dwell:
    requests: int = 10
    seconds: float = 0.0


@dataclass
class FaultRun:
    fault: str
    counts: Counts
    outcomes: list[Outcome]
    recovery_seconds: float
    """From bringing the part back (or from the fault, for one left to recover alone) to recovery seen."""
    recovered: str


def dwell(load: SteadyLoad, since: float, how: Dwell) -> None:
    """Keep the fault in force until ``how.requests`` requests sent since ``since`` have finished and
    ``how.seconds`` have passed."""
    eventually(
        lambda: len(load.outcomes(since)) >= how.requests and time.monotonic() - since >= how.seconds,
        timeout=TIMEOUT + how.seconds,
        what=f"{how.requests} requests during the fault",
        every=0.2,
    )


def served_since(load: SteadyLoad, since: float, check: Callable[[Outcome], bool]) -> bool:
    return any(o.answered and check(o) for o in load.outcomes(since))


def change_reaches_router(rig: Rig, load: SteadyLoad) -> None:
    """The operator writes a new table (a pod going NotReady, then Ready) and the router serves it: proof that
    the operator writes and the router's watch delivers, after whatever fault came before."""
    for ready in (False, True):
        _toggle_and_follow(rig, load, ready=ready)


def _toggle_and_follow(rig: Rig, load: SteadyLoad, *, ready: bool) -> None:
    before = rig.watcher.latest_version()
    rig.set_pod_ready(TOGGLED, ready)
    eventually(lambda: rig.watcher.latest_version() > before and rig.has_endpoints(TOGGLED) == ready,
               timeout=TIMEOUT, what=f"a table with {TOGGLED} {'in' if ready else 'out of'} service")  # fmt: skip
    written, asked = rig.watcher.latest_version(), time.monotonic()
    eventually(lambda: served_since(load, asked, lambda o: (o.table_version or 0) >= written),
               timeout=TIMEOUT, what=f"the router serving table version {written}")  # fmt: skip


def baseline(rig: Rig, load: SteadyLoad, how: Dwell) -> tuple[float, str]:
    """No fault: the same load for the same time, to compare against."""
    dwell(load, time.monotonic(), how)
    return 0.0, "nothing to recover"


def backend(rig: Rig, load: SteadyLoad, how: Dwell) -> tuple[float, str]:
    """SIGKILL a simulator (its pod stays Ready: nothing tells the control plane); the router ejects it and
    moves requests that had no first byte yet to another backend. Then it starts again on the same port."""
    sim = rig.sims[VICTIM]
    ejections = rig.router.metric("zeta_router_ejections_total", backend=VICTIM)
    killed = time.monotonic()
    sim.process.kill()
    eventually(lambda: rig.router.metric("zeta_router_ejections_total", backend=VICTIM) > ejections,
               timeout=TIMEOUT, what=f"the router ejecting {VICTIM}")  # fmt: skip
    dwell(load, killed, how)
    sim.restart()
    back = time.monotonic()
    eventually(lambda: served_since(load, back, lambda o: o.backend == VICTIM),
               timeout=TIMEOUT, what=f"{VICTIM} answering through the router again")  # fmt: skip
    eventually(lambda: rig.weight("chat-simple", VICTIM) > 0.5, timeout=TIMEOUT,
               what=f"{VICTIM} holding most of chat-simple in the table")  # fmt: skip
    return (
        time.monotonic() - back,
        f"{VICTIM} answers again; chat-simple weight {rig.weight('chat-simple', VICTIM):.2f}",
    )


def operator(rig: Rig, load: SteadyLoad, how: Dwell) -> tuple[float, str]:
    """SIGKILL the operator in the middle of a cycle. Prometheus is frozen first (SIGSTOP), so every cycle
    waits out its 1 s query timeout between reading its inputs and writing its table, and the next one starts
    at once (interval 1 s); the kill comes as soon as one such timeout is counted, inside the following cycle.
    Prometheus thaws; once the operator is back, a pod goes NotReady and Ready again: the restarted operator
    must write both tables and the router serve them."""
    timeouts = rig.operator_metric("zeta_operator_query_errors_total", kind="timeout")
    killed = time.monotonic()
    with rig.prometheus_frozen():
        eventually(lambda: rig.operator_metric("zeta_operator_query_errors_total", kind="timeout") > timeouts,
                   timeout=TIMEOUT, what="a cycle timing out on the frozen Prometheus", every=0.01)  # fmt: skip
        rig.operator.process.kill()
    dwell(load, killed, how)
    rig.restart_operator()
    back = time.monotonic()
    change_reaches_router(rig, load)
    eventually(lambda: rig.weight("code-simple", TOGGLED) > 0.5, timeout=TIMEOUT,
               what=f"{TOGGLED} holding most of code-simple again")  # fmt: skip
    return time.monotonic() - back, "the restarted operator wrote tables without and with a pod, both served"


def apiserver(rig: Rig, load: SteadyLoad, how: Dwell) -> tuple[float, str]:
    """SIGKILL kube-apiserver (watches cut, no goodbye) and start it again on the same port and etcd. The
    router keeps serving its last table meanwhile; afterwards its watch and the operator carry on."""
    killed = time.monotonic()
    rig.control_plane.stop_apiserver(kill=True)
    dwell(load, killed, how)
    rig.control_plane.start_apiserver()
    back = time.monotonic()
    change_reaches_router(rig, load)
    return time.monotonic() - back, "a new table written and served"


def prometheus(rig: Rig, load: SteadyLoad, how: Dwell) -> tuple[float, str]:
    """SIGKILL Prometheus and start it again (same port, same data): the operator holds its weights while it
    is gone and reports metrics available again once it is back."""
    killed = time.monotonic()
    assert rig.prometheus.process is not None
    rig.prometheus.process.kill()
    eventually(lambda: rig.metrics_available() == "False", timeout=TIMEOUT, what="MetricsAvailable=False")
    dwell(load, killed, how)
    rig.prometheus.start()
    back = time.monotonic()
    eventually(lambda: rig.metrics_available() == "True", timeout=TIMEOUT, what="MetricsAvailable=True")
    return time.monotonic() - back, "MetricsAvailable=True again"


FAULTS: dict[str, Callable[[Rig, SteadyLoad, Dwell], tuple[float, str]]] = {
    "backend": backend,
    "operator": operator,
    "apiserver": apiserver,
    "prometheus": prometheus,
}


def run_fault(name: str, rig: Rig, load: SteadyLoad, how: Dwell) -> FaultRun:
    """Run one fault (or the baseline) and count the requests sent from its start until recovery was seen
    (waiting for those still in flight)."""
    fault = baseline if name == "baseline" else FAULTS[name]
    started = time.monotonic()
    recovery, recovered = fault(rig, load, how)
    ended = time.monotonic()
    eventually(lambda: load.settled(ended), timeout=TIMEOUT, what="the fault's requests finishing")
    outcomes = load.outcomes(started, ended)
    return FaultRun(name, Counts.of(outcomes), outcomes, recovery, recovered)
