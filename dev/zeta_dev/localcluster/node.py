"""One real Kubernetes node next to the local control plane: containerd, CNI bridge, kubelet, kube-proxy,
kube-scheduler, and the full kube-controller-manager. Root only (Linux).

Everything lives on this machine: a bridge the harness creates (``zeta0``, 10.244.0.1/24) carries the Pods, the
apiserver serves on the bridge's address so Pods reach it through the ``kubernetes`` Service, and nothing is
masqueraded out of the machine (IP forwarding is left as it is; Pods reach the host, each other, and Services
whose endpoints are on the host). containerd has its own root, state and socket in the node's temp directory;
the machine's own containerd (if any) is never touched.

    with Node.running(images=build_images()) as node:
        node.cluster.kubectl("get", "nodes")

Teardown runs even when the body fails: Pods deleted through the kubelet (so CNI releases their addresses and
network namespaces), processes stopped by PID, containerd's shims, mounts, the bridge, the kube-proxy and CNI
iptables chains, the kubelet's cgroups and the temp directory removed; `leftovers` lists whatever remains.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .cluster import Cluster
from .controlplane import BUILD_SCRIPT, NODE_NAME, REPO_ROOT, ControlPlane, NodeAccess, write_kubeconfig
from .processes import ManagedProcess, StartupError, free_port, wait_until

BRIDGE = "zeta0"
GATEWAY = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
SERVICE_SUBNET = "10.96.0.0/16"
"""The apiserver's --service-cluster-ip-range (ClusterIPs, kube-proxy's DNAT)."""
CNI_NETWORK = "zeta"
CGROUP_ROOT = "/zeta-node"
"""The kubelet's cgroup parent (cgroupfs driver): everything it creates is under it, so teardown finds it all."""
CGROUP_FS = Path("/sys/fs/cgroup")
LOCK_FILE = Path("/run/zeta-node.lock")
"""One node per machine: kube-proxy's iptables chains and the bridge are machine-wide."""
NETNS_DIR = Path("/run/netns")
CHAIN_PREFIXES = ("KUBE-", "CNI-")
PACKAGES_SCRIPT = REPO_ROOT / "hack" / "install-node-packages.sh"
IMAGES_SCRIPT = REPO_ROOT / "hack" / "build-images.sh"
CNI_BIN_DIR = Path("/usr/lib/cni")
NODE_BINARIES = ("kubelet", "kube-proxy", "kube-scheduler")


def unsupported_reason() -> str | None:
    """Why a node cannot run here, or None."""
    if os.uname().sysname != "Linux":
        return "a node needs Linux"
    if os.geteuid() != 0:
        return "a node needs root (containerd, CNI, iptables, mounts); run the node tests as root, as CI does"
    return None


def install_packages() -> None:
    """containerd, runc, CNI plugins, iptables, conntrack, buildah, debootstrap (apt-get, only what is missing)."""
    subprocess.run(["bash", str(PACKAGES_SCRIPT)], check=True)


