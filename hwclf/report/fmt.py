"""Number formatting shared by tables, sentences and figures, so a number reads the same everywhere.

Accuracies are percentages with one decimal (``91.3 ± 0.4 %``), intervals ``[90.1, 92.5]``; a value that
does not exist (one seed has no std or CI) is said so, never shown as 0.
"""

from __future__ import annotations

import math

from hwclf.report.load import fmt_blur  # noqa: F401  (re-exported)

DASH = "—"


def ok(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def pct(x) -> str:
    """0.913 -> '91.3'."""
    return f"{100 * float(x):.1f}" if ok(x) else DASH


def points(x, signed: bool = True) -> str:
    """A difference of accuracies in percentage points: 0.023 -> '+2.3' (a true minus sign for negatives)."""
    if not ok(x):
        return DASH
    v = 100 * float(x)
    if abs(v) < 0.05:
        v = 0.0
    s = f"{v:+.1f}" if signed else f"{v:.1f}"
    return s.replace("-", "−")


def ci_pct(lo, hi) -> str:
    return f"[{pct(lo)}, {pct(hi)}]" if ok(lo) and ok(hi) else DASH


def ci_points(lo, hi) -> str:
    return f"[{points(lo)}, {points(hi)}]" if ok(lo) and ok(hi) else DASH


def pm_pct(mean, std, n: int | None = None) -> str:
    """'91.3 ± 0.4 %'; with one seed '91.3 % (n=1: no std)'."""
    if not ok(mean):
        return DASH
    if not ok(std):
        return f"{pct(mean)} % (n=1: no std)" if n == 1 else f"{pct(mean)} %"
    return f"{pct(mean)} ± {100 * float(std):.1f} %"


def num3(x) -> str:
    return f"{float(x):.3f}" if ok(x) else DASH


def pm_num(mean, std, n: int | None = None) -> str:
    if not ok(mean):
        return DASH
    if not ok(std):
        return f"{num3(mean)} (n=1: no std)" if n == 1 else num3(mean)
    return f"{num3(mean)} ± {float(std):.3f}"


def ci_num(lo, hi) -> str:
    return f"[{num3(lo)}, {num3(hi)}]" if ok(lo) and ok(hi) else DASH


def p_value(p) -> str:
    """'p = 0.742', 'p < 0.001'."""
    if not ok(p):
        return "p undefined"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def share(x) -> str:
    """A fraction as a whole percentage: 0.5 -> '50 %'."""
    return f"{100 * float(x):.0f} %" if ok(x) else DASH


def duration(seconds) -> str:
    if not ok(seconds):
        return DASH
    s = float(seconds)
    if s < 90:
        return f"{s:.1f} s"
    m = s / 60
    if m < 90:
        return f"{m:.1f} min"
    h, m = divmod(int(round(m)), 60)
    return f"{h} h {m:02d} min"


def join_and(items: list) -> str:
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
