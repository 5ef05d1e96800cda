"""Several sweeps or record sets read as one study (``hwclf report A B ... --out DIR``).

Sweeps merge only when they measured the same thing: the same data (fingerprint), blur kind, test levels and
training recipe; epochs are compared per row (train blur level): a row may have its own
(``epochs_by_train_blur``), but all of a row's cells, from whichever source, must share one. Otherwise the pooled
means would mix two experiments, so the merge is refused with one line that names both sources and the
difference. The merged grid is the union of the sources' cells; a cell found in two sources must hold identical
results (the same trial exported twice), never two different runs.
"""

from __future__ import annotations

import json
from collections import Counter

from hwclf import mixture
from hwclf.errors import UserError
from hwclf.report.families import family_order
from hwclf.report.fmt import join_and
from hwclf.report.load import (COMPLETE, MISSING, SWEEP_FILE, Experiment, Source, assemble, blur_sorted, fmt_blur,
                               num, read_source)

# Keys of the training recipe, with the value a sweep recorded before the key existed (the only one then).
# Epochs are compared per row instead (`row_budgets`).
RECIPE = {"batch_size": None, "learning_rate": None, "lr_schedule": "constant",
          "warmup_fraction": 0.0, "per_class": None, "val_fraction": None, "eval_weights": None,
          "precision": "float32", "se_ratio": None}


def _trial_config(exp: Experiment) -> dict:
    first = next((t for t in exp.trials if t.status == COMPLETE), None)
    return ((first.evaluation or {}).get("config") if first else None) or {}


def signature(exp: Experiment) -> dict:
    """What must agree between two sweeps of one study: dataset, blur kind, test levels, recipe (from the sweep
    config, else from a trial's config)."""
    cfg = exp.config or _trial_config(exp)
    sig = {"dataset fingerprint": exp.dataset.get("fingerprint"), "dataset": exp.dataset_name,
           "blur kind": str(cfg.get("blur_kind") or "box")}
    try:
        levels = sorted({num(k) for k in cfg["test_blur"]}) if cfg.get("test_blur") is not None else exp.test_blurs
    except (TypeError, ValueError):
        levels = exp.test_blurs
    sig["test levels"] = list(levels)
    for key, default in RECIPE.items():
        sig[key] = cfg.get(key, default)
    return sig


def _check_compatible(a: Experiment, b: Experiment) -> None:
    sa, sb = signature(a), signature(b)
    for key in sa:
        va, vb = sa[key], sb[key]
        if key == "dataset fingerprint" and (va is None or vb is None):
            continue  # an old sweep without a fingerprint: the dataset name still has to agree
        if va != vb:
            shown = ", ".join(fmt_blur(k) for k in va) + " vs " + ", ".join(fmt_blur(k) for k in vb) \
                if key == "test levels" else f"{va!r} vs {vb!r}"
            raise UserError(f"merge: {a.location} and {b.location} differ in {key} ({shown}); only sweeps of one "
                            "study (same data, blur kind, test levels and training recipe) can be merged")


def _configured_epochs(t) -> int | None:
    for cfg in ((t.evaluation or {}).get("config"), t.params):
        if isinstance(cfg, dict) and isinstance(cfg.get("epochs"), int):
            return cfg["epochs"]
    return None


def row_budgets(exps: list) -> dict:
    """train blur -> epochs over the sources' trials; raises when one row was trained for two budgets."""
    seen: dict = {}  # row -> (epochs, location, trial)
    for e in exps:
        for t in e.trials:
            epochs = _configured_epochs(t) if t.status != MISSING else None
            if epochs is None:
                continue
            if t.train_blur not in seen:
                seen[t.train_blur] = (epochs, e.location, t.trial)
                continue
            other, where, trial = seen[t.train_blur]
            if other != epochs:
                raise UserError(
                    f"merge: train blur {fmt_blur(t.train_blur)} was trained for {other} epochs in {where} ({trial}) "
                    f"and {epochs} in {e.location} ({t.trial}); a row's cells must share one budget. Keep one of "
                    f"them, e.g. drop the row from a record set: hwclf export SOURCE --out DIR --train-blur LEVELS")
    return {row: v[0] for row, v in seen.items()}


def _canonical(raw: dict) -> str:
    return json.dumps(raw.get("evaluation"), sort_keys=True, default=str)


