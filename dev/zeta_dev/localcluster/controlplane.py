"""A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC on) and kube-controller-manager.

The binaries come from `hack/build-controlplane.sh` (built once from pinned Go modules, then cached) or from
``KUBEBUILDER_ASSETS``. Used by the tests (pytest fixtures) and by the local demo.

    with ControlPlane.running() as cp:
        print(cp.kubeconfig)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .processes import ManagedProcess, StartupError, free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[3]
"""The checkout: the harness runs from it (hack/ scripts, manifests/, the three source distributions)."""
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-controlplane.sh"
ADMIN_USER = "zeta-admin"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = "garbagecollector,namespace,serviceaccount,csrsigning"
"""kube-controller-manager loops worth running without nodes: owned objects and namespaces are cleaned up, and
approved CertificateSigningRequests for client certificates are signed (tests authenticate with them)."""
NODE_NAME = "zeta-node"
NODE_IDENTITIES = {
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),  # the Node authorizer scopes it to its own Pods
    "kube-proxy": ("system:kube-proxy", ""),  # bound to system:node-proxier by the bootstrap RBAC policy
    "kube-scheduler": ("system:kube-scheduler", ""),  # bound to system:kube-scheduler likewise
}
"""Static-token identities of the node's components: the built-in roles of a kubeadm cluster, no more."""


@dataclass(frozen=True)
class NodeAccess:
    """How the control plane serves a real node (see `zeta_dev.localcluster.node`).

    The apiserver binds and advertises on ``address`` (the node's bridge), so Pods reach it through the
    ``kubernetes`` Service; it authenticates to the kubelet with a client certificate the kubelet trusts.
    """

    address: str
    kubelet_client_cert: Path
    kubelet_client_key: Path


