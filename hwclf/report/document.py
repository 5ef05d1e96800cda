"""What the report says, as blocks (render.py turns them into Markdown and HTML).

Section order is fixed: What was run, Conclusions, Tables, Figures, Missing and failed trials.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass

import pandas as pd

from hwclf.report import fmt
from hwclf.report.conclude import SECTIONS, Conclusion, section_title
from hwclf.report.fmt import DASH, fmt_blur, join_and, pct, points
from hwclf.report.experiment import PART_COLUMNS
from hwclf.report.load import COMPLETE, FAILED, INCOMPLETE, MISSING, SWEEP_FILE, Experiment
from hwclf.report.render import Bullets, Heading, Image, Para, Table
from hwclf.report.stats import CI_METHOD
from hwclf.report.tables import ALL_ARCHS, MIN_WRITER_IMAGES

FEMNIST_NOTE = ("femnist-letters is FEMNIST: the handwritten letters of NIST Special Database 19 with their writer "
                "ids, not EMNIST letters. Its classes are not balanced, so balanced accuracy is reported next to "
                "accuracy.")


@dataclass
class Results:
    """Every table the report shows or writes, computed once."""

    tidy: pd.DataFrame
    summary: pd.DataFrame
    matrix: pd.DataFrame
    loss_matrix: pd.DataFrame
    per_letter: pd.DataFrame
    drops: pd.DataFrame
    hurt: pd.DataFrame
    confusions: pd.DataFrame
    writer_accs: dict
    writers: pd.DataFrame | None
    recovery: pd.DataFrame
    reference: pd.DataFrame
    curves: pd.DataFrame
    models: pd.DataFrame
    best_arch: str | None
    conclusions: list
    robust: pd.DataFrame | None = None  # robust.py: mixture vs matched vs clean, empty without mixtures
    se: pd.DataFrame | None = None  # se.py: each SE twin vs its plain net, empty without twins


# --- summary (also summary.md) ---------------------------------------------------------------------------

SUMMARY_COLUMNS = ["Arch", "Train blur", "n", "Clean-test accuracy", "Clean-test balanced accuracy",
                   "Clean-test loss", "Matched-blur accuracy", "Matched-blur loss"]
SUMMARY_CAPTION = ("Mean ± std over seeds, then the 95% CI of the mean (t-distribution, cut to [0, 100] % for "
                   "accuracies). Clean test = test blur 0; "
                   "matched = tested at the train blur (a mixture such as mix 0/5/10 has no single train blur: no "
                   "matched value, —). n = complete seeds / planned; ⚠ marks fewer than planned; with n=1 the std "
                   "and CI are undefined.")


def _metric_cell(row: dict, prefix: str, percent: bool) -> str:
    mean, std = row[f"{prefix}_mean"], row[f"{prefix}_std"]
    lo, hi = row[f"{prefix}_ci_low"], row[f"{prefix}_ci_high"]
    n = row["n"]
    if not fmt.ok(mean):
        return DASH
    if n == 1:
        return (f"{pct(mean)} %" if percent else fmt.num3(mean)) + " (n=1: std and CI undefined)"
    pm = fmt.pm_pct(mean, std) if percent else fmt.pm_num(mean, std)
    ci = fmt.ci_pct(lo, hi) if percent else fmt.ci_num(lo, hi)
    return f"{pm} {ci}"


def summary_rows(summary: pd.DataFrame) -> list:
    rows = []
    for r in summary.to_dict("records"):
        rows.append([r["arch"], fmt_blur(r["train_blur"]), r["n_label"],
                     _metric_cell(r, "clean_accuracy", True), _metric_cell(r, "clean_balanced_accuracy", True),
                     _metric_cell(r, "clean_loss", False), _metric_cell(r, "matched_accuracy", True),
                     _metric_cell(r, "matched_loss", False)])
    return rows


def summary_blocks(exp: Experiment, summary: pd.DataFrame) -> list:
    return [Table(SUMMARY_COLUMNS, summary_rows(summary), SUMMARY_CAPTION)]


# --- sections --------------------------------------------------------------------------------------------

def _row_epochs(v) -> str:
    """{"30": 20} -> "train blur 30: 20" (a row's own budget); none -> a sentence saying every row has `epochs`."""
    if not isinstance(v, dict) or not v:
        return "(none: every row trains for epochs)"
    return ", ".join(f"train blur {fmt_blur(k)}: {n}" for k, n in v.items())


def _value(v) -> str:
    if v is None:
        return DASH
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) if v else "(empty)"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, default=str) if v else "{}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def what_was_run(exp: Experiment, res: Results) -> list:
    c = exp.counts()
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from hwclf import __version__

    where = f"merged from {len(exp.parts)} parts" if exp.parts else f"at {exp.location}"
    blocks: list = [Heading(2, "What was run"),
                    Para(f"Experiment {exp.name} {where}; report written {now} by hwclf {__version__}.")]
    if exp.parts:
        blocks.append(Table(PART_COLUMNS, exp.parts, "the parts: each source's sweep, what it holds and where it ran"))
    for note in exp.notes:
        blocks.append(Para(note, "note"))
    cfg = exp.config
    blocks.append(Para(
        f"Grid: {len(exp.archs)} architectures × {len(exp.train_blurs)} train blur levels × {len(exp.seeds)} seeds = "
        f"{len(exp.grid)} trials; every model is tested at {exp.blur_kind} blur "
        f"{', '.join(fmt_blur(k) for k in exp.test_blurs)}. Trials: {c[COMPLETE]} complete, {c[FAILED]} failed, "
        f"{c[INCOMPLETE]} incomplete, {c[MISSING]} missing."))

    blocks.append(Heading(3, "Configuration"))
    if cfg:
        rows = [[k, _row_epochs(v) if k == "epochs_by_train_blur" else _value(v)] for k, v in cfg.items()]
        blocks.append(Table(["Key", "Value"], rows, f"config of {SWEEP_FILE}"))
    else:
        first = next((t for t in exp.trials if t.status == COMPLETE), None)
        tcfg = ((first.evaluation or {}).get("config") if first else None) or (first.params if first else None) or {}
        if tcfg:
            blocks.append(Table(["Key", "Value"], [[k, _value(v)] for k, v in tcfg.items()],
                                f"no sweep config: trial config of {first.trial} (evaluation.json)"))
        else:
            blocks.append(Para("No configuration found."))

    blocks.append(Heading(3, "Dataset"))
    ds = exp.dataset
    rows = []
    for key in ("name", "fingerprint", "n_train", "n_val", "n_test", "has_writers"):
        if key in ds:
            rows.append([key, _value(ds[key])])
    classes = ds.get("classes") or exp.classes
    if classes:
        rows.append(["classes", f"{len(classes)}: {''.join(map(str, classes)) if all(len(str(x)) == 1 for x in classes) else ', '.join(map(str, classes))}"])
    for key, v in ds.items():
        if key not in ("name", "fingerprint", "n_train", "n_val", "n_test", "has_writers", "classes"):
            rows.append([key, _value(v)])
    if rows:
        blocks.append(Table(["Field", "Value"], rows))
    if exp.dataset_name == "femnist-letters":
        blocks.append(Para(FEMNIST_NOTE, "note"))
    if exp.samples_png:
        blocks.append(Image("samples.png", exp.samples_png, "first test images at every blur level",
                            f"samples.png: the first images of {exp.dataset_name} at every test blur level "
                            f"(what blur does to a {exp.class_nouns[0]}), written by the sweep driver."))

    blocks.append(Heading(3, "Architectures"))
    mrows = []
    for r in res.models.to_dict("records"):
        mrows.append([r["arch"], f"{int(r['params']):,}" if fmt.ok(r["params"]) else DASH,
                      f"{float(r['train_flops_per_image']) / 1e6:,.1f} M" if fmt.ok(r["train_flops_per_image"]) else DASH,
                      str(r["complete_trials"]), fmt.duration(r["mean_train_time_s"]), fmt.duration(r["mean_wall_time_s"])])
    blocks.append(Table(["Arch", "Parameters", "Train FLOPs / image", "Complete trials", "Mean train time",
                         "Mean trial wall time"], mrows))

    blocks.append(Heading(3, "Environment"))
    env = exp.sweep.get("environment") or {}
    erows = [[k, _value(v)] for k, v in env.items()]
    for key in ("started_at", "finished_at", "wall_time_s", "command"):
        if key in exp.sweep:
            v = exp.sweep[key]
            if key == "wall_time_s":
                v = fmt.duration(v) if fmt.ok(v) else "not finished"
            elif key == "finished_at" and v is None:
                v = "not finished (the sweep is still running, was stopped or crashed)"
            erows.append([key, _value(v)])
    if exp.sweep.get("schema"):
        erows.append(["schema", _value(exp.sweep["schema"])])
    blocks.append(Table(["Field", "Value"], erows) if erows else Para(f"No environment recorded (no {SWEEP_FILE})."))
    return blocks


