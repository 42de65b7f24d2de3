"""Zeta's development tools: the local cluster harness, the demo, launchers and classifier training (not shipped)."""
