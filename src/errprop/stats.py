"""Statistics over seeds: mean ± spread, paired differences with a t confidence interval.

A comparison of two training objectives is only evidence if it is paired — the same seed (so the
same initial weights, data order and training noise) and the same sampling noise on both sides —
and if the difference is judged against its own seed-to-seed spread. :func:`paired` does that:
per seed ``d_s = a_s − b_s``, then the mean of d and Student's t interval
``mean ± t_{1−α/2, n−1} · sd(d)/√n``.

>>> r = paired([1.0, 2.0, 3.0], [1.5, 2.4, 3.6])
>>> round(r["mean"], 3), r["n"], r["verdict"]
(-0.5, 3, 'lower')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats as _st

from .errors import ErrpropError


def summary(values: Sequence[float]) -> dict:
    """``{"mean", "std", "min", "max", "n"}`` of per-seed values (std with n − 1; 0 for n = 1)."""
    v = [float(x) for x in values]
    if not v:
        raise ErrpropError("summary: no values")
    n = len(v)
    mean = sum(v) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(v), "max": max(v), "n": n}


def paired(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """Paired difference a − b over seeds with a t confidence interval.

    Returns ``{"mean", "std", "lo", "hi", "n", "confidence", "verdict", "p"}``; ``verdict`` is
    ``lower`` (the whole interval below 0), ``higher`` (above 0) or ``no difference`` (the
    interval holds 0, or fewer than 2 seeds); ``p`` is the two-sided paired t-test's p-value (the
    test that matches the interval). The caller decides which direction is better.
    """
    if len(a) != len(b):
        raise ErrpropError(f"paired: {len(a)} values against {len(b)}; pair them by seed")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    s = summary(d)
    n = s["n"]
    if n < 2:
        return {**{k: s[k] for k in ("mean", "std", "n")}, "lo": math.nan, "hi": math.nan,
                "confidence": confidence, "verdict": "no difference", "p": 1.0}
    half = float(_st.t.ppf(0.5 + confidence / 2, n - 1)) * s["std"] / math.sqrt(n)
    lo, hi = s["mean"] - half, s["mean"] + half
    verdict = "lower" if hi < 0 else "higher" if lo > 0 else "no difference"
    if s["std"] > 0:
        p = float(2 * _st.t.sf(abs(s["mean"]) / (s["std"] / math.sqrt(n)), n - 1))
    else:  # every seed gave the same difference: certain if it is not 0
        p = 1.0 if s["mean"] == 0 else 0.0
    return {"mean": s["mean"], "std": s["std"], "lo": lo, "hi": hi, "n": n,
            "confidence": confidence, "verdict": verdict, "p": p}


def holm_adjust(tests: dict) -> dict:
    """Add ``p_holm`` to every test of a family (``{key: paired(...)}``, each with its ``p``): Holm's
    adjustment over all of them (:func:`holm`). Returns ``tests``."""
    for t, ph in zip(tests.values(), holm([t["p"] for t in tests.values()])):
        t["p_holm"] = ph
    return tests


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values of a family of tests (Holm 1979): the k-th smallest
    p times (m − k + 1), made monotone, capped at 1. Rejecting where the adjusted p < α keeps the
    family-wise error rate ≤ α, whatever the dependence between the tests."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adj, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        adj[i] = running
    return adj
