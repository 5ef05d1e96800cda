"""Conclusions as sentences built only from the tables, from fixed templates (tests assert them verbatim).

Each conclusion remembers which (arch, train blur) cells it rests on, so a partial sweep can say exactly
which sentences rest on fewer seeds than planned.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from hwclf.report import fmt
from hwclf.report.claims import (S_BEST, S_HALF, S_LETTERS, S_PARTIAL, S_RECOVERY, S_ROBUST, S_SE,  # noqa: F401
                                 S_TRANSFER, S_WRITERS, SECTIONS, Conclusion, section_title)
from hwclf.report.fmt import fmt_blur, join_and, p_value, pct, points
from hwclf.report.load import Experiment
from hwclf.report.robust import robust_conclusions
from hwclf.report.se import se_conclusions
from hwclf.report.stats import (ALPHA, EXCEEDS, MIN_PAIRED_SEEDS, NEAR_CHANCE_FRACTION, NOT_DISTINGUISHABLE, TOO_FEW,
                                Paired, holm, paired)
from hwclf.report.tables import ALL_ARCHS, MIN_WRITER_IMAGES, lookup, seed_values

# --- templates -------------------------------------------------------------------------------------------
SETTING_MATCHED = "Trained and tested at blur {k}"
SETTING_CLEAN = "Trained clean, tested at blur {k}"
BEST = "{setting}: best is {best} with {value}; {verdict}."
VALUE = "{mean} % (95% CI {ci}, n={n})"
VALUE_ONE_SEED = "{mean} % (n=1: CI undefined)"
VERDICT_EXCEEDS = ("its lead over {runner} ({diff} points, 95% CI {ci}, paired over {n} seeds) exceeds the seed "
                   "spread (paired t-test, {p})")
VERDICT_NOT_DISTINGUISHABLE = ("not distinguishable from {runner} ({p}; difference {diff} points, 95% CI {ci}, "
                               "paired over {n} seeds)")
VERDICT_TOO_FEW = ("too few seeds to tell whether it beats {runner} (paired seeds: {n}, at least "
                   f"{MIN_PAIRED_SEEDS} needed{{diff}})")
VERDICT_TOO_FEW_DIFF = "; difference {diff} points"
VERDICT_ALONE = "no other architecture has results here to compare with"
NEAR_CHANCE = ("{setting}: every architecture is near chance, so none is ranked: the best, {best}, scores {value} "
               "against a chance of {chance} % for {n_classes} classes; no model got a tenth of the way from chance "
               "to 100 %.")
MULTIPLE = ("Multiple comparisons: {n} of the settings above were tested against their runner-up; if no "
            "architecture differed in any of them, {expected} of the {n} tests would still pass p < {alpha} on "
            "average. Holm's correction for the {n} tests keeps {kept}.")
MULTIPLE_KEPT = "the lead of {best} over {runner} when {setting} (adjusted {p})"
MULTIPLE_NONE = "none of the {m} leads with p < {alpha} (smallest adjusted {p}): read them as hints, not findings"
MULTIPLE_NONE_ONE = "not the one lead with p < {alpha} (adjusted {p}): read it as a hint, not a finding"

RECOVERY = "{arch}: training at the test blur instead of clean recovers {items}."
RECOVERY_ITEM = "{gain} points at blur {k} ({fraction} of the {loss}-point loss of the clean-trained model)"
RECOVERY_ITEM_NO_LOSS = "{gain} points at blur {k} (the clean-trained model loses nothing there)"
RECOVERY_ITEM_NO_DATA = "an unknown amount at blur {k} (no complete trial for that cell)"

TRANSFER_CLEAN = ("{arch}: on clean images, models trained with blur score {items}, against {clean} % for the "
                  "clean-trained model.")
TRANSFER_CLEAN_ITEM = "{acc} % (train blur {b}, {diff} points)"
TRANSFER_BEST = "{arch}: the best train blur for each test blur is {items}."
TRANSFER_BEST_ITEM = "test {k} → train {b} ({acc} %)"
TRANSFER_DIAGONAL = "{arch}: at every test blur, the best model is the one trained at that blur."

HALF_AT = "{arch}: below half of clean accuracy ({half} %): first at test blur {k}, where the clean-trained model scores {acc} %."
HALF_NEVER = ("{arch}: below half of clean accuracy ({half} %): never within the tested range (the clean-trained "
              "model still scores {acc} % at test blur {k}).")

LETTERS = ("At test blur {k}, the {noun} that lose most (clean-trained models, all architectures pooled) are "
           "{letters}; the most frequent confusions are {confusions}.")
LETTER_ITEM = "{cls} ({drop} points)"
CONFUSION_ITEM = "{true}→{pred} ({count})"

WRITERS = ("Writer spread ({arch} trained clean, writers with ≥ {min} test images): the middle half of writers "
           "scores {q25}–{q75} % on clean images (IQR {iqr0} points) and {q25k}–{q75k} % at test blur {k} "
           "(IQR {iqrk} points).")

PARTIAL = ("Partial results: {cells} {verb} fewer complete seeds than planned; these conclusions rest on fewer "
           "seeds: {which}.")
PARTIAL_CELL = "{arch} trained at blur {b} (n={n}/{expected})"

def _value(row) -> str:
    if row["n"] == 1:
        return VALUE_ONE_SEED.format(mean=pct(row["mean"]))
    return VALUE.format(mean=pct(row["mean"]), ci=fmt.ci_pct(row["ci_low"], row["ci_high"]), n=row["n"])


def best_sentence(exp: Experiment, look: dict, train_blur, test_blur, setting: str):
    """Best arch in one (train blur, test blur) setting, with a paired-by-seed verdict against the runner-up.

    Returns (conclusion, test): test is a LeadTest when a paired test was made, else None; a setting where
    every architecture is near chance is not ranked (nor tested: it would only add noise to Holm's family).
    """
    ranked = [(look[(a, train_blur, test_blur)], a) for a in exp.archs
              if (a, train_blur, test_blur) in look and look[(a, train_blur, test_blur)]["n"] > 0]
    if not ranked:
        return None, None
    test = None
    ranked.sort(key=lambda ra: -ra[0]["mean"])  # stable: ties keep config order
    (row, best) = ranked[0]
    # the ranking rests on every architecture planned in this setting, including ones with no result
    cells = {(a, train_blur) for a in exp.archs if exp.expected(a, train_blur)}
    label = setting.lower().replace("trained ", "best when trained ")
    chance = 1 / len(exp.classes) if exp.classes else None
    if chance is not None and row["mean"] < chance + NEAR_CHANCE_FRACTION * (1 - chance):
        text = NEAR_CHANCE.format(setting=setting, best=best, value=_value(row), chance=pct(chance),
                                  n_classes=len(exp.classes))
        return Conclusion(S_BEST, text, label=label, cells=cells), None
    if len(ranked) == 1:
        verdict = VERDICT_ALONE
    else:
        runner = ranked[1][1]
        va = seed_values(exp, best, train_blur, test_blur)
        vb = seed_values(exp, runner, train_blur, test_blur)
        seeds = sorted(set(va) & set(vb))
        cmp = paired([va[s] for s in seeds], [vb[s] for s in seeds])
        if cmp.verdict != TOO_FEW:
            test = LeadTest(setting, best, runner, cmp)
        if cmp.verdict == EXCEEDS:
            verdict = VERDICT_EXCEEDS.format(runner=runner, diff=points(cmp.diff_mean),
                                             ci=fmt.ci_points(cmp.ci_low, cmp.ci_high), n=cmp.n, p=p_value(cmp.p))
        elif cmp.verdict == NOT_DISTINGUISHABLE:
            verdict = VERDICT_NOT_DISTINGUISHABLE.format(runner=runner, diff=points(cmp.diff_mean),
                                                         ci=fmt.ci_points(cmp.ci_low, cmp.ci_high), n=cmp.n,
                                                         p=p_value(cmp.p))
        else:
            assert cmp.verdict == TOO_FEW
            diff = VERDICT_TOO_FEW_DIFF.format(diff=points(cmp.diff_mean)) if cmp.n else ""
            verdict = VERDICT_TOO_FEW.format(runner=runner, n=cmp.n, diff=diff)
    text = BEST.format(setting=setting, best=best, value=_value(row), verdict=verdict)
    return Conclusion(S_BEST, text, label=label, cells=cells), test


class LeadTest(NamedTuple):
    """One setting's best architecture tested against its runner-up (paired over seeds)."""
    setting: str
    best: str
    runner: str
    cmp: Paired


def multiple_sentence(tests: list) -> str | None:
    """Puts the leads in their family: with a dozen settings, one p just under 0.05 is what chance gives.

    ``tests``: a LeadTest per tested setting; no sentence when fewer than two were tested or none shows a lead.
    """
    if len(tests) < 2 or not any(t.cmp.verdict == EXCEEDS for t in tests):
        return None
    adjusted = holm([t.cmp.p for t in tests])
    leads = [(t, a) for t, a in zip(tests, adjusted) if t.cmp.verdict == EXCEEDS]
    kept = [MULTIPLE_KEPT.format(best=t.best, runner=t.runner, setting=t.setting[0].lower() + t.setting[1:],
                                 p=p_value(a))
            for t, a in leads if a < ALPHA]
    if kept:
        kept_text = join_and(kept)
    else:
        none = MULTIPLE_NONE_ONE if len(leads) == 1 else MULTIPLE_NONE
        kept_text = none.format(m=len(leads), alpha=ALPHA, p=p_value(min(a for _, a in leads)))
    return MULTIPLE.format(n=len(tests), alpha=ALPHA, expected=f"{len(tests) * ALPHA:.1f}", kept=kept_text)


def best_conclusions(exp: Experiment, look: dict) -> list:
    settings = [(k, k, SETTING_MATCHED.format(k=fmt_blur(k))) for k in exp.test_blurs if k in exp.train_blurs]
    if 0 in exp.train_blurs:  # test blur 0 is the same models as "trained and tested at blur 0"
        settings += [(0, k, SETTING_CLEAN.format(k=fmt_blur(k))) for k in exp.test_blurs if k != 0]
    out, tests = [], []
    for train_blur, test_blur, setting in settings:
        c, test = best_sentence(exp, look, train_blur, test_blur, setting)
        if c:
            out.append(c)
        if test:
            tests.append(test)
    text = multiple_sentence(tests)
    if text:
        cells = set().union(*(c.cells for c in out))
        out.append(Conclusion(S_BEST, text, label="multiple comparisons", cells=cells))
    return out


def recovery_conclusions(exp: Experiment, recovery: pd.DataFrame) -> list:
    out = []
    for arch in exp.archs:
        rows = recovery[recovery["arch"] == arch]
        items = []
        for r in rows.to_dict("records"):
            if not fmt.ok(r["gain"]):
                items.append(RECOVERY_ITEM_NO_DATA.format(k=fmt_blur(r["blur"])))
            elif fmt.ok(r["loss"]) and r["loss"] > 0:
                items.append(RECOVERY_ITEM.format(gain=points(r["gain"]), k=fmt_blur(r["blur"]),
                                                  fraction=fmt.share(r["fraction"]), loss=points(r["loss"], signed=False)))
            else:
                items.append(RECOVERY_ITEM_NO_LOSS.format(gain=points(r["gain"]), k=fmt_blur(r["blur"])))
        if items:
            cells = {(arch, 0)} | {(arch, r) for r in rows["blur"]}
            out.append(Conclusion(S_RECOVERY, RECOVERY.format(arch=arch, items=join_and(items)),
                                  label=f"recovery for {arch}", cells=cells))
    return out


def transfer_conclusions(exp: Experiment, look: dict) -> list:
    out = []
    for arch in exp.archs:
        c0 = look.get((arch, 0, 0))
        items, cells = [], {(arch, b) for b in exp.train_blurs if exp.expected(arch, b)}
        if c0 is not None and c0["n"] > 0 and 0 in exp.test_blurs:
            for b in exp.train_blurs:
                r = look.get((arch, b, 0))
                if b == 0 or r is None or r["n"] == 0:
                    continue
                items.append(TRANSFER_CLEAN_ITEM.format(acc=pct(r["mean"]), b=fmt_blur(b), diff=points(r["mean"] - c0["mean"])))
                cells.add((arch, b))
        if items:
            out.append(Conclusion(S_TRANSFER, TRANSFER_CLEAN.format(arch=arch, items=join_and(items), clean=pct(c0["mean"])),
                                  label=f"clean-image cost for {arch}", cells=cells))
        best_items, cells, diagonal = [], set(), True
        for k in exp.test_blurs:
            cand = [(look[(arch, b, k)]["mean"], b) for b in exp.train_blurs
                    if (arch, b, k) in look and look[(arch, b, k)]["n"] > 0]
            if not cand:
                continue
            m, b = max(cand, key=lambda mb: mb[0])
            diagonal = diagonal and b == k
            best_items.append(TRANSFER_BEST_ITEM.format(k=fmt_blur(k), b=fmt_blur(b), acc=pct(m)))
        cells = {(arch, b) for b in exp.train_blurs if exp.expected(arch, b)}
        if len(exp.train_blurs) > 1 and best_items:
            text = TRANSFER_DIAGONAL.format(arch=arch) if diagonal and len(best_items) == len(exp.test_blurs) \
                else TRANSFER_BEST.format(arch=arch, items=", ".join(best_items))
            out.append(Conclusion(S_TRANSFER, text, label=f"best train blur for {arch}", cells=cells))
    return out


def half_conclusions(exp: Experiment, look: dict) -> list:
    out = []
    if 0 not in exp.train_blurs or 0 not in exp.test_blurs:
        return out
    for arch in exp.archs:
        c0 = look.get((arch, 0, 0))
        if c0 is None or c0["n"] == 0:
            continue
        half = c0["mean"] / 2
        levels = [(k, look[(arch, 0, k)]["mean"]) for k in exp.test_blurs
                  if k > 0 and (arch, 0, k) in look and look[(arch, 0, k)]["n"] > 0]
        if not levels:
            continue
        first = next(((k, m) for k, m in levels if m < half), None)
        if first:
            text = HALF_AT.format(arch=arch, half=pct(half), k=fmt_blur(first[0]), acc=pct(first[1]))
        else:
            text = HALF_NEVER.format(arch=arch, half=pct(half), k=fmt_blur(levels[-1][0]), acc=pct(levels[-1][1]))
        out.append(Conclusion(S_HALF, text, label=f"half-of-clean level for {arch}", cells={(arch, 0)}))
    return out


def letter_conclusions(exp: Experiment, hurt: pd.DataFrame, confusions: pd.DataFrame, top: int = 3) -> list:
    out = []
    if hurt is None or not len(hurt):
        return out
    for k in exp.test_blurs:
        h = hurt[(hurt["arch"] == ALL_ARCHS) & (hurt["test_blur"] == k)].head(top)
        if not len(h):
            continue
        c = confusions[(confusions["arch"] == ALL_ARCHS) & (confusions["test_blur"] == k)].head(top)
        letters = join_and([LETTER_ITEM.format(cls=r["class"], drop=points(-r["drop"])) for r in h.to_dict("records")])
        conf = join_and([CONFUSION_ITEM.format(true=r["true"], pred=r["predicted"], count=r["count"])
                         for r in c.to_dict("records")]) or "not recorded"
        noun = exp.class_nouns[1]
        out.append(Conclusion(S_LETTERS, LETTERS.format(k=fmt_blur(k), noun=noun, letters=letters, confusions=conf),
                              label=f"{noun} at test blur {fmt_blur(k)}", cells={(a, 0) for a in exp.archs}))
    return out


def writer_conclusions(exp: Experiment, writers: pd.DataFrame | None, arch: str | None) -> list:
    if writers is None or not len(writers) or arch is None or 0 not in exp.test_blurs:
        return []
    w = writers[(writers["arch"] == arch) & (writers["train_blur"] == 0)]
    r0 = w[w["test_blur"] == 0]
    kmax = max(exp.test_blurs)
    rk = w[w["test_blur"] == kmax]
    if not len(r0) or not len(rk) or kmax == 0:
        return []
    r0, rk = r0.iloc[0], rk.iloc[0]
    text = WRITERS.format(arch=arch, min=MIN_WRITER_IMAGES, q25=pct(r0["q25"]), q75=pct(r0["q75"]),
                          iqr0=points(r0["q75"] - r0["q25"], signed=False), q25k=pct(rk["q25"]), q75k=pct(rk["q75"]),
                          k=fmt_blur(kmax), iqrk=points(rk["q75"] - rk["q25"], signed=False))
    return [Conclusion(S_WRITERS, text, label=f"writer spread for {arch}", cells={(arch, 0)})]


def partial_conclusion(summary: pd.DataFrame, conclusions: list) -> Conclusion | None:
    """Marks every conclusion that rests on a cell with fewer complete seeds than planned, and says which."""
    short = summary[summary["partial"]]
    if not len(short):
        return None
    bad = {(r["arch"], r["train_blur"]) for r in short.to_dict("records")}
    which = []
    for c in conclusions:
        if c.cells & bad:
            c.partial = True
            which.append(c.label)
    cells = [PARTIAL_CELL.format(arch=r["arch"], b=fmt_blur(r["train_blur"]), n=r["n"], expected=r["expected"])
             for r in short.to_dict("records")]
    text = PARTIAL.format(cells=join_and(cells), verb="has" if len(cells) == 1 else "have",
                          which=join_and(which) if which else "none")
    return Conclusion(S_PARTIAL, text, label="partial results")


def conclusions(exp: Experiment, summary: pd.DataFrame, matrix: pd.DataFrame, recovery: pd.DataFrame,
                hurt: pd.DataFrame, confusions: pd.DataFrame, writers: pd.DataFrame | None,
                writer_arch: str | None, robust: pd.DataFrame | None = None, se: pd.DataFrame | None = None) -> list:

    look = lookup(matrix)
    out = (best_conclusions(exp, look) + se_conclusions(exp, se) + recovery_conclusions(exp, recovery) + transfer_conclusions(exp, look)
           + robust_conclusions(exp, robust) + half_conclusions(exp, look) + letter_conclusions(exp, hurt, confusions)
           + writer_conclusions(exp, writers, writer_arch))
    p = partial_conclusion(summary, out)
    if p:
        out.append(p)
    return out


__all__ = ["Conclusion", "conclusions", "SECTIONS", "section_title"]
