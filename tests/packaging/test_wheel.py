"""What users install holds the product only (API models, operator, router), and works outside the checkout.

Builds the wheel from the checkout, lists it, installs it into a clean virtualenv in a temporary directory
(dependencies from the package index or pip's cache) and runs the console scripts from there: the router
serves a routing table file, without the simulator, the harness or this checkout on its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from zeta_dev.localcluster.controlplane import REPO_ROOT
from zeta_dev.localcluster.processes import ManagedProcess, free_port
from zeta_dev.tables import one_backend_table
from zeta_dev.waiting import eventually

PRODUCT_PACKAGES = ("zeta_operator/api", "zeta_operator/operator", "zeta_operator/router")
"""The product's layers; subpackages of a layer (e.g. operator/weights) belong to it."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    uv = os.environ.get("ZETA_UV")  # hack/setup.sh's: builds in a build environment from its cache
    build = (
        [uv, "build", "-q", "--wheel", "-o"]
        if uv
        else [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w"]
    )
    subprocess.run([*build, str(out), str(REPO_ROOT)], check=True, cwd=out)
    (built,) = out.glob("zeta_operator-*.whl")
    return built


@pytest.fixture(scope="module")
def clean_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtualenv outside the checkout with only the wheel (and its dependencies) installed."""
    env_dir = tmp_path_factory.mktemp("clean-venv")
    uv = os.environ.get(
        "ZETA_UV"
    )  # hack/setup.sh's: the same install from its cache, minutes faster than pip
    if uv:
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(env_dir)], check=True, cwd=env_dir)
        install = [uv, "pip", "install", "-q", "--python", str(env_dir / "bin" / "python"), str(wheel)]
    else:
        venv.EnvBuilder(with_pip=True).create(env_dir)
        install = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)]
    subprocess.run(install, check=True, cwd=env_dir)
    yield env_dir / "bin"


def _in_product(directory: str) -> bool:
    return directory == "zeta_operator" or any(
        directory == layer or directory.startswith(f"{layer}/") for layer in PRODUCT_PACKAGES
    )


def _without_checkout() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _wheel_directories(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {os.path.dirname(name) for name in archive.namelist() if not name.startswith("zeta_operator-")}


def test_the_wheel_holds_the_product_and_nothing_else(wheel: Path) -> None:
    directories = _wheel_directories(wheel)
    layers = (*PRODUCT_PACKAGES, *(f"{layer}/" for layer in PRODUCT_PACKAGES))
    foreign = {
        d for d in directories if d != "zeta_operator" and not (d in layers or d.startswith(layers[3:]))
    }
    assert not foreign, sorted(foreign)
    assert set(PRODUCT_PACKAGES) <= directories  # all three layers are there
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    # The classifier's weights and the second opinion's head ship as package data.
    assert {"zeta_operator/router/classifier.json.gz", "zeta_operator/router/second_opinion.json"} <= names


def test_the_console_scripts_run_outside_the_checkout(clean_env: Path, tmp_path: Path) -> None:
    for script in ("zeta-router", "zeta-operator", "zeta-classify"):
        result = subprocess.run(
            [clean_env / script, "--help"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_without_checkout(),
        )
        assert result.returncode == 0, result.stderr
        assert script in result.stdout
    for forbidden in ("zeta_sim", "zeta_dev"):
        probe = subprocess.run(
            [clean_env / "python", "-c", f"import {forbidden}"],
            capture_output=True,
            cwd=tmp_path,
            env=_without_checkout(),
        )
        assert probe.returncode != 0, f"{forbidden} is importable from the product's environment"


def test_the_installed_zeta_classify_reads_its_shipped_weights(clean_env: Path, tmp_path: Path) -> None:
    """The weights ship in the wheel: the installed command classifies with the learned model."""
    result = subprocess.run(
        [
            clean_env / "zeta-classify",
            "--policy",
            str(REPO_ROOT / "manifests/samples/routingpolicy.yaml"),
            "-",
        ],
        input=json.dumps("is it worth refinancing a 3.1% mortgage at 4.5% to consolidate a car loan?") + "\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_without_checkout(),
    )
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["classifiedBy"] == "model" and 0 < decision["confidence"] <= 1


def test_the_installed_router_serves_a_table_file(clean_env: Path, tmp_path: Path) -> None:
    routes = one_backend_table(policy="test/policy", model="general-4b")
    table_file = tmp_path / "routing-table.json"
    table_file.write_text(routes.to_json())
    port = free_port()
    router = ManagedProcess(
        "installed-router",
        [str(clean_env / "zeta-router"), "--listen", f"127.0.0.1:{port}", "--table-file", str(table_file)],
        log=tmp_path / "router.log",
        env=_without_checkout(),
    )
    try:
        models = eventually(
            lambda: json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5)),
            timeout=60,
            what="the installed router to serve /v1/models",
            process=router,
        )
        assert "general-4b" in json.dumps(models), models
    finally:
        router.stop()
