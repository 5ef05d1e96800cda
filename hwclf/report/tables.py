"""Tables (pandas DataFrames) built from an Experiment: the tidy per-trial table and everything aggregated from it.

Every table keeps the grid cells that have no data (n = 0, NaN values) so a gap is visible rather than
silently dropped; means and intervals are over seeds (see stats.py).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from hwclf.mixture import is_mix
from hwclf.report.load import COMPLETE, Experiment
from hwclf.report.stats import describe, metric_range, quantiles

TIDY_COLUMNS = ["arch", "train_blur", "seed", "test_blur", "accuracy", "balanced_accuracy", "loss", "epochs",
                "evaluated_epoch", "wall_time_s", "train_time_s", "status", "trial"]
ALL_ARCHS = "(all)"  # label of rows pooled over architectures
MIN_WRITER_IMAGES = 5  # writers with fewer test images per trial give per-writer accuracies too coarse to compare
TOP = 5  # letters / confusions listed per blur level


def _f(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def tidy_table(exp: Experiment) -> pd.DataFrame:
    """One row per grid cell x test blur level; failed, incomplete and missing cells keep their rows with NaN
    metrics so nothing is silently dropped."""
    rows = []
    for t in exp.trials:
        ev = t.evaluation or {}
        levels = sorted(set(exp.test_blurs) | set(t.tests))
        for k in levels:
            lv = t.tests.get(k)
            rows.append({
                "arch": t.arch, "train_blur": t.train_blur, "seed": t.seed, "test_blur": k,
                "accuracy": lv.accuracy if lv else np.nan,
                "balanced_accuracy": lv.balanced_accuracy if lv else np.nan,
                "loss": lv.loss if lv else np.nan,
                "epochs": t.epochs, "evaluated_epoch": ev.get("evaluated_epoch"),
                "wall_time_s": _f(ev.get("wall_time_s")), "train_time_s": _f(ev.get("train_time_s")),
                "status": t.status, "trial": t.trial,
            })
    df = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    for c in ("epochs", "evaluated_epoch"):
        df[c] = pd.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v) for v in df[c]],
                         dtype="Int64")
    for c in ("accuracy", "balanced_accuracy", "loss", "wall_time_s", "train_time_s"):
        df[c] = df[c].astype(float)
    df["seed"] = df["seed"].astype(int)
    return df


def _complete(tidy: pd.DataFrame) -> pd.DataFrame:
    return tidy[tidy["status"] == COMPLETE]


def _cells(exp: Experiment) -> list:
    """(arch, train blur) pairs of the grid, in report order."""
    present = {(a, b) for a, b, _ in exp.grid}
    return [(a, b) for a in exp.archs for b in exp.train_blurs if (a, b) in present]


def _stat_columns(prefix: str, values) -> dict:
    d = describe(values, bounds=metric_range(prefix))
    return {f"{prefix}_mean": d.mean, f"{prefix}_std": d.std, f"{prefix}_ci95": d.half,
            f"{prefix}_ci_low": d.ci_low, f"{prefix}_ci_high": d.ci_high}


SUMMARY_METRICS = [("clean", "accuracy"), ("clean", "balanced_accuracy"), ("clean", "loss"),
                   ("matched", "accuracy"), ("matched", "loss")]


def n_label(n: int, expected: int) -> str:
    return f"{n}/{expected}" + (" ⚠" if n < expected else "")


def summary_table(exp: Experiment, tidy: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per arch x train blur: seeds complete out of expected; clean-test (test blur 0) and matched-blur
    (test blur == train blur) metrics as mean, std and t-based 95% CI over seeds."""
    tidy = tidy_table(exp) if tidy is None else tidy
    comp = _complete(tidy)
    rows = []
    for arch, b in _cells(exp):
        sub = comp[(comp["arch"] == arch) & (comp["train_blur"] == b)]
        n = int(sub["seed"].nunique())
        expected = exp.expected(arch, b)
        row = {"arch": arch, "train_blur": b, "n": n, "expected": expected, "partial": n < expected,
               "n_label": n_label(n, expected)}
        for which, metric in SUMMARY_METRICS:
            # a mixture has no single train blur, so no matched-blur metric (NaN, n = 0); its clean metric exists
            level = 0 if which == "clean" else None if is_mix(b) else b
            row.update(_stat_columns(f"{which}_{metric}", sub.loc[sub["test_blur"] == level, metric]))
        rows.append(row)
    return pd.DataFrame(rows)