def node_binaries() -> Path:
    """The control plane and kubelet, kube-proxy, kube-scheduler from the same pinned module (built once)."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and all((Path(assets) / b).exists() for b in NODE_BINARIES):
        return Path(assets)
    env = {k: v for k, v in os.environ.items() if k != "KUBEBUILDER_ASSETS"}
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--node"], check=True, stdout=subprocess.PIPE, text=True, env=env
    ).stdout
    return Path(out.strip().splitlines()[-1])


@dataclass(frozen=True)
class Image:
    name: str  # zeta, zeta-sim, zeta-pause
    reference: str  # localhost/zeta:<key>
    archive: Path  # a docker-archive the node's containerd imports

    @property
    def repository(self) -> str:
        return self.reference.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.reference.rsplit(":", 1)[1]


def build_images() -> dict[str, Image]:
    """The images from the real Dockerfile on a local Debian base (hack/build-images.sh, cached)."""
    out = subprocess.run(["bash", str(IMAGES_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True).stdout
    images = {}
    for line in out.strip().splitlines():
        name, reference, archive = line.split()
        images[name] = Image(name, reference, Path(archive))
    return images


@dataclass
class Node:
    """A running node; `cluster` is the admin handle on its control plane."""

    workdir: Path
    control_plane: ControlPlane
    cluster: Cluster
    containerd_socket: Path
    binaries: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, *, images: dict[str, Image], binaries: Path | None = None, timeout: float = 180.0
    ) -> Iterator[Node]:
        """Start the node with ``images`` imported (`build_images`; ``zeta-pause`` is the sandbox image), yield,
        and always tear everything down."""
        reason = unsupported_reason()
        if reason:
            raise StartupError(reason)
        bin_dir = binaries or node_binaries()
        with _machine_lock(), contextlib.ExitStack() as stack:
            work = Path(tempfile.mkdtemp(prefix="zeta-node-"))
            netns_before = _netns()
            stack.callback(_teardown, work, bin_dir, netns_before)
            _make_bridge()
            pki = _make_kubelet_pki(work / "pki")
            access = NodeAccess(
                address=GATEWAY,
                kubelet_client_cert=pki / "apiserver-kubelet-client.crt",
                kubelet_client_key=pki / "apiserver-kubelet-client.key",
            )
            cp = stack.enter_context(
                ControlPlane.running(binaries=bin_dir, node=access, startup_timeout=timeout)
            )
            cluster = Cluster(kubeconfig=cp.kubeconfig, kubectl_binary=bin_dir / "kubectl")
            node = cls(work, cp, cluster, work / "containerd" / "containerd.sock", bin_dir)
            # Pods go first at teardown (while kubelet and containerd still run), before the control plane.
            stack.callback(node._stop)
            node._start(images, timeout=timeout)
            yield node

    # --- start ------------------------------------------------------------------------------------------------

    def _start(self, images: dict[str, Image], *, timeout: float) -> None:
        pause = images["zeta-pause"]
        self._start_containerd(sandbox_image=pause.reference, timeout=timeout)
        for image in images.values():
            self.ctr("images", "import", "--no-unpack", str(image.archive))
        self._write_cni_config()
        kubelet = self._start_kubelet()
        self._start_kube_proxy()
        self._start_scheduler()
        core = self.cluster.kubectl
        wait_until(
            lambda: '"True"' in core("get", "node", NODE_NAME, "-o",
                                     'jsonpath="{.status.conditions[?(@.type=="Ready")].status}"',
                                     check=False).stdout,
            timeout=timeout, what=f"node {NODE_NAME} Ready", process=kubelet,
        )  # fmt: skip
        # Pods need their namespace's ServiceAccount and kube-root-ca.crt (kube-controller-manager makes them).
        wait_until(
            lambda: core("get", "serviceaccount", "default", check=False).returncode == 0,
            timeout=timeout, what="the default ServiceAccount",
        )  # fmt: skip

    def _start_containerd(self, *, sandbox_image: str, timeout: float) -> ManagedProcess:
        base = self.workdir / "containerd"
        config = f"""
