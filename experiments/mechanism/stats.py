"""Seed statistics of the mechanism study: bootstrap confidence intervals and a paired test.

Pure numpy functions. ``bootstrap_ci`` is the percentile bootstrap of the mean;
``paired`` compares two arms on the seeds both ran (the same seed gives the same prompts,
so the difference per seed removes the prompt-order noise) with the bootstrap CI of the
mean difference and the exact two-sided sign-flip permutation test (all ``2^n`` sign
assignments of the differences; the p-value counts those whose mean is at least as far
from 0 as the observed one). With 3 seeds the smallest possible p is 2/8 = 0.25: a paired
test over 3 seeds cannot reach 0.05, and over 5 seeds not below 2/32 = 0.0625, which the
report says where it applies. ``paired_t_p`` is the paired t-test's two-sided p (normal
differences assumed), which can go lower with few seeds; the report gives both.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def bootstrap_ci(values, n_boot: int = 10_000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of the finite ``values`` and its percentile-bootstrap
    ``1 - alpha`` interval (NaNs without values; ``lo == hi == mean`` for one value).
    """
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)  # [n_boot]
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(v.mean()), float(lo), float(hi)


def sign_flip_p(diffs) -> float:
    """Exact two-sided sign-flip permutation p-value of ``mean(diffs) != 0`` (n <= 20)."""
    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    if n == 0:
        return math.nan
    if n > 20:
        raise ValueError(f"sign_flip_p enumerates 2^n assignments; n={n} > 20")
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))  # [2^n, n]
    means = np.abs((signs * d).mean(1))
    return float((means >= observed - 1e-12).mean())


def paired_t_p(diffs) -> float:
    """Two-sided p of the paired t-test ``mean(diffs) != 0`` (NaN below 2 values; 0 when
    every difference is the same non-zero value, 1 when all are 0).
    """
    from scipy import stats

    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 2:
        return math.nan
    if np.ptp(d) == 0:
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def paired(a: dict[int, float], b: dict[int, float], n_boot: int = 10_000, seed: int = 0) -> dict:
    """``a - b`` on the seeds where both are finite: ``{"n", "mean", "lo", "hi", "p", "p_t"}``."""
    seeds = sorted(s for s in set(a) & set(b) if np.isfinite(a[s]) and np.isfinite(b[s]))
    diffs = [a[s] - b[s] for s in seeds]
    mean, lo, hi = bootstrap_ci(diffs, n_boot, seed=seed)
    return {"n": len(seeds), "mean": mean, "lo": lo, "hi": hi, "p": sign_flip_p(diffs) if diffs else math.nan,
            "p_t": paired_t_p(diffs)}


__all__ = ["bootstrap_ci", "paired", "paired_t_p", "sign_flip_p"]