def conclusions_blocks(exp: Experiment, conclusions: list) -> list:
    blocks: list = [Heading(2, "Conclusions"),
                    Para("Each sentence is computed from the tables below. Means are over seeds. " + CI_METHOD +
                         " A lead between architectures is tested with a paired t-test over seeds "
                         "(p < 0.05), and with fewer than 3 seeds no verdict is given. ⚠ marks a sentence that rests "
                         "on fewer seeds than planned.")]
    for section in SECTIONS:
        cs: list[Conclusion] = [c for c in conclusions if c.section == section]
        if not cs:
            continue
        blocks.append(Heading(3, section_title(section, exp)))
        blocks.append(Bullets([c.text for c in cs], [c.partial for c in cs]))
    return blocks


def tables_blocks(exp: Experiment, res: Results) -> list:
    blocks: list = [Heading(2, "Tables"), Heading(3, "Summary per architecture and train blur")]
    blocks += summary_blocks(exp, res.summary)

    blocks.append(Heading(3, "Accuracy: train blur × test blur"))
    look = {(r["arch"], r["train_blur"], r["test_blur"]): r for r in res.matrix.to_dict("records")}
    rows = []
    summ = {(r["arch"], r["train_blur"]): r for r in res.summary.to_dict("records")}
    for (arch, b), s in summ.items():
        row = [arch, fmt_blur(b), s["n_label"]]
        for k in exp.test_blurs:
            r = look.get((arch, b, k))
            row.append(DASH if r is None or r["n"] == 0 else
                       (f"{pct(r['mean'])} ± {100 * r['std']:.1f}" if fmt.ok(r["std"]) else pct(r["mean"])))
        rows.append(row)
    blocks.append(Table(["Arch", "Train blur", "n"] + [f"test {fmt_blur(k)}" for k in exp.test_blurs], rows,
                        "Test accuracy (%), mean ± std over seeds (matrix.csv has the CIs)."))

    if len(res.reference):
        ref = (exp.config.get("extra") or {}).get("reference") or {}
        r0 = res.reference.iloc[0]
        blocks.append(Heading(3, "Reference comparison"))
        rows = [[fmt_blur(r["test_blur"]), pct(r["reference"]),
                 DASH if not r["n"] else (f"{pct(r['mean'])} ± {100 * r['std']:.1f} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]"
                                          if fmt.ok(r["std"]) else pct(r["mean"])),
                 str(int(r["n"])), DASH if not r["n"] else points(r["difference"])]
                for r in res.reference.to_dict("records")]
        blocks.append(Table(["Test blur", f"Reference: {ref.get('label', 'reference')}",
                             f"This sweep: {r0['arch']} trained at blur {fmt_blur(r0['train_blur'])} (%), mean ± std [95% CI]",
                             "n", "Difference (points)"], rows,
                            "Accuracy (%). The reference comes from the config (extra.reference); it is not recomputed "
                            "here, and it may be another dataset or protocol: read its label."))

    if res.se is not None and len(res.se):
        from hwclf.report.se import SE_CAPTION, SE_COLUMNS, se_rows

        blocks.append(Heading(3, "What the Squeeze-and-Excitation block changes"))
        blocks.append(Table(SE_COLUMNS, se_rows(res.se), SE_CAPTION))

    if res.robust is not None and len(res.robust):
        from hwclf.report.robust import ROBUST_CAPTION, ROBUST_COLUMNS, robust_rows

        blocks.append(Heading(3, "Is one robust model enough?"))
        blocks.append(Table(ROBUST_COLUMNS, robust_rows(res.robust), ROBUST_CAPTION))

    if len(res.recovery):
        blocks.append(Heading(3, "What training on blur recovers"))
        rows = [[r["arch"], fmt_blur(r["blur"]), pct(r["clean_model_clean"]), pct(r["clean_model_at_blur"]),
                 pct(r["matched"]), points(r["gain"]), points(r["loss"], signed=False), fmt.share(r["fraction"])]
                for r in res.recovery.to_dict("records")]
        blocks.append(Table(["Arch", "Blur k", "Clean model, clean test (%)", "Clean model at k (%)",
                             "Trained at k, tested at k (%)", "Gain (points)", "Loss to blur (points)",
                             "Gain / loss"], rows,
                            "Gain = matched minus clean-trained accuracy at test blur k; loss = what blur k costs the "
                            "clean-trained model. Means over seeds."))

    hurt = res.hurt[res.hurt["arch"] == ALL_ARCHS] if len(res.hurt) else res.hurt
    if len(hurt):
        singular, plural = exp.class_nouns
        blocks.append(Heading(3, f"{plural.capitalize()} hurt most by blur"))
        rows = [[fmt_blur(r["test_blur"]), str(r["rank"]), r["class"], pct(r["clean_accuracy"]),
                 pct(r["blurred_accuracy"]), points(-r["drop"])] for r in hurt.to_dict("records")]
        blocks.append(Table(["Test blur", "Rank", singular.capitalize(), "Clean test (%)", "Blurred test (%)", "Change (points)"],
                            rows, "Models trained clean, all architectures pooled (per architecture: letters_hurt.csv)."))
    conf = res.confusions[res.confusions["arch"] == ALL_ARCHS] if len(res.confusions) else res.confusions
    if len(conf):
        blocks.append(Heading(3, "Most frequent confusions"))
        rows = [[fmt_blur(r["test_blur"]), str(r["rank"]), f"{r['true']} → {r['predicted']}", f"{int(r['count']):,}",
                 fmt.share(r["share"]) if r["share"] >= 0.005 else "<1 %"] for r in conf.to_dict("records")]
        blocks.append(Table(["Test blur", "Rank", "True → predicted", "Count", "Share of true class"], rows,
                            "Confusion counts summed over seeds and architectures, models trained clean "
                            "(per architecture: confusions.csv)."))

    if res.writers is not None and len(res.writers) and res.best_arch:
        w = res.writers[res.writers["arch"] == res.best_arch]
        w = w[(w["train_blur"] == 0) | (w["train_blur"] == w["test_blur"])]
        if len(w):
            blocks.append(Heading(3, f"Per-writer accuracy ({res.best_arch})"))
            rows = [[fmt_blur(r["train_blur"]), fmt_blur(r["test_blur"]), str(r["n_writers"]), pct(r["mean"]),
                     pct(r["q05"]), pct(r["q25"]), pct(r["q50"]), pct(r["q75"]), pct(r["q95"])]
                    for r in w.to_dict("records")]
            blocks.append(Table(["Train blur", "Test blur", "Writers", "Mean (%)", "5 %", "25 %", "Median", "75 %", "95 %"],
                                rows,
                                f"Distribution over test writers with ≥ {MIN_WRITER_IMAGES} test images of per-writer "
                                f"accuracy (seeds pooled), for {res.best_arch}, the architecture with the best matched "
                                "accuracy averaged over blur levels; all architectures: writers.csv."))
    return blocks


