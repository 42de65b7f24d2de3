"""The local demo (``make demo``): a real control plane with Zeta's CRDs and samples.

It grows into the full demo (simulated fleet, operator, router, workload) as those parts land.
"""

from __future__ import annotations

import argparse
import sys

from .localcluster.cluster import Cluster
from .localcluster.controlplane import ControlPlane, control_plane_binaries

SAMPLES = "manifests/samples"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    binaries = control_plane_binaries()
    print("==> starting etcd, kube-apiserver and kube-controller-manager", flush=True)
    with ControlPlane.running(binaries=binaries) as cp:
        cluster = Cluster(kubeconfig=cp.kubeconfig, kubectl_binary=binaries / "kubectl")
        print(f"    API server {cp.server}, kubeconfig {cp.kubeconfig}", flush=True)
        cluster.install_crds()
        print(cluster.kubectl("apply", "-k", SAMPLES).stdout, flush=True)
        print(cluster.kubectl("get", "mb,rp").stdout, flush=True)
    print("==> stopped; nothing left running", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