def load_study(paths: list, *, require_complete: bool = True) -> Experiment:
    """One source: as `load_experiment`. Several: checked against the first, then their trials pooled."""
    paths = [str(p) for p in paths]
    sources = [read_source(p) for p in paths]
    if len(sources) == 1:
        return assemble(sources[0], require_complete=require_complete)
    exps = [assemble(s, require_complete=False) for s in sources]
    for e in exps[1:]:
        _check_compatible(exps[0], e)
    return assemble(_merged_source(sources, exps, row_budgets(exps)), require_complete=require_complete)


NAME_SEPARATORS = "-_."


def merged_name(names: list) -> str:
    """The study's name for sweeps run in parts: what their names share up to a separator
    (``femnist-blur-basic`` + ``femnist-blur-resnet_se-s2`` -> ``femnist-blur``), else the names joined by "+"."""
    names = list(dict.fromkeys(names))
    if len(names) == 1:
        return names[0]
    first = names[0]
    for i in range(len(first), 2, -1):
        stem = first[:i]
        if all(len(n) > i and n.startswith(stem) and n[i] in NAME_SEPARATORS for n in names):
            return stem.rstrip(NAME_SEPARATORS) or "+".join(names)
    return "+".join(names)


def _merged_source(sources: list, exps: list, budgets: dict) -> Source:
    notes, chosen = [], {}  # cell -> (source index, raw)
    for i, (src, exp) in enumerate(zip(sources, exps)):
        by_name = {r["name"]: r for r in src.raws}
        for t in exp.trials:
            if t.status == MISSING:
                continue
            raw = by_name[t.trial]
            if t.cell not in chosen:
                chosen[t.cell] = (i, raw, t.status)
                continue
            j, other, status = chosen[t.cell]
            where = (f"{t.arch} at train blur {fmt_blur(t.train_blur)}, seed {t.seed} is in both "
                     f"{exps[j].location} ({other['name']}) and {exp.location} ({t.trial})")
            if status == COMPLETE and t.status == COMPLETE:
                if _canonical(other) != _canonical(raw):
                    raise UserError(f"merge: {where} with different results; keep one of them (a cell is one run)")
            elif t.status == COMPLETE:
                chosen[t.cell] = (i, raw, t.status)
                notes.append(f"{where}: used the complete one from {exp.location}.")
            elif status != COMPLETE:
                notes.append(f"{where}, neither complete: used the one from {exps[j].location}.")
    archs = family_order([a for e in exps for a in e.archs])
    train_blurs = blur_sorted({b for e in exps for b in e.train_blurs})
    seeds = sorted({s for e in exps for s in e.seeds})
    grid = sorted({c for e in exps for c in e.grid},
                  key=lambda c: (archs.index(c[0]), mixture.sort_key(c[1]), c[2]))
    first = exps[0]
    name = merged_name([e.name for e in exps])
    config = dict(first.config or _trial_config(first))
    config.update(name=name, archs=archs, train_blur=train_blurs, seeds=seeds)
    if budgets:  # the budgets the merged cells were trained with, not the first source's default
        common = Counter(budgets.values()).most_common(1)[0][0]
        by_row = {r: budgets[r] for r in blur_sorted(budgets) if budgets[r] != common}
        config.pop("epochs_by_train_blur", None)
        config.setdefault("epochs", common)
        ordered = {}  # the row budgets right after `epochs`, where a reader looks for them
        for key, value in config.items():
            ordered[key] = value
            if key == "epochs":
                ordered.update(epochs=common, epochs_by_train_blur=by_row)
        config = ordered
    sweep = {"schema": "hwclf.sweep/1", "config": config,
             "grid": [{"arch": a, "blur": b, "seed": s} for a, b, s in grid],
             "dataset": dict(first.dataset), "environment": first.sweep.get("environment") or {}}
    parts = []
    for e in exps:
        env = e.sweep.get("environment") or {}
        c = e.counts()
        parts.append([e.location, e.name, e.kind, join_and(list(e.archs)), f"{c[COMPLETE]}/{len(e.grid)}",
                      str(env.get("git_commit") or "unknown")[:12], str(env.get("host") or "unknown")])
    notes.insert(0, f"Merged from {len(exps)} sources (the parts table above). The environment below is the first "
                    f"one's; {SWEEP_FILE} of each source has its own.")
    for e in exps:
        notes.extend(f"{e.location}: {n}" for n in e.notes)
    raws = [raw for _, raw, _ in chosen.values()]
    samples = next((s.samples_png for s in sources if s.samples_png), None)
    return Source(location=" + ".join(e.location for e in exps), sweep=sweep, has_sweep_file=True, raws=raws,
                  notes=notes, samples_png=samples, kind="merged", name=name, parts=parts)