def control_plane_binaries(*, quiet: bool = False) -> Path:
    """The directory with etcd and kube-apiserver: KUBEBUILDER_ASSETS, or the cached (or fresh) build."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / "kube-apiserver").exists() and (Path(assets) / "etcd").exists():
        return Path(assets)
    if not BUILD_SCRIPT.exists():
        raise FileNotFoundError(
            "no control plane binaries: set KUBEBUILDER_ASSETS to a directory with etcd and kube-apiserver, "
            f"or run from a Zeta checkout (missing {BUILD_SCRIPT})"
        )
    stderr = subprocess.DEVNULL if quiet else None
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, stderr=stderr, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


@dataclass
class ControlPlane:
    """A running control plane; `kubeconfig` gives cluster-admin through a static bearer token."""

    workdir: Path
    server: str
    ca_file: Path
    admin_token: str
    kubeconfig: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    component_tokens: dict[str, str] = field(default_factory=dict)
    """With a node: a bearer token for each of the node's components (NODE_IDENTITIES)."""

    @classmethod
    @contextlib.contextmanager
    def running(
        cls,
        *,
        binaries: Path | None = None,
        controllers: bool = True,
        workdir: Path | None = None,
        startup_timeout: float = 120.0,
        node: NodeAccess | None = None,
    ) -> Iterator[ControlPlane]:
        """Start everything, yield, and always stop every process and remove the temp directory.

        With ``node``, the apiserver serves on the node's address with the Node authorizer, and
        kube-controller-manager runs its default controllers (Deployments, ReplicaSets, EndpointSlices...).
        """
        bin_dir = binaries or control_plane_binaries()
        own_dir = workdir is None
        work = Path(tempfile.mkdtemp(prefix="zeta-cp-")) if workdir is None else workdir
        cp: ControlPlane | None = None
        procs: list[ManagedProcess] = []
        try:
            for attempt in range(3):
                # free_port() can lose a port to another process before etcd binds it: start again elsewhere.
                here = work if attempt == 0 else Path(tempfile.mkdtemp(prefix="retry-", dir=work))
                try:
                    cp = cls._start(
                        bin_dir, here, procs, controllers=controllers, timeout=startup_timeout, node=node
                    )
                    break
                except StartupError as e:
                    if "address already in use" not in str(e) or attempt == 2:
                        raise
                    for proc in reversed(procs):
                        proc.stop()
                    procs.clear()
            assert cp is not None
            yield cp
        finally:
            for proc in reversed(procs):
                proc.stop()
            if own_dir:
                shutil.rmtree(work, ignore_errors=True)

    @classmethod
    def _start(
        cls,
        bin_dir: Path,
        work: Path,
        procs: list[ManagedProcess],
        *,
        controllers: bool,
        timeout: float,
        node: NodeAccess | None,
    ) -> ControlPlane:
        logs = work / "logs"
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = ManagedProcess(
            "etcd",
            [
                bin_dir / "etcd",
                "--name=zeta",
                f"--data-dir={work / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=zeta=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",  # a throwaway test store: durability buys nothing, fsync costs seconds
                "--log-level=warn",
            ],
            log=logs / "etcd.log",
        )
        procs.append(etcd)
        wait_until(
            lambda: _get(f"{etcd_url}/health") == 200, timeout=timeout, what="etcd /health", process=etcd
        )

        pki = work / "pki"
        pki.mkdir(parents=True)
        sa_key = pki / "sa.key"
        _make_rsa_key(sa_key)
        client_ca, client_ca_key = pki / "client-ca.crt", pki / "client-ca.key"
        _make_client_ca(client_ca, client_ca_key)
        token = secrets.token_urlsafe(32)
        component_tokens = {name: secrets.token_urlsafe(32) for name in NODE_IDENTITIES} if node else {}
        tokens = pki / "tokens.csv"
        tokens.touch(mode=0o600)
        tokens.write_text(
            f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
            + "".join(
                f'{component_tokens[name]},{user},{user},"{groups}"\n'
                for name, (user, groups) in NODE_IDENTITIES.items()
                if name in component_tokens
            )
        )
        address = node.address if node else "127.0.0.1"
        node_flags = (
            [
                "--authorization-mode=Node,RBAC",
                f"--kubelet-client-certificate={node.kubelet_client_cert}",
                f"--kubelet-client-key={node.kubelet_client_key}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
            if node
            else ["--authorization-mode=RBAC"]
        )

        apiserver = ManagedProcess(
            "kube-apiserver",
            [
                bin_dir / "kube-apiserver",
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={pki}",
                f"--secure-port={api_port}",
                f"--bind-address={address}",
                f"--advertise-address={address}",
                "--service-cluster-ip-range=10.96.0.0/16",
                *node_flags,
                f"--token-auth-file={tokens}",
                f"--client-ca-file={client_ca}",  # client certificates the CSR signer below issues
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
            ],
            log=logs / "kube-apiserver.log",
        )
        procs.append(apiserver)
        server = f"https://{address}:{api_port}"
        ca_file = pki / "apiserver.crt"
        wait_until(
            ca_file.exists, timeout=timeout, what="the apiserver's serving certificate", process=apiserver
        )
        ready = lambda: _get(f"{server}/readyz", token=token, ca_file=ca_file) == 200  # noqa: E731
        wait_until(ready, timeout=timeout, what="kube-apiserver /readyz", process=apiserver)

        kubeconfig = work / "kubeconfig"
        write_kubeconfig(kubeconfig, server=server, ca_file=ca_file, token=token, user=ADMIN_USER)
        if controllers:
            kcm = ManagedProcess(
                "kube-controller-manager",
                [
                    bin_dir / "kube-controller-manager",
                    f"--kubeconfig={kubeconfig}",
                    f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}",
                    # A node needs the default set (Deployments, ReplicaSets, EndpointSlices, root CA...).
                    f"--controllers={'*' if node else CONTROLLERS}",
                    *([f"--service-account-private-key-file={sa_key}"] if node else []),
                    "--leader-elect=false",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={free_port()}",
                    f"--cert-dir={work / 'kcm-pki'}",
                    f"--root-ca-file={ca_file}",
                    f"--cluster-signing-kube-apiserver-client-cert-file={client_ca}",
                    f"--cluster-signing-kube-apiserver-client-key-file={client_ca_key}",
                ],
                log=logs / "kube-controller-manager.log",
            )
            procs.append(kcm)
        return cls(
            workdir=work,
            server=server,
            ca_file=ca_file,
            admin_token=token,
            kubeconfig=kubeconfig,
            processes=procs,
            component_tokens=component_tokens,
        )

    def stop_apiserver(self, *, kill: bool = False) -> None:
        """Stop kube-apiserver (SIGTERM, or SIGKILL with ``kill``); etcd and everything else keep running."""
        self._apiserver().kill() if kill else self._apiserver().stop()

    def start_apiserver(self, *, timeout: float = 120.0) -> None:
        """Start kube-apiserver again after `stop_apiserver`: same flags, so the same port, certificates,
        tokens and etcd; clients reconnect to the address they know. Returns once /readyz answers."""
        old = self._apiserver()
        new = old.respawn()
        self.processes[self.processes.index(old)] = new  # stopped with the rest when the control plane ends
        ready = lambda: _get(f"{self.server}/readyz", token=self.admin_token, ca_file=self.ca_file) == 200  # noqa: E731
        wait_until(ready, timeout=timeout, what="kube-apiserver /readyz after a restart", process=new)

    def _apiserver(self) -> ManagedProcess:
        return next(p for p in self.processes if p.name == "kube-apiserver")


def write_kubeconfig(
    path: Path, *, server: str, ca_file: Path, token: str, user: str, namespace: str = "default"
) -> None:
    """A kubeconfig with one context that authenticates with a bearer token (0600: it holds a secret)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "zeta-local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": f"{user}@zeta-local",
                "context": {"cluster": "zeta-local", "user": user, "namespace": namespace},
            }
        ],
        "current-context": f"{user}@zeta-local",
    }
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _make_rsa_key(path: Path) -> None:
    """The ServiceAccount token signing key (openssl is on every machine that has a shell)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StartupError(
            "openssl is needed to make the ServiceAccount signing key (apt-get install openssl)"
        )
    subprocess.run([openssl, "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
    path.chmod(0o600)


def _make_client_ca(cert: Path, key: Path) -> None:
    """The CA that signs client certificates (kubernetes.io/kube-apiserver-client CSRs) and that the apiserver
    trusts for them."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StartupError("openssl is needed to make the client CA (apt-get install openssl)")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7", "-subj", "/CN=zeta-local-client-ca",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)


def _get(url: str, *, token: str | None = None, ca_file: Path | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    with urllib.request.urlopen(request, timeout=5, context=context) as response:
        return int(response.status)
