"""From the trial entries of a Source to an Experiment: the grid, one record per grid cell (missing cells
included), the test levels, the dataset and the classes.

It exists so that a raw sweep directory, a record set (records.py) and a merge of several (merge.py) are all
turned into an Experiment by the same code: whatever read the files, the statuses, duplicate and out-of-grid
trials, and the notes the report shows are decided here, once.
"""

from __future__ import annotations

import itertools
import posixpath
from collections import defaultdict

import numpy as np

from hwclf import mixture
from hwclf.errors import UserError
from hwclf.report.experiment import (_STATUS_RANK, COMPLETE, FAILED, INCOMPLETE, MISSING, SWEEP_FILE, TRIAL_DIR_RE,
                                     Experiment, LevelResult, Source, TrialRecord, blur_sorted, blur_value, fmt_blur,
                                     num)


def _error_line(text: str | None) -> str | None:
    """The exception message is usually the last non-blank line of Ray's error.txt traceback."""
    if text is None:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "(empty error.txt)"
    line = lines[-1]
    return line if len(line) <= 240 else line[:237] + "..."


def _identity(raw: dict) -> tuple | None:
    for src in (raw.get("params"), (raw.get("evaluation") or {}).get("config")):
        if isinstance(src, dict) and all(k in src for k in ("arch", "blur", "seed")):
            try:
                return str(src["arch"]), blur_value(src["blur"]), int(src["seed"])
            except (TypeError, ValueError):
                pass
    m = TRIAL_DIR_RE.match(raw["name"])
    if m:
        return m["arch"], blur_value(mixture.from_slug(m["blur"])), int(m["seed"])
    return None


class _Writers:
    """Interns writer ids across trials so per-writer counts are small integer arrays, not dicts."""

    def __init__(self):
        self.index: dict = {}
        self.names: list = []

    def arrays(self, per_writer: dict):
        idx, correct, total = [], [], []
        for w, ct in per_writer.items():
            i = self.index.get(w)
            if i is None:
                i = self.index[w] = len(self.names)
                self.names.append(w)
            idx.append(i)
            correct.append(ct[0])
            total.append(ct[1])
        return (np.asarray(idx, dtype=np.int64), np.asarray(correct, dtype=np.int64),
                np.asarray(total, dtype=np.int64))


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _to_record(raw: dict, cell: tuple, writers: _Writers) -> TrialRecord:
    arch, blur, seed = cell
    ev = raw.get("evaluation")
    if isinstance(ev, dict):
        status = COMPLETE
    elif raw.get("error") is not None:
        status = FAILED
    else:
        status = INCOMPLETE
    rec = TrialRecord(arch=arch, train_blur=blur, seed=seed, status=status, trial=raw["name"], path=raw["path"],
                      params=raw.get("params"), error=_error_line(raw.get("error")))
    if status == COMPLETE:
        rec.raw_evaluation = ev
        rec.evaluation = {k: v for k, v in ev.items() if k != "test"}
        rec.history = [h for h in ev.get("history") or [] if isinstance(h, dict)]
        for entry in ev.get("test") or []:
            if not isinstance(entry, dict) or "test_blur" not in entry:
                continue
            level = LevelResult(test_blur=num(entry["test_blur"]), accuracy=_float(entry.get("accuracy")),
                              balanced_accuracy=_float(entry.get("balanced_accuracy")), loss=_float(entry.get("loss")))
            if entry.get("per_class_accuracy") is not None:
                level.per_class = np.asarray(entry["per_class_accuracy"], dtype=float)
            if entry.get("confusion") is not None:
                level.confusion = np.asarray(entry["confusion"], dtype=np.int64)
            if isinstance(entry.get("per_writer"), dict) and entry["per_writer"]:
                level.writer_index, level.writer_correct, level.writer_total = writers.arrays(entry["per_writer"])
            rec.tests[level.test_blur] = level
        epochs = [h.get("epoch") for h in rec.history if isinstance(h.get("epoch"), (int, float))]
        rec.epochs = int(max(epochs)) if epochs else (int(ev["evaluated_epoch"]) if ev.get("evaluated_epoch") else None)
    elif "epochs" in raw:  # a record (records.py) keeps only the count
        rec.epochs = raw["epochs"]
    else:
        epochs = [r.get("epoch") for r in raw.get("results") or []
                  if isinstance(r.get("epoch"), (int, float)) and not r.get("done_training")]
        rec.epochs = int(max(epochs)) if epochs else None
        rec.history = [r for r in raw.get("results") or [] if "epoch" in r and not r.get("done_training")]
    return rec


