"""Waiting on a condition with a deadline: the one polling helper of the harness, its tests and benchmarks.

Tests wait on conditions, never on fixed sleeps; the deadline is generous because a slow machine must make a
test slower, not red. A falsy answer or an exception means "not yet"; the last one is in the error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .localcluster.processes import ManagedProcess

T = TypeVar("T")


class StartupError(RuntimeError):
    """A component did not come up; the message carries the tail of its log."""


class TimedOut(StartupError, AssertionError):
    """The condition did not hold before the deadline (an AssertionError, so a test reports it as a failure)."""


def eventually(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    every: float = 0.05,
    process: ManagedProcess | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy and return that; fail early if ``process`` dies.

    Polls start ``every`` seconds apart and back off to at most half a second (or ``every``, if longer).
    """
    deadline = time.monotonic() + timeout
    delay, longest = every, max(every, 0.5)
    last: Any = None
    while True:
        try:
            last = check()
        except Exception as e:
            last = e
        else:
            if last:
                return last
        if process is not None and not process.alive():
            raise StartupError(
                f"{process.name} exited with code {process.popen.returncode} while waiting for {what}:\n"
                + process.log_tail()
            )
        if time.monotonic() > deadline:
            tail = f"\n{process.name} log:\n{process.log_tail()}" if process else ""
            raise TimedOut(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}{tail}")
        time.sleep(delay)
        delay = min(delay * 1.5, longest)


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, process: ManagedProcess | None = None
) -> None:
    """`eventually` for a readiness check whose value does not matter."""
    eventually(check, timeout=timeout, what=what, process=process)