FIGURES = [
    ("accuracy_vs_blur.png", "test accuracy vs blur",
     "Left: models trained clean, tested at every blur level. Right: models tested at the blur they were trained on. "
     "Band: 95% CI over seeds."),
    ("loss_vs_blur.png", "test loss vs blur", "As above, for the test cross-entropy loss."),
    ("heatmaps.png", "accuracy heatmaps", "Mean accuracy for every train blur × test blur pair, per architecture."),
    ("learning_curves.png", "learning curves", "Validation accuracy and loss per epoch, mean ± std over seeds."),
    ("per_letter.png", "per-{noun} accuracy drop",
     "Accuracy each {noun} loses at each blurred test level relative to the clean test (models trained clean)."),
    ("writers.png", "per-writer accuracy", "Spread of per-writer accuracy across test writers."),
    ("se.png", "SE twin minus plain net",
     "Per family: accuracy of the net with Squeeze-and-Excitation blocks minus the plain net, trained the same way, "
     "paired over seeds, with its 95% CI; filled: beyond the seed spread after Holm's correction within the family; "
     "grey: both near chance, not tested."),
    ("robust.png", "one robust model vs specialists",
     "Per architecture: the model trained on a blur mixture, the model trained at each test blur (matched) and the "
     "clean-trained model, at every test blur; band: 95% CI over seeds; dotted lines: the mixture's levels."),
]