def matrix_table(exp: Experiment, tidy: pd.DataFrame | None = None, metric: str = "accuracy") -> pd.DataFrame:
    """arch x train blur x test blur -> n, mean, std, CI of ``metric`` over seeds (n = 0 rows kept)."""
    tidy = tidy_table(exp) if tidy is None else tidy
    comp = _complete(tidy)
    groups = {k: g[metric].to_numpy() for k, g in comp.groupby(["arch", "train_blur", "test_blur"], sort=False)}
    rows = []
    for arch, b in _cells(exp):
        for k in exp.test_blurs:
            d = describe(groups.get((arch, b, k), []), bounds=metric_range(metric))
            rows.append({"arch": arch, "train_blur": b, "test_blur": k, "n": d.n, "mean": d.mean, "std": d.std,
                         "ci95": d.half, "ci_low": d.ci_low, "ci_high": d.ci_high})
    return pd.DataFrame(rows)


def lookup(matrix: pd.DataFrame) -> dict:
    """(arch, train blur, test blur) -> row dict, for building sentences."""
    return {(r["arch"], r["train_blur"], r["test_blur"]): r for r in matrix.to_dict("records")}


def seed_values(exp: Experiment, arch: str, train_blur, test_blur, metric: str = "accuracy") -> dict:
    """seed -> metric for the complete trials of one cell (for paired comparisons)."""
    out = {}
    for t in exp.trials:
        if t.status == COMPLETE and t.arch == arch and t.train_blur == train_blur and test_blur in t.tests:
            out[t.seed] = getattr(t.tests[test_blur], metric)
    return out


def per_letter_table(exp: Experiment) -> pd.DataFrame:
    """arch x train blur x test blur x class: mean (and std, n) over seeds of per-class accuracy (recall)."""
    acc = defaultdict(list)
    for t in exp.complete():
        for k, lv in t.tests.items():
            if lv.per_class is None:
                continue
            acc[(t.arch, t.train_blur, k)].append(lv.per_class)
    rows = []
    for (arch, b, k), arrays in acc.items():
        width = max(len(a) for a in arrays)
        m = np.full((len(arrays), width), np.nan)
        for i, a in enumerate(arrays):
            m[i, :len(a)] = a
        with np.errstate(all="ignore"):
            n = np.isfinite(m).sum(axis=0)
            mean = np.where(n > 0, np.nansum(m, axis=0) / np.maximum(n, 1), np.nan)
            std = np.array([np.std(c[np.isfinite(c)], ddof=1) if (np.isfinite(c).sum() > 1) else np.nan for c in m.T])
        for ci in range(width):
            rows.append({"arch": arch, "train_blur": b, "test_blur": k, "class_index": ci,
                         "class": exp.classes[ci] if ci < len(exp.classes) else str(ci),
                         "accuracy": mean[ci], "std": std[ci], "n": int(n[ci])})
    cols = ["arch", "train_blur", "test_blur", "class_index", "class", "accuracy", "std", "n"]
    df = pd.DataFrame(rows, columns=cols)
    if len(df):
        order = {a: i for i, a in enumerate(exp.archs)}
        blur_order = {b: i for i, b in enumerate(exp.train_blurs)}  # mixtures after the plain levels
        keys = {"arch": order, "train_blur": blur_order}
        df = df.sort_values(["arch", "train_blur", "test_blur", "class_index"],
                            key=lambda s: s.map(keys[s.name]) if s.name in keys else s, kind="stable")
    return df.reset_index(drop=True)


def _clean_train_blur(exp: Experiment):
    return 0 if 0 in exp.train_blurs else None


