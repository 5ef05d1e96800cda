"""Statistics over seeds: pure functions on arrays, so the numbers in the report can be checked by hand.

Seeds are few (typically 3), so intervals use the t-distribution, and nothing is invented when there is too
little data: with one value the std and CI are NaN, and a paired comparison with fewer than
``MIN_PAIRED_SEEDS`` seeds gives no verdict. An interval never leaves the range its quantity can take
(accuracies [0, 1], losses [0, inf)): see ``CI_METHOD``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

CI_LEVEL = 0.95
MIN_PAIRED_SEEDS = 3  # a paired t-test on two seeds has one degree of freedom: too few to tell
ALPHA = 0.05
NEAR_CHANCE_FRACTION = 0.1  # (accuracy - chance) / (1 - chance) below this: a "best" among guessers is noise

EXCEEDS, NOT_DISTINGUISHABLE, TOO_FEW = "exceeds", "not_distinguishable", "too_few"

UNBOUNDED = (-math.inf, math.inf)
ACCURACY_RANGE = (0.0, 1.0)
LOSS_RANGE = (0.0, math.inf)  # cross-entropy: never negative, no upper bound

# For the report's method note (one sentence): why intervals are cut to the metric's range, not transformed.
CI_METHOD = ("95% CIs are t-intervals over seeds cut to the range the metric can take (an accuracy's [0, 100] %): "
             "the true mean lies in that range, so the cut removes only impossible values and keeps the "
             "interval's coverage, where a logit-scale interval is undefined at 0 % and 100 % and a "
             "bootstrap over 3 seeds covers far less than 95%.")


def metric_range(metric: str) -> tuple[float, float]:
    """The values a per-trial metric can take, by its name: accuracies (any "*accuracy*") in [0, 1],
    losses in [0, inf), anything else (e.g. a difference) unbounded."""
    if "accuracy" in metric:
        return ACCURACY_RANGE
    if "loss" in metric:
        return LOSS_RANGE
    return UNBOUNDED


@dataclass(frozen=True)
class Describe:
    n: int
    mean: float
    std: float  # sample std (ddof=1); NaN when n < 2
    half: float  # the t-interval's half-width before the cut to the range; NaN when n < 2
    ci_low: float  # max(mean - half, range low)
    ci_high: float  # min(mean + half, range high)


def _clean(values) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    return a[np.isfinite(a)]


def t_half_width(std: float, n: int, level: float = CI_LEVEL) -> float:
    """Half-width of the t-based confidence interval of a mean: t_{(1+level)/2, n-1} * std / sqrt(n)."""
    if n < 2 or not math.isfinite(std):
        return float("nan")
    return float(_st.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))


def describe(values, level: float = CI_LEVEL, bounds: tuple[float, float] = UNBOUNDED) -> Describe:
    """Mean, sample std and t-based CI of the finite values (NaN values are left out, not zeros); the CI is
    cut to `bounds`, the range the quantity can take (``metric_range``; why: ``CI_METHOD``)."""
    a = _clean(values)
    n = int(a.size)
    if n == 0:
        nan = float("nan")
        return Describe(0, nan, nan, nan, nan, nan)
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if n > 1 else float("nan")
    half = t_half_width(std, n, level)
    if math.isnan(half):  # n = 1: the interval stays undefined, not cut to the range
        return Describe(n, mean, std, half, half, half)
    low, high = bounds
    return Describe(n, mean, std, half, max(mean - half, low), min(mean + half, high))


@dataclass(frozen=True)
class Paired:
    """a - b paired by seed."""

    n: int
    diff_mean: float
    diff_std: float
    ci_low: float
    ci_high: float
    p: float  # two-sided paired t-test; NaN when n < MIN_PAIRED_SEEDS
    verdict: str  # EXCEEDS, NOT_DISTINGUISHABLE or TOO_FEW


def paired(a, b, alpha: float = ALPHA, level: float = CI_LEVEL) -> Paired:
    """Paired comparison of two architectures over the same seeds (pairs with a NaN on either side are dropped).

    Pairing by seed removes what the seeds share (data split, initial shuffles), so a small but consistent lead
    can be told apart from noise. When every difference is identical the t statistic is undefined; the lead is
    then exactly constant, so p is 0 for a non-zero difference and 1 for none.
    """
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired: {a.size} values against {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    desc = describe(d, level)
    if desc.n < MIN_PAIRED_SEEDS:
        return Paired(desc.n, desc.mean, desc.std, desc.ci_low, desc.ci_high, float("nan"), TOO_FEW)
    if not desc.std > 1e-12:  # all differences equal (up to float rounding)
        p = 1.0 if abs(desc.mean) < 1e-12 else 0.0
    else:
        p = float(_st.ttest_rel(a[keep], b[keep]).pvalue)
    return Paired(desc.n, desc.mean, desc.std, desc.ci_low, desc.ci_high, p,
                  EXCEEDS if p < alpha else NOT_DISTINGUISHABLE)


def quantiles(values, qs=(0.05, 0.25, 0.5, 0.75, 0.95)) -> list:
    a = _clean(values)
    if a.size == 0:
        return [float("nan")] * len(qs)
    return [float(q) for q in np.quantile(a, qs)]


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN and does not count as a test).

    Many best-vs-runner-up tests at alpha = 0.05 will show some lead by chance alone; a lead whose adjusted
    p stays below alpha holds with a family-wise error rate of alpha over all of them, with no assumption
    about how the tests depend on each other.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(x) for x in out]