version = 2
root = "{base / "root"}"
state = "{base / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{base / "containerd.sock.ttrpc"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # This machine lacks CAP_SYS_RESOURCE: without it every sandbox fails ("can't get final child's PID").
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.workdir / "cni"}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"""
        (base).mkdir(parents=True)
        (base / "config.toml").write_text(config)
        proc = ManagedProcess(
            "containerd",
            ["containerd", f"--config={base / 'config.toml'}", "--log-level=warn"],
            log=self.workdir / "logs" / "containerd.log",
        )
        self.processes.append(proc)
        wait_until(
            lambda: self.ctr("version", check=False).returncode == 0,
            timeout=timeout, what="containerd", process=proc,
        )  # fmt: skip
        return proc

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args],
            capture_output=True, text=True, check=check, timeout=300,
        )  # fmt: skip

    def _write_cni_config(self) -> None:
        conf = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # nothing leaves the machine
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                        # Pods route to their bridge and to Services, nowhere else (no default route).
                        "routes": [{"dst": SERVICE_SUBNET}],
                        "dataDir": str(self.workdir / "cni-ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"},
            ],
        }
        (self.workdir / "cni").mkdir(exist_ok=True)
        (self.workdir / "cni" / "10-zeta.conflist").write_text(json.dumps(conf, indent=2))

    def _component_kubeconfig(self, component: str) -> Path:
        user = component
        path = self.workdir / f"{component}.kubeconfig"
        write_kubeconfig(
            path,
            server=self.control_plane.server,
            ca_file=self.control_plane.ca_file,
            token=self.control_plane.component_tokens[component],
            user=user,
        )
        return path

    def _start_kubelet(self) -> ManagedProcess:
        pki = self.workdir / "pki"
        _make_cgroups()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this machine has cgroup v1
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": CGROUP_ROOT,
            "failSwapOn": False,
            "address": GATEWAY,  # the apiserver reaches it here for logs and exec
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            # Authentication and authorization delegated to the apiserver (TokenReview, SubjectAccessReview);
            # the apiserver itself is recognised by its client certificate.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            # Locally imported images can never be pulled again: never collect them, never evict for disk.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "resolvConf": "",
            "staticPodPath": "",
            "serializeImagePulls": False,
            "maxPods": 60,
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = ManagedProcess(
            "kubelet",
            [
                self.binaries / "kubelet",
                f"--config={path}",
                f"--kubeconfig={self._component_kubeconfig('kubelet')}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
                "--v=1",
            ],
            log=self.workdir / "logs" / "kubelet.log",
        )
        self.processes.append(proc)
        return proc

    def _start_kube_proxy(self) -> ManagedProcess:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self._component_kubeconfig("kube-proxy"))},
            "hostnameOverride": NODE_NAME,
            "bindAddress": GATEWAY,
            "clusterCIDR": POD_SUBNET,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Leave the machine's sysctls alone: no conntrack table resize, no timeout changes, no route_localnet.
            "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False},
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = ManagedProcess(
            "kube-proxy",
            [self.binaries / "kube-proxy", f"--config={path}", "--v=1"],
            log=self.workdir / "logs" / "kube-proxy.log",
        )
        self.processes.append(proc)
        return proc

    def _start_scheduler(self) -> ManagedProcess:
        kubeconfig = self._component_kubeconfig("kube-scheduler")
        proc = ManagedProcess(
            "kube-scheduler",
            [
                self.binaries / "kube-scheduler",
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
            log=self.workdir / "logs" / "kube-scheduler.log",
        )
        self.processes.append(proc)
        return proc

    # --- stop -------------------------------------------------------------------------------------------------

    def _stop(self) -> None:
        """Pods first, through the kubelet (so CNI cleans up), then the node's processes, then containerd's."""
        by_name = {p.name: p for p in self.processes}
        kcm = [p for p in self.control_plane.processes if p.name == "kube-controller-manager"]
        # No controller may recreate what is being deleted, and nothing new may be scheduled.
        for proc in [*kcm, by_name.get("kube-scheduler")]:
            if proc is not None:
                proc.stop()
        if "kubelet" in by_name and by_name["kubelet"].alive():
            self.cluster.kubectl(
                "delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false", check=False
            )
            with contextlib.suppress(AssertionError):
                wait_until(
                    lambda: not self.cluster.kubectl("get", "pods", "-A", "-o", "name", check=False).stdout.strip()
                    and not self._tasks(),
                    timeout=90, what="every Pod gone from the node",
                )  # fmt: skip
        for proc in reversed(self.processes):
            if proc.name != "containerd":
                proc.stop()
        if "containerd" in by_name and by_name["containerd"].alive():
            self._remove_containers()
            by_name["containerd"].stop()
        _kill_shims(self.containerd_socket)

    def _tasks(self) -> list[str]:
        out = self.ctr("tasks", "ls", "-q", check=False).stdout
        return out.split()

    def _remove_containers(self) -> None:
        for task in self._tasks():
            self.ctr("tasks", "kill", "--signal=SIGKILL", task, check=False)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not self._running_tasks(), timeout=30, what="containerd's tasks killed")
        for task in self._tasks():
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def _running_tasks(self) -> list[str]:
        lines = self.ctr("tasks", "ls", check=False).stdout.splitlines()[1:]
        return [line.split()[0] for line in lines if line.split() and line.split()[-1] == "RUNNING"]


# --- machine-wide state ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _machine_lock(timeout: float = 600.0) -> Iterator[None]:
    with open(LOCK_FILE, "w") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StartupError(f"another node holds {LOCK_FILE}") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)


def _make_bridge() -> None:
    """The Pods' bridge, made before the apiserver starts because the apiserver serves on its address."""
    _run("ip", "link", "delete", BRIDGE, check=False)  # a crashed run's
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")


def _make_kubelet_pki(pki: Path) -> Path:
    """A CA the kubelet trusts for client certificates, and the apiserver's client certificate under it."""
    pki.mkdir(parents=True)
    ssl = shutil.which("openssl") or "openssl"
    _run(ssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=zeta-node-ca",
         "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"))  # fmt: skip
    key, csr, crt = (pki / f"apiserver-kubelet-client.{ext}" for ext in ("key", "csr", "crt"))
    _run(ssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client",
         "-keyout", str(key), "-out", str(csr))  # fmt: skip
    _run(ssl, "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
         "-CAcreateserial", "-days", "2", "-out", str(crt))  # fmt: skip
    for secret in (pki / "ca.key", key):
        secret.chmod(0o600)
    return pki