def letter_drops(exp: Experiment) -> pd.DataFrame:
    """For models trained clean: per arch (and pooled over archs, arch = "(all)") x blurred test level x class,
    clean-test accuracy, blurred-test accuracy and the drop, all means over trials."""
    b0 = _clean_train_blur(exp)
    cols = ["arch", "test_blur", "class_index", "class", "clean_accuracy", "blurred_accuracy", "drop"]
    if b0 is None or 0 not in exp.test_blurs:
        return pd.DataFrame(columns=cols)
    per = defaultdict(list)  # (arch, k) -> list of per-class arrays
    for t in exp.complete():
        if t.train_blur != b0:
            continue
        for k, lv in t.tests.items():
            if lv.per_class is not None:
                per[(t.arch, k)].append(lv.per_class)
                per[(ALL_ARCHS, k)].append(lv.per_class)
    rows = []
    for arch in [*exp.archs, ALL_ARCHS]:
        clean = per.get((arch, 0))
        if not clean:
            continue
        with np.errstate(all="ignore"):
            c_mean = np.nanmean(np.vstack(clean), axis=0)
        for k in exp.test_blurs:
            if k == 0 or not per.get((arch, k)):
                continue
            with np.errstate(all="ignore"):
                k_mean = np.nanmean(np.vstack(per[(arch, k)]), axis=0)
            for ci in range(len(c_mean)):
                rows.append({"arch": arch, "test_blur": k, "class_index": ci,
                             "class": exp.classes[ci] if ci < len(exp.classes) else str(ci),
                             "clean_accuracy": c_mean[ci], "blurred_accuracy": k_mean[ci],
                             "drop": c_mean[ci] - k_mean[ci]})
    return pd.DataFrame(rows, columns=cols)


def letters_hurt_table(exp: Experiment, drops: pd.DataFrame | None = None, top: int = TOP) -> pd.DataFrame:
    """The ``top`` classes whose accuracy drops most from clean to each blurred test level (trained clean)."""
    drops = letter_drops(exp) if drops is None else drops
    cols = ["arch", "test_blur", "rank", "class", "clean_accuracy", "blurred_accuracy", "drop"]
    out = []
    for (arch, k), g in drops.groupby(["arch", "test_blur"], sort=False):
        g = g[np.isfinite(g["drop"])].sort_values(["drop", "class_index"], ascending=[False, True], kind="stable")
        g = g.head(top).copy()
        g["rank"] = range(1, len(g) + 1)
        out.append(g[cols])
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)


def confusion_sums(exp: Experiment) -> dict:
    """(arch or "(all)", test blur) -> confusion counts summed over the seeds of the clean-trained models."""
    b0 = _clean_train_blur(exp)
    sums: dict = {}
    if b0 is None:
        return sums
    for t in exp.complete():
        if t.train_blur != b0:
            continue
        for k, lv in t.tests.items():
            if lv.confusion is None or lv.confusion.ndim != 2:
                continue
            for key in ((t.arch, k), (ALL_ARCHS, k)):
                if key in sums and sums[key].shape == lv.confusion.shape:
                    sums[key] = sums[key] + lv.confusion
                elif key not in sums:
                    sums[key] = lv.confusion.copy()
    return sums


def confusions_table(exp: Experiment, sums: dict | None = None, top: int = TOP) -> pd.DataFrame:
    """The ``top`` off-diagonal (true -> predicted) pairs at each blurred test level, clean-trained models;
    ``share`` is the fraction of that true class's test images that went to the predicted class."""
    sums = confusion_sums(exp) if sums is None else sums
    cols = ["arch", "test_blur", "rank", "true", "predicted", "count", "share"]
    rows = []
    for arch in [*exp.archs, ALL_ARCHS]:
        for k in exp.test_blurs:
            m = sums.get((arch, k))
            if k == 0 or m is None:
                continue
            off = m.astype(float).copy()
            np.fill_diagonal(off, -1)
            flat = np.argsort(-off, axis=None, kind="stable")[:top]
            row_tot = m.sum(axis=1)
            for r, idx in enumerate(flat, start=1):
                i, j = np.unravel_index(idx, m.shape)
                if off[i, j] <= 0:
                    break
                rows.append({"arch": arch, "test_blur": k, "rank": r, "true": _cls(exp, i), "predicted": _cls(exp, j),
                             "count": int(m[i, j]), "share": float(m[i, j] / row_tot[i]) if row_tot[i] else np.nan})
    return pd.DataFrame(rows, columns=cols)


