"""Fixtures for the router's process tests: real simulator processes and real router processes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from zeta_dev.launch.router import RunningRouter, start_router
from zeta_operator.api.table import RoutingTable

from .helpers import write_table

StartRouter = Callable[..., RunningRouter]


@pytest.fixture
def table_path(tmp_path: Path) -> Path:
    return tmp_path / "routing-table.json"


@pytest.fixture
def router_factory(table_path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StartRouter]:
    """start(table, *args) -> a router reading ``table_path``; every router stops at the end of the test.

    On failure the routers' logs are printed (they live in tmp_path)."""
    with contextlib.ExitStack() as stack:

        def start(content: RoutingTable | str | None, *args: str, wait_ready: bool = True) -> RunningRouter:
            if content is not None:
                write_table(table_path, content)
            return stack.enter_context(
                start_router(
                    table_file=table_path,
                    args=["--seed", "1", "--log-level", "info", *args],
                    log_dir=tmp_path / "logs",
                    wait_ready=wait_ready,
                )
            )

        try:
            yield start
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                for log in sorted((tmp_path / "logs").glob("router-*.log")):
                    print(f"--- {log.name} ---\n{log.read_text()[-6000:]}")
