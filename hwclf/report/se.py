""""What the Squeeze-and-Excitation block changes": each SE twin against its plain net, trained the same way.

The study's architectures come in families (``resnet`` and ``resnet_se``, families.py), so the question a reader
asks first is whether the SE block changes anything. For every family with both nets, in every setting where a
model would be used (trained and tested at the same blur; trained clean and tested blurred; trained on a mixture
and tested within the range of its levels), the twin minus the plain net, paired by seed. A setting where both
nets are near chance is shown but not tested: a difference between two guessers is noise. The tests of one
family are corrected together (Holm): with a dozen settings per family, one p just under 0.05 is what chance
alone gives about every other family.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hwclf import mixture
from hwclf.report import fmt
from hwclf.report.claims import S_SE, Conclusion
from hwclf.report.families import SE_SUFFIX, family_order
from hwclf.report.fmt import fmt_blur, join_and, p_value, pct, points
from hwclf.report.load import Experiment
from hwclf.report.stats import ALPHA, EXCEEDS, NEAR_CHANCE_FRACTION, NOT_DISTINGUISHABLE, TOO_FEW, holm, paired
from hwclf.report.tables import seed_values

MATCHED, CLEAN, MIXTURE = "matched", "clean-trained", "mixture"
NEAR_CHANCE = "near chance"  # the verdict of a setting left untested

# means over the n seeds both nets have (so that twin_mean - plain_mean is diff, also while a part is missing)
COLUMNS = ["family", "plain", "twin", "setting", "train_blur", "test_blur", "n", "plain_mean", "twin_mean", "diff",
           "ci_low", "ci_high", "p", "verdict", "p_holm"]

SETTING_WORDS = {MATCHED: "trained and tested at blur {k}", CLEAN: "trained clean, tested at blur {k}",
                 MIXTURE: "trained on {b}, tested at blur {k}"}
FAMILY = "{twin} against {plain} (the same net with SE blocks, trained the same way), paired over seeds: {parts}."
PART_AHEAD = "ahead {items}"
PART_BEHIND = "behind {items}"
ITEM = "when {setting} ({diff} points, 95% CI {ci}, {p})"
PART_WITHIN = "within the seed spread {which} ({diffs})"
PART_WITHIN_DIFFS = "differences {lo} to {hi} points"
PART_WITHIN_ONE = "difference {d} points"
PART_FEW = "too few paired seeds to tell in {m} settings (at least 3 needed)"
PART_FEW_ONE = "too few paired seeds to tell when {setting} (at least 3 needed)"
PART_CHANCE = "not tested in the {m} settings where both are near chance"
PART_CHANCE_ONE = "not tested when both are near chance ({setting})"
HOLM_KEPT = ("Holm's correction over the {n} tests of this family keeps {kept}: a difference the seeds resolve "
             "even among {n} comparisons.")
HOLM_NONE = ("Holm's correction over the {n} tests of this family keeps none of them (smallest adjusted {p}): "
             "no effect of the SE block on {plain} that {seeds} seeds resolve.")
OVERALL = ("Over the {f} families, the SE block changes accuracy by more than the seed spread, after Holm's "
           "correction within each family, in {k} of the {n} tested settings{where}.")


def _settings(exp: Experiment):
    """(setting, train blur, test blur) in report order: matched, then clean-trained, then mixtures."""
    out = [(MATCHED, k, k) for k in exp.test_blurs if k in exp.train_blurs]
    if 0 in exp.train_blurs:
        out += [(CLEAN, 0, k) for k in exp.test_blurs if k != 0]
    for b in exp.train_blurs:
        if mixture.is_mix(b):
            levels = [float(v) for v in mixture.mix_levels(b)]
            out += [(MIXTURE, b, k) for k in exp.test_blurs if min(levels) <= float(k) <= max(levels)]
    return out


def families_with_twins(exp: Experiment) -> list:
    """(plain, twin) for every family with both nets on the grid, in the report's family order."""
    archs = family_order(exp.archs)
    return [(a, a + SE_SUFFIX) for a in archs if a + SE_SUFFIX in archs]


def se_table(exp: Experiment) -> pd.DataFrame:
    """One row per (family, setting); empty when no net has its SE twin on the grid."""
    chance = 1 / len(exp.classes) if exp.classes else None
    floor = chance + NEAR_CHANCE_FRACTION * (1 - chance) if chance is not None else -np.inf
    rows = []
    for plain, twin in families_with_twins(exp):
        fam_rows = []
        for setting, b, k in _settings(exp):
            if not (exp.expected(plain, b) and exp.expected(twin, b)):
                continue
            vp, vt = seed_values(exp, plain, b, k), seed_values(exp, twin, b, k)
            seeds = sorted(set(vp) & set(vt))
            mp, mt = (float(np.mean([v[s] for s in seeds])) if seeds else np.nan for v in (vp, vt))
            c = paired([vt[s] for s in seeds], [vp[s] for s in seeds])
            row = {"family": plain, "plain": plain, "twin": twin, "setting": setting, "train_blur": b, "test_blur": k,
                   "n": c.n, "plain_mean": mp, "twin_mean": mt, "diff": c.diff_mean, "ci_low": c.ci_low,
                   "ci_high": c.ci_high, "p": c.p, "verdict": c.verdict if c.n else TOO_FEW, "p_holm": np.nan}
            if seeds and max(mp, mt) < floor:
                row.update(p=np.nan, verdict=NEAR_CHANCE)
            fam_rows.append(row)
        adjusted = holm([r["p"] for r in fam_rows])
        for r, a in zip(fam_rows, adjusted):
            r["p_holm"] = a
        rows += fam_rows
    return pd.DataFrame(rows, columns=COLUMNS)