def _cls(exp: Experiment, i) -> str:
    i = int(i)
    return exp.classes[i] if i < len(exp.classes) else str(i)


def writer_accuracies(exp: Experiment, min_images: int = MIN_WRITER_IMAGES) -> dict:
    """(arch, train blur, test blur) -> array of per-writer accuracies, seeds pooled (correct / total summed over
    the seeds), for writers with at least ``min_images`` test images per trial on average."""
    nw = len(exp.writers)
    acc: dict = {}
    if not nw:
        return acc
    sums: dict = {}
    for t in exp.complete():
        for k, lv in t.tests.items():
            if lv.writer_index is None:
                continue
            key = (t.arch, t.train_blur, k)
            c, tot, seen = sums.setdefault(key, (np.zeros(nw, np.int64), np.zeros(nw, np.int64), np.zeros(nw, np.int64)))
            np.add.at(c, lv.writer_index, lv.writer_correct)
            np.add.at(tot, lv.writer_index, lv.writer_total)
            np.add.at(seen, lv.writer_index, 1)
    for key, (c, tot, seen) in sums.items():
        with np.errstate(all="ignore"):
            keep = (seen > 0) & (tot >= min_images * np.maximum(seen, 1))
            acc[key] = c[keep] / tot[keep]
    return acc


def writers_table(exp: Experiment, accs: dict | None = None, min_images: int = MIN_WRITER_IMAGES) -> pd.DataFrame | None:
    """Distribution over test writers of per-writer accuracy, per arch x train blur x test blur; None when the
    dataset has no writer ids."""
    accs = writer_accuracies(exp, min_images) if accs is None else accs
    if not accs:
        return None
    rows = []
    for arch, b in _cells(exp):
        for k in exp.test_blurs:
            a = accs.get((arch, b, k))
            if a is None:
                continue
            d = describe(a)
            q = quantiles(a)
            n_seeds = sum(1 for t in exp.complete() if t.arch == arch and t.train_blur == b and k in t.tests)
            rows.append({"arch": arch, "train_blur": b, "test_blur": k, "n_writers": d.n, "n_seeds": n_seeds,
                         "min_images": min_images, "mean": d.mean, "std": d.std, "q05": q[0], "q25": q[1],
                         "q50": q[2], "q75": q[3], "q95": q[4]})
    return pd.DataFrame(rows)


def recovery_table(exp: Experiment, matrix: pd.DataFrame) -> pd.DataFrame:
    """How much training on blur k recovers at test blur k: matched minus clean-trained accuracy at k, and as a
    fraction of what blur k costs the clean model (its clean accuracy minus its accuracy at k)."""
    cols = ["arch", "blur", "clean_model_clean", "clean_model_at_blur", "matched", "gain", "loss", "fraction",
            "n_clean", "n_matched"]
    look = lookup(matrix)
    rows = []
    if 0 not in exp.train_blurs or 0 not in exp.test_blurs:
        return pd.DataFrame(columns=cols)
    for arch in exp.archs:
        c0 = look.get((arch, 0, 0))
        for k in exp.train_blurs:
            if k == 0 or k not in exp.test_blurs:
                continue
            ck, mk = look.get((arch, 0, k)), look.get((arch, k, k))
            if c0 is None or ck is None or mk is None:
                continue
            gain = mk["mean"] - ck["mean"]
            loss = c0["mean"] - ck["mean"]
            rows.append({"arch": arch, "blur": k, "clean_model_clean": c0["mean"], "clean_model_at_blur": ck["mean"],
                         "matched": mk["mean"], "gain": gain, "loss": loss,
                         "fraction": gain / loss if loss > 0 else np.nan, "n_clean": min(c0["n"], ck["n"]),
                         "n_matched": mk["n"]})
    return pd.DataFrame(rows, columns=cols)


