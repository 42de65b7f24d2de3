"""The node harness's machine-wide clean-up on its own, without a node: what a crashed run leaves behind."""

from __future__ import annotations

import shutil

from zeta_dev.localcluster import node

CHAIN = "KUBE-ZETA-CRASHED-RUN"


def test_a_crashed_runs_chain_goes_with_the_commented_rule_that_jumps_to_it(node_packages: None) -> None:
    """kube-proxy's jump rules carry comments with spaces (``--comment "kubernetes service portals"``): the
    clean-up must delete such a rule, or the chain it jumps to cannot be deleted either and the next run's
    `leftovers` check fails. ``node_packages``: iptables itself, which a fresh machine lacks until the node
    tests install it (run first, this test found no iptables there)."""
    cmd = next(c for c in node._iptables_commands() if shutil.which(f"{c}-save"))
    with node._machine_lock(timeout=3600):  # a running node's chains are not ours to remove
        node._run(cmd, "-t", "filter", "-N", CHAIN)
        jump = ("OUTPUT", "-m", "comment", "--comment", "zeta crashed run", "-j", CHAIN)
        node._run(cmd, "-t", "filter", "-A", *jump)
        try:
            assert CHAIN in node._run(f"{cmd}-save", "-t", "filter").stdout
            node._remove_chains()
            assert CHAIN not in node._run(f"{cmd}-save", "-t", "filter").stdout
        finally:
            node._run(cmd, "-t", "filter", "-D", *jump, check=False)
            node._run(cmd, "-t", "filter", "-X", CHAIN, check=False)
