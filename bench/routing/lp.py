"""A tiny linear program solver and the oracle built on it: no scipy, the problems are a few dozen variables.

`maximize` solves ``max c.x  s.t.  A x <= b, x >= 0`` with ``b >= 0`` (so the origin is feasible and no phase one
is needed) by the dense tableau simplex with Bland's rule (no cycling).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_EPS = 1e-9


def maximize(
    c: Sequence[float], a: Sequence[Sequence[float]], b: Sequence[float]
) -> tuple[float, list[float]]:
    """The optimum value and one optimal x; raises ValueError for an unbounded problem."""
    m, n = len(b), len(c)
    if any(v < 0 for v in b):
        raise ValueError("b must be non-negative (the origin must be feasible)")
    t = np.zeros((m + 1, n + m + 1))
    t[:m, :n] = np.asarray(a, dtype=float).reshape(m, n)
    t[:m, n : n + m] = np.eye(m)
    t[:m, -1] = b
    t[m, :n] = -np.asarray(c, dtype=float)
    basis = list(range(n, n + m))
    for _ in range(50 * (n + m) + 100):
        entering = next((j for j in range(n + m) if t[m, j] < -_EPS), None)
        if entering is None:
            break
        column = t[:m, entering]
        ratios = [(t[i, -1] / column[i], basis[i], i) for i in range(m) if column[i] > _EPS]
        if not ratios:
            raise ValueError("unbounded linear program")
        _, _, row = min(ratios)
        t[row] /= t[row, entering]
        for i in range(m + 1):
            if i != row and abs(t[i, entering]) > 0:
                t[i] -= t[i, entering] * t[row]
        basis[row] = entering
    x = [0.0] * n
    for i, j in enumerate(basis):
        if j < n:
            x[j] = float(t[i, -1])
    return float(t[m, -1]), x