def setting_text(setting: str, b, k) -> str:
    return SETTING_WORDS[setting].format(b=fmt_blur(b), k=fmt_blur(k))


def _setting(r: dict) -> str:
    return setting_text(r["setting"], r["train_blur"], r["test_blur"])


def _item(r) -> str:
    return ITEM.format(setting=_setting(r), diff=points(r["diff"]),
                       ci=fmt.ci_points(r["ci_low"], r["ci_high"]), p=p_value(r["p"]))


def se_conclusions(exp: Experiment, table: pd.DataFrame | None) -> list:
    """Per family: where the twin is ahead, behind, within the seed spread; then Holm over the family. Then, with
    several families, one sentence over all of them."""
    out = []
    if table is None or not len(table):
        return out
    n_tested = n_kept = n_families = 0
    kept_where = []
    for plain, g in table.groupby("family", sort=False):
        twin = g["twin"].iloc[0]
        rows = g.to_dict("records")
        ahead = [r for r in rows if r["verdict"] == EXCEEDS and r["diff"] > 0]
        behind = [r for r in rows if r["verdict"] == EXCEEDS and r["diff"] < 0]
        within = [r for r in rows if r["verdict"] == NOT_DISTINGUISHABLE]
        few = [r for r in rows if r["verdict"] == TOO_FEW]
        chance = [r for r in rows if r["verdict"] == NEAR_CHANCE]
        parts = []
        for group, tpl in ((ahead, PART_AHEAD), (behind, PART_BEHIND)):
            if group:
                parts.append(tpl.format(items=join_and([_item(r) for r in group])))
        if within:
            diffs = [r["diff"] for r in within]
            which = (f"in the other {len(within)} settings" if parts else f"in all {len(within)} settings tested") \
                if len(within) > 1 else "when " + _setting(within[0])
            d = (PART_WITHIN_DIFFS.format(lo=points(min(diffs)), hi=points(max(diffs))) if len(within) > 1
                 else PART_WITHIN_ONE.format(d=points(diffs[0])))
            parts.append(PART_WITHIN.format(which=which, diffs=d))
        for group, many, one in ((few, PART_FEW, PART_FEW_ONE), (chance, PART_CHANCE, PART_CHANCE_ONE)):
            if len(group) == 1:
                parts.append(one.format(setting=_setting(group[0])))
            elif group:
                parts.append(many.format(m=len(group)))
        text = FAMILY.format(twin=twin, plain=plain, parts="; ".join(parts))
        tested = [r for r in rows if np.isfinite(r["p"])]
        if len(tested) >= 2 and (ahead or behind):
            kept = [r for r in ahead + behind if r["p_holm"] < ALPHA]
            if kept:
                text += " " + HOLM_KEPT.format(n=len(tested), kept=join_and(
                    [f"{_setting(r)} (adjusted {p_value(r['p_holm'])})"
                     for r in kept]))
            else:
                text += " " + HOLM_NONE.format(n=len(tested), p=p_value(min(r["p_holm"] for r in ahead + behind)),
                                               plain=plain, seeds=max(r["n"] for r in tested))
        n_tested += len(tested)
        n_families += bool(tested)
        kept_all = [r for r in tested if r["p_holm"] < ALPHA]
        n_kept += len(kept_all)
        kept_where += [f"{twin} {_setting(r)}" for r in kept_all]
        cells = {(a, r["train_blur"]) for r in rows for a in (plain, twin)}
        out.append(Conclusion(S_SE, text, label=f"SE block in {plain}", cells=cells))
    if n_families > 1:
        where = f" ({join_and(kept_where)})" if kept_where else ""
        cells = set().union(*(c.cells for c in out))
        out.append(Conclusion(S_SE, OVERALL.format(f=n_families, k=n_kept or "none", n=n_tested, where=where),
                              label="SE block over all families", cells=cells))
    return out


SE_COLUMNS = ["Family", "Setting", "Seeds", "Plain (%)", "SE twin (%)", "SE − plain (points) [95% CI]", "p",
              "Holm-adjusted p"]
SE_CAPTION = ("Means over the seeds both nets have; the difference is paired by seed (two-sided paired t-test, at least "
              "3 seeds), "
              "and Holm's correction runs over the tested settings of one family. A setting where both nets are near "
              "chance (less than a tenth of the way from chance to 100 %) is not tested. All numbers: se.csv.")


def se_rows(table: pd.DataFrame) -> list:
    """The report's table: one row per (family, setting)."""
    rows = []
    for r in table.to_dict("records"):
        if r["n"] > 1:
            diff = f"{points(r['diff'])} {fmt.ci_points(r['ci_low'], r['ci_high'])}"
        else:
            diff = f"{points(r['diff'])} (n=1: no CI)" if r["n"] else fmt.DASH
        p = r["verdict"] if r["verdict"] == NEAR_CHANCE else (p_value(r["p"]) if np.isfinite(r["p"]) else
                                                               f"n={r['n']}: no test")
        ph = p_value(r["p_holm"]) if np.isfinite(r["p_holm"]) else fmt.DASH
        rows.append([f"{r['twin']} vs {r['plain']}", _setting(r),
                     str(r["n"]), pct(r["plain_mean"]), pct(r["twin_mean"]), diff, p, ph])
    return rows
