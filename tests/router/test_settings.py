"""The router's settings come from one typed definition: flags, ZETA_ROUTER_* variables (flags win), defaults
from the dataclasses, durations as seconds, and a clear error naming the flag or variable for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeta_operator.router.__main__ import parse_args
from zeta_operator.router.settings import Ejection, RouterSettings, TableConfigMap, Timeouts


def test_defaults_are_the_dataclass_defaults() -> None:
    settings, level = parse_args(["--table-file", "t.json"])
    assert settings == RouterSettings(table_source=settings.table_source)
    assert settings.timeouts == Timeouts() and settings.ejection == Ejection()
    assert level == "info"


def test_flags_and_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZETA_ROUTER_TIMEOUT_FIRST_BYTE", "500ms")
    monkeypatch.setenv("ZETA_ROUTER_EJECT_TIME", "1m30s")
    monkeypatch.setenv("ZETA_ROUTER_ACCESS_LOG", "true")
    settings, _ = parse_args(
        ["--configmap", "ns/routes", "--kubeconfig", "/k", "--eject-time", "2s", "--listen", "[::1]:9000"]
    )
    assert settings.timeouts.first_byte == 0.5
    assert settings.ejection.base_seconds == 2.0  # the flag wins over the variable
    assert settings.access_log is True
    assert (settings.host, settings.port) == ("::1", 9000)
    assert settings.table_source == TableConfigMap(namespace="ns", name="routes", kubeconfig=Path("/k"))


@pytest.mark.parametrize(
    ("env", "argv", "message"),
    [
        ({"ZETA_ROUTER_TIMEOUT_TOTAL": "5x"}, [], "ZETA_ROUTER_TIMEOUT_TOTAL='5x'"),
        (
            {"ZETA_ROUTER_CLASSIFIER": "bogus"},
            [],
            "ZETA_ROUTER_CLASSIFIER='bogus': choose from learned, rules",
        ),
        ({}, ["--shutdown-grace", "0"], "--shutdown-grace: '0' must be above zero"),
        ({}, ["--drain-delay", "-1"], "--drain-delay: '-1' must not be negative"),
    ],
)
def test_bad_values_name_their_source(
    env: dict[str, str],
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit):
        parse_args(["--table-file", "t.json", *argv])
    assert message in capsys.readouterr().err
