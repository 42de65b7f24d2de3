"""A real Prometheus server on loopback that scrapes targets the harness names at run time.

Targets are given through file-based service discovery, with the labels a Kubernetes scrape config would
attach (namespace, pod, container, backend), so the operator's default queries work unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from .controlplane import REPO_ROOT
from .processes import ManagedProcess, free_port, wait_until

INSTALL_SCRIPT = REPO_ROOT / "hack" / "install-prometheus.sh"


def prometheus_binary() -> Path:
    """PROMETHEUS_BIN, one on PATH, or the one hack/install-prometheus.sh installs."""
    configured = os.environ.get("PROMETHEUS_BIN")
    if configured:
        return Path(configured)
    found = shutil.which("prometheus")
    if found:
        return Path(found)
    out = subprocess.run(["bash", str(INSTALL_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


@dataclass
class Prometheus:
    """A running Prometheus; `set_targets` changes what it scrapes within about one second."""

    url: str
    workdir: Path
    process: ManagedProcess
    scrape_interval: str

    @classmethod
    @contextlib.contextmanager
    def running(cls, *, scrape_interval: str = "1s", startup_timeout: float = 60.0) -> Iterator[Prometheus]:
        work = Path(tempfile.mkdtemp(prefix="zeta-prom-"))
        process: ManagedProcess | None = None
        try:
            port = free_port()
            (work / "targets").mkdir()
            config = {
                "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
                "scrape_configs": [
                    {
                        "job_name": "zeta",
                        "scrape_timeout": scrape_interval,
                        "file_sd_configs": [
                            {"files": [str(work / "targets" / "*.json")], "refresh_interval": "1s"}
                        ],
                    }
                ],
            }
            (work / "prometheus.yml").write_text(yaml.safe_dump(config))
            process = ManagedProcess(
                "prometheus",
                [
                    prometheus_binary(),
                    f"--config.file={work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={work / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                log=work / "prometheus.log",
            )
            url = f"http://127.0.0.1:{port}"
            ready = lambda: _status(f"{url}/-/ready") == 200  # noqa: E731
            wait_until(ready, timeout=startup_timeout, what="Prometheus /-/ready", process=process)
            yield cls(url=url, workdir=work, process=process, scrape_interval=scrape_interval)
        finally:
            if process is not None:
                process.stop()
            shutil.rmtree(work, ignore_errors=True)

    def set_targets(self, group: str, targets: Mapping[str, Mapping[str, str]]) -> None:
        """Scrape ``host:port`` -> labels under a named group, replacing that group's previous targets."""
        entries = [{"targets": [address], "labels": dict(labels)} for address, labels in targets.items()]
        path = self.workdir / "targets" / f"{group}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(path)  # atomic: Prometheus never reads half a file

    def query(self, promql: str) -> list[dict[str, object]]:
        """Instant query; the raw result list (for tests)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        return list(body["data"]["result"])

    def stop(self) -> None:
        """Stop the server now (fault tests); the context manager still cleans up."""
        self.process.stop()


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=2) as response:
        return int(response.status)