def _order(values, preferred) -> list:
    """Values in the config's order first, then any others sorted."""
    values = list(dict.fromkeys(values))
    first = [v for v in preferred if v in values]
    rest = sorted((v for v in values if v not in first), key=lambda v: (str(type(v)), v))
    return first + rest


def assemble(src: Source, *, require_complete: bool = True) -> Experiment:
    """The grid, one record per grid cell (missing cells included), levels, dataset and classes of a Source."""
    location, sweep, has_sweep_file, trial_raws = src.location, src.sweep, src.has_sweep_file, src.raws
    notes = list(src.notes)
    subset = (sweep or {}).get("subset")
    if isinstance(subset, dict) and subset.get("left_out_train_blur"):
        notes.append(f"A subset of {subset.get('of')}: its rows at train blur "
                     f"{', '.join(fmt_blur(b) for b in subset['left_out_train_blur'])} "
                     f"({subset.get('left_out_trials')} trials) were left out (hwclf export --train-blur).")
    writers = _Writers()
    records = []
    for r in trial_raws:
        cell = r.get("cell") or _identity(r)
        if cell is None:
            notes.append(f"{r['name']}: cannot tell which arch/blur/seed it is (no params.json); left out.")
            continue
        records.append(_to_record(r, cell, writers))

    config = sweep.get("config") or {}
    grid_inferred = False
    grid: list = []
    if isinstance(sweep.get("grid"), list):
        try:
            grid = [(str(c["arch"]), blur_value(c["blur"]), int(c["seed"])) for c in sweep["grid"]]
        except (KeyError, TypeError, ValueError):
            grid = []
    if not grid and config.get("archs") and config.get("train_blur") is not None and config.get("seeds") is not None:
        try:
            grid = [(str(a), blur_value(b), int(s)) for a in config["archs"] for b in config["train_blur"]
                    for s in config["seeds"]]
        except (TypeError, ValueError):
            grid = []
    if not grid:
        grid_inferred = True
        archs = _order([r.arch for r in records], [])
        blurs = blur_sorted({r.train_blur for r in records})
        seeds = sorted({r.seed for r in records})
        grid = list(itertools.product(archs, blurs, seeds))
        if not has_sweep_file:
            notes.insert(0, f"{SWEEP_FILE} is missing: the grid was inferred from the trial directories as every "
                            f"combination of the {len(archs)} architectures, {len(blurs)} train blur levels and "
                            f"{len(seeds)} seeds found ({len(grid)} cells); configuration, dataset and environment "
                            "come from the trials' own evaluation.json.")
        else:
            notes.insert(0, f"{SWEEP_FILE} has no grid and no archs/train_blur/seeds: the grid was inferred from the "
                            f"trial directories ({len(grid)} cells).")
    grid = list(dict.fromkeys(grid))
    grid_set = set(grid)

    by_cell = defaultdict(list)
    for rec in records:
        by_cell[rec.cell].append(rec)
    chosen: dict = {}
    unused: list = []
    for cell, recs in by_cell.items():
        recs.sort(key=lambda r: (_STATUS_RANK[r.status], r.trial))
        if cell not in grid_set:
            unused.extend(recs)
            notes.append(f"{recs[0].trial}: {cell[0]} at train blur {fmt_blur(cell[1])}, seed {cell[2]} is not in the "
                         f"grid of {SWEEP_FILE}; left out.")
            continue
        chosen[cell] = recs[0]
        if len(recs) > 1:
            unused.extend(recs[1:])
            notes.append(f"{len(recs)} trial directories for {cell[0]} at train blur {fmt_blur(cell[1])}, seed "
                         f"{cell[2]}: used {recs[0].trial} ({recs[0].status}); left out "
                         + ", ".join(f"{r.trial} ({r.status})" for r in recs[1:]) + ".")
    trials = [chosen.get(c) or TrialRecord(arch=c[0], train_blur=c[1], seed=c[2], status=MISSING) for c in grid]
    statuses = {t.cell: t.status for t in trials}

    complete = [t for t in trials if t.status == COMPLETE]
    if require_complete and not complete:
        c = defaultdict(int)
        for t in trials:
            c[t.status] += 1
        detail = ", ".join(f"{c[s]} {s}" for s in (FAILED, INCOMPLETE, MISSING) if c[s])
        raise UserError(f"{location}: no complete trial yet: none of the {len(grid)} grid cells has a "
                        f"checkpoint_*/evaluation.json ({detail})")

    archs = _order([c[0] for c in grid], [str(a) for a in config.get("archs") or []])
    train_blurs = blur_sorted({c[1] for c in grid})
    seeds = sorted({c[2] for c in grid})
    levels: set = set()
    try:
        levels.update(num(k) for k in config.get("test_blur") or [])
    except (TypeError, ValueError):
        pass
    for t in complete:
        levels.update(t.tests)
    if not levels:
        levels = {0, *(k for b in train_blurs for k in mixture.mix_levels(b))}
    test_blurs = sorted(levels)

    dataset = dict(sweep.get("dataset") or {})
    fingerprints = sorted({str(t.evaluation.get("dataset", {}).get("fingerprint")) for t in complete
                           if (t.evaluation or {}).get("dataset", {}).get("fingerprint")})
    if not dataset and complete:
        dataset = dict((complete[0].evaluation or {}).get("dataset") or {})
        dataset.setdefault("has_writers", any(lv.writer_index is not None for t in complete for lv in t.tests.values()))
    if len(fingerprints) > 1:
        notes.append(f"Trials used {len(fingerprints)} different datasets (fingerprints "
                     + ", ".join(f[:12] for f in fingerprints) + "); pooled results mix them.")
    elif fingerprints and dataset.get("fingerprint") and str(dataset["fingerprint"]) != fingerprints[0]:
        notes.append(f"{SWEEP_FILE} names dataset fingerprint {str(dataset['fingerprint'])[:12]} but the trials used "
                     f"{fingerprints[0][:12]}.")
    bad_schema = sorted({t.trial for t in complete
                         if not str((t.evaluation or {}).get("schema", "")).startswith("hwclf.trial/")})
    if bad_schema:
        notes.append(f"{len(bad_schema)} evaluation.json file(s) lack schema hwclf.trial/1 (e.g. {bad_schema[0]}); "
                     "read as far as they match.")

    n_classes = max((len(lv.per_class) for t in complete for lv in t.tests.values() if lv.per_class is not None),
                    default=0)
    classes = [str(c) for c in dataset.get("classes") or []]
    if len(classes) != n_classes and n_classes:
        ev_classes = next((t.evaluation.get("dataset", {}).get("classes") for t in complete
                           if t.evaluation.get("dataset", {}).get("classes")), None)
        classes = [str(c) for c in ev_classes] if ev_classes and len(ev_classes) == n_classes else \
            [str(i) for i in range(n_classes)]

    samples = src.samples_png
    name = str(config.get("name") or src.name or posixpath.basename(location.rstrip("/")) or "experiment")
    return Experiment(location=location, name=name, sweep=sweep, has_sweep_file=has_sweep_file and bool(sweep),
                      grid=grid, grid_inferred=grid_inferred, trials=trials, statuses=statuses, archs=archs,
                      train_blurs=train_blurs, seeds=seeds, test_blurs=test_blurs, classes=classes, dataset=dataset,
                      writers=writers.names, notes=notes, unused_trials=unused, samples_png=samples, kind=src.kind,
                      parts=list(src.parts))
