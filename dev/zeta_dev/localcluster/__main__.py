"""`zeta-controlplane`: start the local control plane and keep it up until Ctrl-C (prints the kubeconfig)."""

from __future__ import annotations

import contextlib
import signal
import sys

from .cluster import Cluster
from .controlplane import ControlPlane, control_plane_binaries


def main() -> int:
    binaries = control_plane_binaries()
    with ControlPlane.running(binaries=binaries) as cp:
        Cluster(kubeconfig=cp.kubeconfig, kubectl_binary=binaries / "kubectl").install_crds()
        print(f"export KUBECONFIG={cp.kubeconfig}\nexport PATH={binaries}:$PATH", flush=True)
        print("control plane up with Zeta's CRDs; Ctrl-C stops it and removes everything", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