def figures_blocks(exp: Experiment, figures: dict) -> list:
    blocks: list = [Heading(2, "Figures")]
    noun = exp.class_nouns[0]
    for name, alt, caption in FIGURES:
        if figures.get(name):
            blocks.append(Image(name, figures[name], alt.format(noun=noun), f"{name}: {caption.format(noun=noun)}"))
    return blocks


def missing_blocks(exp: Experiment, res: Results) -> list:
    blocks: list = [Heading(2, "Missing and failed trials")]
    bad = [t for t in exp.trials if t.status != COMPLETE]
    if not bad:
        blocks.append(Para(f"All {len(exp.trials)} trials of the grid completed."))
    else:
        rows = []
        for t in bad:
            if t.status == FAILED:
                detail = t.error or "error.txt present"
            elif t.status == INCOMPLETE:
                detail = (f"stopped after epoch {t.epochs}" if t.epochs else "no epoch finished") + \
                         " (still running, or the sweep was stopped)"
            else:
                detail = "no trial directory"
            rows.append([t.arch, fmt_blur(t.train_blur), str(t.seed), t.status, t.trial or DASH, detail])
        blocks.append(Table(["Arch", "Train blur", "Seed", "Status", "Trial directory", "Detail"], rows))
        short = res.summary[res.summary["partial"]]
        cells = [f"{r['arch']} trained at blur {fmt_blur(r['train_blur'])} (n={r['n']}/{r['expected']})"
                 for r in short.to_dict("records")]
        blocks.append(Para(f"Affected cells (fewer complete seeds than planned): {join_and(cells)}. Their means and "
                           "intervals in every table and figure rest on the seeds that did complete; a cell with n=0 "
                           "has no value (— in tables, a gap in figures)."))
    if exp.unused_trials:
        blocks.append(Para("Trial directories left out: " + "; ".join(
            f"{t.trial} ({t.arch}, blur {fmt_blur(t.train_blur)}, seed {t.seed}, {t.status})" for t in exp.unused_trials)
            + "."))
    return blocks


def report_blocks(exp: Experiment, res: Results, figures: dict) -> list:
    title = f"Blur study {exp.name}: {exp.dataset_name}"
    return ([Heading(1, title)] + what_was_run(exp, res) + conclusions_blocks(exp, res.conclusions)
            + tables_blocks(exp, res) + figures_blocks(exp, figures) + missing_blocks(exp, res))


def summary_md_blocks(exp: Experiment, res: Results) -> list:
    return [Heading(1, f"Summary: {exp.name} ({exp.dataset_name})")] + summary_blocks(exp, res.summary)


__all__ = ["Results", "report_blocks", "summary_md_blocks", "FEMNIST_NOTE"]
