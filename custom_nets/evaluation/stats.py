"""Statistics over seeds and over cases: mean +/- std, paired Wilcoxon signed-rank test, bootstrap interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """``(mean, sample std, n)`` over the values that are not NaN (std NaN for fewer than two).

    Example:
        >>> mean_std([0.8, 0.9, float("nan")])
        (0.85, 0.0707, 2)
    """
    kept = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if not len(kept):
        return math.nan, math.nan, 0
    std = float(kept.std(ddof=1)) if len(kept) > 1 else math.nan
    return round(float(kept.mean()), 4), round(std, 4) if not math.isnan(std) else std, len(kept)


def paired_comparison(a: Sequence[float], b: Sequence[float], n_boot: int = 10000, seed: int = 0,
                      confidence: float = 0.95) -> dict[str, float]:
    """Per-case comparison of two methods on the same cases (``a[i]`` and ``b[i]`` are case i): the mean
    difference ``a - b``, its bootstrap percentile interval (cases resampled with replacement), and the two-sided
    Wilcoxon signed-rank test of the differences (scipy; zero differences dropped, as ``zero_method="wilcox"``).
    Cases where either value is NaN are left out; ``n`` says how many were used.

    Example:
        >>> r = paired_comparison([0.9, 0.8, 0.85, 0.95, 0.7, 0.9], [0.5, 0.6, 0.4, 0.55, 0.5, 0.45])
        >>> r["n"], round(r["mean_difference"], 3), r["ci_low"] > 0, r["wilcoxon_p"] < 0.05
        (6, 0.35, True, True)
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"a paired comparison needs the same cases on both sides: {a.shape} against {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    out = {"n": int(keep.sum()), "mean_difference": math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "wilcoxon_statistic": math.nan, "wilcoxon_p": math.nan}
    if not len(d):
        return out
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    out |= {"mean_difference": float(d.mean()), "ci_low": float(np.quantile(boots, alpha)),
            "ci_high": float(np.quantile(boots, 1 - alpha))}
    if np.any(d != 0):
        test = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        out |= {"wilcoxon_statistic": float(test.statistic), "wilcoxon_p": float(test.pvalue)}
    return out
