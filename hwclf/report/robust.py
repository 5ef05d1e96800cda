""""Is one robust model enough?": a model trained on a blur mixture against the specialists.

For every architecture with a mixture on its train-blur axis, at every test level: the mixture model, the model
trained at that level (the matched specialist, where the grid has one) and the clean-trained model, as means with
95% CIs over seeds, and the mixture's differences to both as paired t-tests over seeds. Each test level is marked
by where it lies for the mixture: one of its levels (trained on), between two of them (interpolation) or outside
them (extrapolation), because a mixture can only be expected to cover what it saw.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hwclf import mixture
from hwclf.report import fmt
from hwclf.report.claims import S_ROBUST, Conclusion
from hwclf.report.fmt import fmt_blur, join_and, p_value, pct, points
from hwclf.report.load import Experiment
from hwclf.report.stats import EXCEEDS, NOT_DISTINGUISHABLE, describe, metric_range, paired
from hwclf.report.tables import seed_values

INSIDE, BETWEEN, BEYOND, BELOW = "inside", "between", "beyond", "below"
WHERE_WORDS = {INSIDE: "trained on", BETWEEN: "not trained on, between its levels",
               BEYOND: "not trained on, beyond its largest level", BELOW: "not trained on, below its smallest level"}
WHERE_TABLE = {INSIDE: "in the mixture", BETWEEN: "between its levels (interpolation)",
               BEYOND: "beyond its largest level (extrapolation)", BELOW: "below its smallest level (extrapolation)"}

COLUMNS = ["arch", "mixture", "test_blur", "where"]
for _who in ("mixture", "matched", "clean"):
    COLUMNS += [f"{_who}_n", f"{_who}_mean", f"{_who}_ci_low", f"{_who}_ci_high"]
for _who in ("vs_matched", "vs_clean"):
    COLUMNS += [f"{_who}_n", f"{_who}_diff", f"{_who}_ci_low", f"{_who}_ci_high", f"{_who}_p", f"{_who}_verdict"]

SUMMARY = "{arch}, one model trained on {mix} against the model trained at each test blur: {parts}."
PART_WITHIN = "within the seed spread of it at test blur {ks}"
PART_ABOVE = "above it at {ks}"
PART_BELOW = "below it at {ks}"
PART_TOO_FEW = "too few paired seeds to tell at {ks}"
PART_NONE = "no model trained at {ks} to compare with"
ITEM_DIFF = "at k={k} ({where}) it is {diff} points {side} the matched model ({mix} % vs {matched} %, {p})"
ITEM_WITHIN = "at k={k} ({where}) it scores {mix} % against {matched} % ({diff} points, {p}: within the seed spread)"
ITEM_TOO_FEW = "at k={k} ({where}) it scores {mix} % against {matched} % ({n} paired seed(s): too few for a test)"
ITEM_NONE = "at k={k} ({where}) it scores {mix} % ({ci}; model trained at {k}: n/a{clean})"
ITEM_NONE_CLEAN = "; trained clean: {clean} %"
DETAIL = "{arch}, {mix}: {items}."


def where(k, levels) -> str:
    """Where test level ``k`` lies for a mixture of ``levels``."""
    lv = [float(v) for v in levels]
    if float(k) in lv:
        return INSIDE
    if float(k) > max(lv):
        return BEYOND
    if float(k) < min(lv):
        return BELOW
    return BETWEEN


def _stats(prefix: str, values) -> dict:
    d = describe(values, bounds=metric_range("accuracy"))  # an accuracy's interval stays in [0, 1]
    return {f"{prefix}_n": d.n, f"{prefix}_mean": d.mean, f"{prefix}_ci_low": d.ci_low, f"{prefix}_ci_high": d.ci_high}


def _paired(prefix: str, a: dict, b: dict) -> dict:
    seeds = sorted(set(a) & set(b))
    c = paired([a[s] for s in seeds], [b[s] for s in seeds])
    return {f"{prefix}_n": c.n, f"{prefix}_diff": c.diff_mean, f"{prefix}_ci_low": c.ci_low,
            f"{prefix}_ci_high": c.ci_high, f"{prefix}_p": c.p, f"{prefix}_verdict": c.verdict if c.n else ""}


def robust_table(exp: Experiment) -> pd.DataFrame:
    """One row per (arch, mixture, test blur); empty when no architecture has a mixture row."""
    rows = []
    for arch in exp.archs:
        for mix in [b for b in exp.train_blurs if mixture.is_mix(b) and exp.expected(arch, b)]:
            levels = mixture.mix_levels(mix)
            clean = 0 if exp.expected(arch, 0) else None
            for k in exp.test_blurs:
                vm = seed_values(exp, arch, mix, k)
                vk = seed_values(exp, arch, k, k) if exp.expected(arch, k) else {}
                v0 = seed_values(exp, arch, clean, k) if clean is not None else {}
                row = {"arch": arch, "mixture": mix, "test_blur": k, "where": where(k, levels)}
                row.update(_stats("mixture", list(vm.values())))
                row.update(_stats("matched", list(vk.values())))
                row.update(_stats("clean", list(v0.values())))
                row.update(_paired("vs_matched", vm, vk))
                row.update(_paired("vs_clean", vm, v0))
                rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def robust_conclusions(exp: Experiment, robust: pd.DataFrame) -> list:
    """Per (arch, mixture): where it is within the seed spread of the matched model, where above or below, and
    the detail at every test level."""
    out = []
    if robust is None or not len(robust):
        return out
    for (arch, mix), g in robust.groupby(["arch", "mixture"], sort=False):
        groups = {k: [] for k in ("within", "above", "below", "few", "none")}
        items = []
        for r in g.to_dict("records"):
            if not r["mixture_n"]:
                continue
            k, w = fmt_blur(r["test_blur"]), WHERE_WORDS[r["where"]]
            mix_pct = pct(r["mixture_mean"])
            if not r["matched_n"]:
                groups["none"].append(k)
                ci = fmt.ci_pct(r["mixture_ci_low"], r["mixture_ci_high"])
                clean = ITEM_NONE_CLEAN.format(clean=pct(r["clean_mean"])) if r["clean_n"] else ""
                items.append(ITEM_NONE.format(k=k, where=w, mix=mix_pct, clean=clean,
                                              ci=f"95% CI {ci}" if ci != fmt.DASH else f"n={r['mixture_n']}"))
            elif r["vs_matched_verdict"] == EXCEEDS:
                side = "above" if r["vs_matched_diff"] > 0 else "below"
                groups[side].append(k)
                items.append(ITEM_DIFF.format(k=k, where=w, diff=points(abs(r["vs_matched_diff"]), signed=False),
                                              side=side, mix=mix_pct, matched=pct(r["matched_mean"]),
                                              p=p_value(r["vs_matched_p"])))
            elif r["vs_matched_verdict"] == NOT_DISTINGUISHABLE:
                groups["within"].append(k)
                items.append(ITEM_WITHIN.format(k=k, where=w, mix=mix_pct, matched=pct(r["matched_mean"]),
                                                diff=points(r["vs_matched_diff"]), p=p_value(r["vs_matched_p"])))
            else:
                groups["few"].append(k)
                items.append(ITEM_TOO_FEW.format(k=k, where=w, mix=mix_pct, matched=pct(r["matched_mean"]),
                                                 n=r["vs_matched_n"]))
        if not items:
            continue
        parts = [tpl.format(ks=join_and(groups[key])) for key, tpl in
                 (("within", PART_WITHIN), ("above", PART_ABOVE), ("below", PART_BELOW), ("few", PART_TOO_FEW),
                  ("none", PART_NONE)) if groups[key]]
        label = fmt_blur(mix)
        text = (SUMMARY.format(arch=arch, mix=label, parts="; ".join(parts)) + " "
                + DETAIL.format(arch=arch, mix=label, items="; ".join(items)))
        cells = {(arch, mix)} | {(arch, b) for b in exp.train_blurs if not mixture.is_mix(b) and exp.expected(arch, b)}
        out.append(Conclusion(S_ROBUST, text, label=f"{label} for {arch}", cells=cells))
    return out


def robust_rows(robust: pd.DataFrame) -> list:
    """The report's table: one row per (arch, mixture, test blur)."""
    def value(r, who):
        if not r[f"{who}_n"]:
            return fmt.DASH
        ci = fmt.ci_pct(r[f"{who}_ci_low"], r[f"{who}_ci_high"])
        return f"{pct(r[f'{who}_mean'])} {ci if ci != fmt.DASH else '(n=1)'}"

    def diff(r, who):
        if not r[f"{who}_n"]:
            return fmt.DASH
        return f"{points(r[f'{who}_diff'])} ({p_value(r[f'{who}_p'])})" if np.isfinite(r[f"{who}_p"]) \
            else f"{points(r[f'{who}_diff'])} (n={r[f'{who}_n']}: no test)"

    return [[r["arch"], fmt_blur(r["mixture"]), fmt_blur(r["test_blur"]), WHERE_TABLE[r["where"]],
             value(r, "mixture"), value(r, "matched"), diff(r, "vs_matched"), value(r, "clean"), diff(r, "vs_clean")]
            for r in robust.to_dict("records")]


ROBUST_COLUMNS = ["Arch", "Mixture", "Test blur", "Test blur for the mixture", "Mixture (%) [95% CI]",
                  "Trained at the test blur (%) [95% CI]", "Mixture − matched (points)", "Trained clean (%) [95% CI]",
                  "Mixture − clean (points)"]
ROBUST_CAPTION = ("Means over seeds with t-based 95% CIs; differences are paired by seed (two-sided paired "
                  "t-test, at least 3 seeds). The matched model is the one trained at the test blur: it exists only "
                  "where the grid has that level, and matched-blur metrics of the mixture itself do not exist "
                  "(summary: —). All numbers: robust.csv.")
