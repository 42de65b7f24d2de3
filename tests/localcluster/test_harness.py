"""The harness leaves nothing behind: every process it started is gone and its temp directory removed,
also when the code inside the `with` block fails."""

from __future__ import annotations

import os
import signal

import pytest

from zeta_dev.localcluster.controlplane import ControlPlane, control_plane_binaries
from zeta_dev.localcluster.prometheus import Prometheus


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it is gone once reaped, which Popen.wait did.
    return False


def test_control_plane_cleans_up_even_when_the_body_fails() -> None:
    seen: dict[str, object] = {}
    with (
        pytest.raises(RuntimeError, match="boom"),
        ControlPlane.running(binaries=control_plane_binaries()) as cp,
    ):
        seen["pids"] = [p.pid for p in cp.processes]
        seen["workdir"] = cp.workdir
        assert len(cp.processes) == 3 and all(p.alive() for p in cp.processes)
        raise RuntimeError("boom")
    pids = seen["pids"]
    assert isinstance(pids, list) and all(_gone(pid) for pid in pids)
    assert not os.path.exists(str(seen["workdir"]))


def test_prometheus_cleans_up_even_when_killed_from_outside() -> None:
    with Prometheus.running() as prom:
        assert prom.process is not None
        pid, workdir = prom.process.pid, prom.workdir
        os.kill(pid, signal.SIGKILL)  # a crash must not make teardown fail
    assert _gone(pid)
    assert not workdir.exists()
