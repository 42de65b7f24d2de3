"""Rendering the Helm chart and the kustomize manifests for tests/chart, with the helm the project builds from
pinned Go modules (hack/build-helm.sh) or HELM_BIN.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from zeta_dev.localcluster.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "zeta"
MANIFESTS = REPO / "manifests"
ALL_ON = Path(__file__).resolve().parent / "values-all-on.yaml"
MONITORING_CRDS = Path(__file__).resolve().parent / "crds"
BUILD_HELM = REPO / "hack" / "build-helm.sh"
HELM_HOME = (
    Path(tempfile.gettempdir()) / "zeta-helm"
)  # helm's cache and config: nothing from the machine leaks in

Doc = dict[str, Any]


def helm_binary() -> Path:
    """HELM_BIN when it names a binary, else the cached (or fresh) build of hack/build-helm.sh."""
    configured = os.environ.get("HELM_BIN")
    if configured and Path(configured).is_file():
        return Path(configured)
    out = subprocess.run(
        ["bash", str(BUILD_HELM)], check=True, stdout=subprocess.PIPE, text=True, timeout=1800
    ).stdout
    return Path(out.strip().splitlines()[-1])


class Helm:
    def __init__(self, binary: Path) -> None:
        self.binary = binary

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            **{f"HELM_{d.upper()}_HOME": str(HELM_HOME / d) for d in ("cache", "config", "data")},
        }
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, check=check, timeout=120, env=env
        )

    def lint(self, *values_files: Path) -> subprocess.CompletedProcess[str]:
        return self.run("lint", "--strict", str(CHART), *_values_args(values_files), check=False)

    def template(
        self,
        *,
        namespace: str,
        release: str = "zeta",
        values_files: Iterable[Path] = (),
        values: Mapping[str, Any] | None = None,
        include_crds: bool = False,
    ) -> list[Doc]:
        """The rendered documents; ``values`` (if any) is applied after ``values_files``."""
        with tempfile.TemporaryDirectory(prefix="zeta-values-") as tmp:
            files = [*values_files, *([write_values(Path(tmp), "values", values)] if values else [])]
            args = ["template", release, str(CHART), "--namespace", namespace, *_values_args(files)]
            if include_crds:
                args.append("--include-crds")
            return documents(self.run(*args).stdout)


def _values_args(files: Iterable[Path]) -> list[str]:
    return [arg for f in files for arg in ("--values", str(f))]


def documents(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def write_values(directory: Path, name: str, values: Mapping[str, Any]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(dict(values)))
    return path


def kustomize(cluster: Cluster, directory: Path = MANIFESTS) -> list[Doc]:
    return documents(cluster.kubectl("kustomize", str(directory)).stdout)


def dry_run_apply(cluster: Cluster, docs: list[Doc]) -> str:
    """Server-side dry-run of every document (admission, schema and strict field validation all run)."""
    result = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        input=yaml.safe_dump_all(docs),
        check=False,
    )
    assert result.returncode == 0, f"server-side dry-run failed:\n{result.stderr}"
    return result.stdout


def by_kind(docs: Iterable[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: Iterable[Doc], kind: str, name_suffix: str = "") -> Doc:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, (
        f"expected one {kind} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def identity(doc: Doc) -> tuple[str, str, str]:
    meta = doc["metadata"]
    return doc["kind"], meta.get("namespace", ""), meta["name"]