def learning_curves_table(exp: Experiment) -> pd.DataFrame:
    """Per-epoch history of every complete trial (validation accuracy/loss by epoch)."""
    rows = []
    for t in exp.complete():
        for h in t.history:
            if "epoch" not in h:
                continue
            rows.append({"arch": t.arch, "train_blur": t.train_blur, "seed": t.seed, "epoch": int(h["epoch"]),
                         "accuracy": _f(h.get("accuracy")), "loss": _f(h.get("loss")),
                         "val_accuracy": _f(h.get("val_accuracy")), "val_loss": _f(h.get("val_loss"))})
    return pd.DataFrame(rows, columns=["arch", "train_blur", "seed", "epoch", "accuracy", "loss", "val_accuracy",
                                       "val_loss"])


def models_table(exp: Experiment, tidy: pd.DataFrame) -> pd.DataFrame:
    """Per arch: parameters, training FLOPs per image, and mean train / wall time per complete trial."""
    rows = []
    for arch in exp.archs:
        ts = [t for t in exp.complete() if t.arch == arch]
        model = next(((t.evaluation or {}).get("model") or {} for t in ts if (t.evaluation or {}).get("model")), {})
        rows.append({"arch": arch, "params": model.get("params"), "train_flops_per_image":
                     model.get("train_flops_per_image"), "complete_trials": len(ts),
                     "mean_train_time_s": float(np.nanmean([_f((t.evaluation or {}).get("train_time_s")) for t in ts]))
                     if ts else np.nan,
                     "mean_wall_time_s": float(np.nanmean([_f((t.evaluation or {}).get("wall_time_s")) for t in ts]))
                     if ts else np.nan})
    return pd.DataFrame(rows)


def best_arch(exp: Experiment, matrix: pd.DataFrame) -> str | None:
    """The architecture with the highest matched accuracy averaged over the train blur levels (the model you
    would deploy if you could train at the blur you expect). Only levels where every architecture has a result
    count, so a missing hard level does not flatter an architecture; ties go to the first in config order."""
    look = lookup(matrix)

    def has(a, b):
        r = look.get((a, b, b))
        return r is not None and r["n"] > 0 and np.isfinite(r["mean"])

    archs = [a for a in exp.archs if any(has(a, b) for b in exp.train_blurs)]
    common = [b for b in exp.train_blurs if all(has(a, b) for a in archs)]
    best, best_v = None, -np.inf
    for arch in archs:
        levels = common or [b for b in exp.train_blurs if has(arch, b)]
        v = float(np.mean([look[(arch, b, b)]["mean"] for b in levels]))
        if v > best_v:
            best, best_v = arch, v
    return best


def reference_table(exp: Experiment, matrix: pd.DataFrame) -> pd.DataFrame:
    """Published or earlier numbers (config ``extra.reference``) beside this sweep's, per test blur.

    ``extra.reference`` = {label, arch, train_blur, accuracy: {test blur: value}}; test blurs this sweep
    did not run are kept with NaN so a reader sees the gap.
    """
    ref = (exp.config.get("extra") or {}).get("reference")
    cols = ["test_blur", "reference", "arch", "train_blur", "n", "mean", "std", "ci_low", "ci_high", "difference"]
    if not isinstance(ref, dict) or not isinstance(ref.get("accuracy"), dict):
        return pd.DataFrame(columns=cols)
    look = lookup(matrix)
    arch, b = ref.get("arch"), ref.get("train_blur", 0)
    rows = []
    for k, value in sorted(ref["accuracy"].items(), key=lambda kv: float(kv[0])):
        k = float(k)
        k = int(k) if k.is_integer() else k
        r = look.get((arch, b, k)) or {}
        mean = r.get("mean", np.nan)
        rows.append({"test_blur": k, "reference": float(value), "arch": arch, "train_blur": b, "n": r.get("n", 0),
                     "mean": mean, "std": r.get("std", np.nan), "ci_low": r.get("ci_low", np.nan),
                     "ci_high": r.get("ci_high", np.nan), "difference": mean - float(value)})
    return pd.DataFrame(rows, columns=cols)
