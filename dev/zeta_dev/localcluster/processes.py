"""Child processes that never outlive the harness: own process group, killed with their parent, logs on disk."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ..waiting import StartupError, wait_until

__all__ = ["ManagedProcess", "StartupError", "free_port", "metric_samples", "python_child_env", "wait_until"]

_PR_SET_PDEATHSIG = 1


_CHECKOUT = Path(__file__).resolve().parents[3]
SOURCE_ROOTS = (_CHECKOUT, _CHECKOUT / "sim", _CHECKOUT / "dev")
"""Where the product (`zeta_operator`), the simulator (`zeta_sim`) and this package (`zeta_dev`) live in a checkout."""


def python_child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a ``python -m zeta_operator.*`` or ``zeta_sim`` child: unbuffered output, and this
    checkout importable whether or not its packages are installed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*map(str, SOURCE_ROOTS), env.get("PYTHONPATH", "")) if p)
    return env


def metric_samples(text: str, name: str, labels: Mapping[str, str]) -> list[float]:
    """Values of the samples called ``name`` in a Prometheus text exposition whose labels include ``labels``."""
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ManagedProcess:
    """A child in its own session, whose output goes to ``log``; `stop` ends it and its children."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self.argv = [str(a) for a in argv]
        self.env = env
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def respawn(self) -> ManagedProcess:
        """The same command started again (same arguments, environment and log, which it appends to): a
        restart after `kill` or `stop`, e.g. on the same port."""
        return ManagedProcess(self.name, self.argv, log=self.log, env=self.env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the process group at once: a crash, with no chance to clean up or save anything."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # Children that ignored SIGTERM, or that the leader left behind, go now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