def _netns() -> set[str]:
    return {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set()


def _kill_shims(socket: Path) -> None:
    """containerd's shims outlive it by design; ours name our socket on their command line."""
    for pid in _pids_mentioning(str(socket)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(proc.name))
    return pids


def _mounts_under(prefixes: Sequence[str]) -> list[str]:
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            mounts.append(point)
    return mounts


def _iptables_commands() -> list[str]:
    return [c for c in ("iptables", "iptables-legacy", "iptables-nft") if shutil.which(c)]


def _chains() -> dict[str, dict[str, list[str]]]:
    """Our chains (KUBE-*, CNI-*) per iptables flavour and table."""
    found: dict[str, dict[str, list[str]]] = {}
    for cmd in _iptables_commands():
        save = shutil.which(f"{cmd}-save") or ""
        if not save:
            continue
        out = _run(save, check=False).stdout
        table = ""
        for line in out.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES):
                found.setdefault(cmd, {}).setdefault(table, []).append(line[1:].split()[0])
    return found


def _jumps_to_ours(saved: str) -> list[tuple[str, list[str]]]:
    """The rules of built-in chains that jump to ours, from ``iptables-save`` output: (chain, rule arguments).
    The arguments are split as a shell would (kube-proxy's ``--comment "kubernetes service portals"`` is one)."""
    jumps = []
    for line in saved.splitlines():
        match = re.match(r"-A (\S+) (.*-j (KUBE-|CNI-)\S*.*)", line)
        if match and not match.group(1).startswith(CHAIN_PREFIXES):
            jumps.append((match.group(1), shlex.split(match.group(2))))
    return jumps


def _remove_chains() -> None:
    for cmd, tables in _chains().items():
        save = shutil.which(f"{cmd}-save") or ""
        for table, chains in tables.items():
            # Rules in built-in chains that jump to ours go first, then ours are flushed and deleted.
            for chain, rule in _jumps_to_ours(_run(save, "-t", table, check=False).stdout):
                _run(cmd, "-t", table, "-D", chain, *rule, check=False)
            for chain in chains:
                _run(cmd, "-t", table, "-F", chain, check=False)
            for chain in chains:
                _run(cmd, "-t", table, "-X", chain, check=False)


def _cgroups() -> list[Path]:
    if not CGROUP_FS.is_dir():
        return []
    return [d for d in CGROUP_FS.glob(f"*{CGROUP_ROOT}") if d.is_dir() and not d.parent.is_symlink()]


def _make_cgroups() -> None:
    """The kubelet's cgroup parent in every cgroup v1 hierarchy (the kubelet insists it exists)."""
    if not CGROUP_FS.is_dir():
        return
    for hierarchy in CGROUP_FS.iterdir():
        if hierarchy.is_symlink() or not hierarchy.is_dir() or hierarchy.name == "unified":
            continue
        path = hierarchy / CGROUP_ROOT.lstrip("/")
        path.mkdir(exist_ok=True)
        if hierarchy.name.startswith("cpuset"):  # an empty cpuset admits no task: inherit the parent's
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (path / knob).write_text((hierarchy / knob).read_text())


def _remove_cgroups() -> None:
    for top in _cgroups():
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _teardown(work: Path, bin_dir: Path, netns_before: set[str]) -> None:
    """Machine-wide clean-up after every process is gone; each step runs even if an earlier one failed."""
    for pid in _pids_mentioning(str(work)):  # anything of ours that escaped its process group
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    new_netns = [str(NETNS_DIR / n) for n in _netns() - netns_before]
    for point in sorted(_mounts_under([str(work), *new_netns]), key=len, reverse=True):
        _run("umount", "-l", point, check=False)
    for ns in new_netns:
        with contextlib.suppress(OSError):
            os.unlink(ns)
    if (bin_dir / "kube-proxy").exists():
        _run(str(bin_dir / "kube-proxy"), "--cleanup", check=False)
    _remove_chains()
    _run("ip", "link", "delete", BRIDGE, check=False)
    _remove_cgroups()
    shutil.rmtree(work, ignore_errors=True)


def leftovers(work: Path | None = None) -> list[str]:
    """What a node left on the machine (empty after a clean teardown): for the teardown test."""
    found = []
    if work is not None:
        found += [f"process {pid}" for pid in _pids_mentioning(str(work))]
        found += [f"mount {m}" for m in _mounts_under([str(work)])]
        if work.exists():
            found.append(f"directory {work}")
    found += [f"process {pid} (containerd shim)" for pid in _shim_pids()]
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    for cmd, tables in _chains().items():
        found += [f"{cmd} chain {table}/{chain}" for table, chains in tables.items() for chain in chains]
    found += [f"cgroup {d}" for d in _cgroups()]
    found += [f"network namespace {n}" for n in _netns() if n.startswith("cni-")]
    return found


def _shim_pids() -> list[int]:
    return [p for p in _pids_mentioning("zeta-node-") if "containerd-shim" in _cmdline(p)]


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (
            (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    return ""
