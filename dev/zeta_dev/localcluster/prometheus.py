"""A real Prometheus server on loopback that scrapes targets the harness names at run time.

Targets are given through file-based service discovery, with the labels a Kubernetes scrape config would
attach (namespace, pod, container, backend), so the operator's default queries work unchanged.

With `WebSecurity` it serves https with basic auth, as a locked-down production Prometheus does (its
``--web.config.file``: ``tls_server_config`` and bcrypt-hashed ``basic_auth_users``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .certs import ServingCert
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


@dataclass(frozen=True)
class WebSecurity:
    """TLS with ``serving`` (which ``ca_file`` signed) and basic auth for ``users`` (name -> password)."""

    serving: ServingCert
    ca_file: Path
    users: Mapping[str, str] = field(repr=False)

    def web_config(self) -> dict[str, object]:
        import bcrypt  # a development dependency, needed only here

        hashed = {
            u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode() for u, p in self.users.items()
        }
        return {
            "tls_server_config": {
                "cert_file": str(self.serving.cert_file),
                "key_file": str(self.serving.key_file),
            },
            "basic_auth_users": hashed,
        }

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def authorization(self) -> str:
        user, password = next(iter(self.users.items()))
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Prometheus:
    """A running Prometheus; `set_targets` changes what it scrapes within about one second."""

    url: str
    workdir: Path
    process: ManagedProcess | None
    scrape_interval: str
    argv: list[str]
    web: WebSecurity | None = None

    @classmethod
    @contextlib.contextmanager
    def running(
        cls,
        *,
        scrape_interval: str = "1s",
        startup_timeout: float = 60.0,
        web: WebSecurity | None = None,
        listen_host: str = "127.0.0.1",
    ) -> Iterator[Prometheus]:
        """``web``: serve TLS and basic auth (``--web.config.file``); ``listen_host``: a node's bridge address,
        where its Pods reach Prometheus."""
        work = Path(tempfile.mkdtemp(prefix="zeta-prom-"))
        prom: Prometheus | None = None
        try:
            port = free_port(listen_host)
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
            argv = [
                str(prometheus_binary()),
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address={listen_host}:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ]
            if web is not None:
                (work / "web.yml").write_text(yaml.safe_dump(web.web_config()))
                argv.append(f"--web.config.file={work / 'web.yml'}")
            scheme = "https" if web is not None else "http"
            prom = cls(url=f"{scheme}://{listen_host}:{port}", workdir=work, process=None,
                       scrape_interval=scrape_interval, argv=argv, web=web)  # fmt: skip
            prom.start(timeout=startup_timeout)
            yield prom
        finally:
            if prom is not None and prom.process is not None:
                prom.process.stop()
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
        with self._open(url, timeout=5) as response:
            body = json.load(response)
        return list(body["data"]["result"])

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the server (again, after `stop`: same port, same data) and wait until it is ready."""
        self.process = ManagedProcess("prometheus", self.argv, log=self.workdir / "prometheus.log")
        ready = lambda: self._open(f"{self.url}/-/ready", timeout=2).status == 200  # noqa: E731
        wait_until(ready, timeout=timeout, what="Prometheus /-/ready", process=self.process)

    def stop(self) -> None:
        """Stop the server now (fault tests); `start` brings it back."""
        if self.process is not None:
            self.process.stop()

    def _open(self, url: str, *, timeout: float) -> Any:
        """GET as a trusted client: verifying the server's certificate and logging in, when it asks for that."""
        if self.web is None:
            return urllib.request.urlopen(url, timeout=timeout)
        request = urllib.request.Request(url, headers={"Authorization": self.web.authorization()})
        return urllib.request.urlopen(request, timeout=timeout, context=self.web.ssl_context())
