"""Read an experiment directory (local path or URI) into plain records, without Ray.

Only the files named in docs/results-format.md are read, so a report works offline on a copy of the results,
on a sweep that is still running, and on one whose driver crashed. Every grid cell gets a status
(complete / failed / incomplete / missing) so nothing is silently dropped downstream.
"""

from __future__ import annotations

import itertools
import json
import posixpath
import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwclf import mixture
from hwclf.errors import UserError
from hwclf.io import filesystem

COMPLETE, FAILED, INCOMPLETE, MISSING = "complete", "failed", "incomplete", "missing"
STATUSES = (COMPLETE, FAILED, INCOMPLETE, MISSING)
_STATUS_RANK = {COMPLETE: 0, INCOMPLETE: 1, FAILED: 2, MISSING: 3}

SWEEP_FILE = "hwclf-sweep.json"
REPORT_DIR = "report"
RECORDS_DIR = "records"  # hwclf/report/records.py: portable records of the trials, beside report/
# <arch>-b<blur>-s<seed>-<trial_id>, blur a level or a mixture slug (mix0_5_10); the arch is the shortest prefix
# so "basic_se-b5-s0-x" parses.
TRIAL_DIR_RE = re.compile(r"^(?P<arch>.+?)-b(?P<blur>\d+(?:\.\d+)?|mix\d+(?:\.\d+)?(?:_\d+(?:\.\d+)?)+)"
                          r"-s(?P<seed>\d+)-(?P<id>.+)$")


def num(x: Any) -> int | float:
    """Blur levels as dictionary keys: 5, 5.0 and "5" are the same level; 1.5 stays 1.5."""
    f = float(x)
    return int(f) if f.is_integer() else f


def blur_value(x: Any) -> int | float | str:
    """A train-blur value as a dictionary key: a level (as `num`) or a canonical mixture "mix:0/5/10"
    (also from ``{mix: [...]}`` or "mix 0/5/10"). Raises ValueError for anything else."""
    if isinstance(x, dict) or (isinstance(x, str) and x.strip().lower().startswith(mixture.MIX_KEY)):
        try:
            return mixture.parse_train_blur(x, integer=False)
        except UserError as e:
            raise ValueError(str(e)) from None
    return num(x)


def fmt_blur(x: Any) -> str:
    """For people: 5 -> "5", "mix:0/5/10" -> "mix 0/5/10"."""
    return mixture.label(x) if mixture.is_mix(x) else f"{num(x):g}"


def blur_sorted(values) -> list:
    """Plain levels in numeric order, then mixtures (mixture.sort_key)."""
    return sorted(values, key=mixture.sort_key)


@dataclass
class LevelResult:
    """One test blur level of one trial; per-writer counts are indices into ``Experiment.writers``."""

    test_blur: int | float
    accuracy: float
    balanced_accuracy: float
    loss: float
    per_class: np.ndarray | None = None
    confusion: np.ndarray | None = None
    writer_index: np.ndarray | None = None
    writer_correct: np.ndarray | None = None
    writer_total: np.ndarray | None = None


@dataclass
class TrialRecord:
    """One grid cell as found on disk. ``trial`` is None for a missing cell."""

    arch: str
    train_blur: int | float | str  # a level or a mixture "mix:0/5/10"
    seed: int
    status: str
    trial: str | None = None
    path: str | None = None
    params: dict | None = None
    evaluation: dict | None = None  # evaluation.json without its "test" list (see ``tests``)
    tests: dict = field(default_factory=dict)  # test blur -> LevelResult
    raw_evaluation: dict | None = None  # evaluation.json as read (what records.py exports)
    history: list = field(default_factory=list)  # per-epoch dicts
    epochs: int | None = None  # epochs trained (from the history, or result.json for unfinished trials)
    error: str | None = None  # the last meaningful line of error.txt

    @property
    def cell(self) -> tuple:
        return (self.arch, self.train_blur, self.seed)


@dataclass
class Experiment:
    """Everything the report needs: the sweep file, one record per grid cell (missing cells included), and
    notes the report must show (inferred grid, duplicate trial dirs, unreadable files)."""

    location: str
    name: str
    sweep: dict  # hwclf-sweep.json, {} when absent
    has_sweep_file: bool
    grid: list  # [(arch, blur, seed)] in the order a reader expects
    grid_inferred: bool
    trials: list  # TrialRecord per grid cell, grid order
    statuses: dict  # (arch, blur, seed) -> status
    archs: list
    train_blurs: list
    seeds: list
    test_blurs: list
    classes: list
    dataset: dict
    writers: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    unused_trials: list = field(default_factory=list)  # duplicates and trials outside the grid
    samples_png: bytes | None = None
    kind: str = "raw"  # where it was read from: "raw", "records" or "merged" (merge.py)

    @property
    def config(self) -> dict:
        return self.sweep.get("config") or {}

    @property
    def dataset_name(self) -> str:
        return str(self.dataset.get("name") or self.config.get("dataset") or "unknown dataset")

    @property
    def class_nouns(self) -> tuple:
        """(singular, plural) for the classes in sentences: letters, digits, or plain classes."""
        name = self.dataset_name
        if "letter" in name:
            return "letter", "letters"
        if "digit" in name:
            return "digit", "digits"
        return "class", "classes"

    @property
    def blur_kind(self) -> str:
        return str(self.config.get("blur_kind") or "box")

    def complete(self) -> list:
        return [t for t in self.trials if t.status == COMPLETE]

    def counts(self) -> dict:
        c = {s: 0 for s in STATUSES}
        for t in self.trials:
            c[t.status] += 1
        return c

    def expected(self, arch: str, blur) -> int:
        return sum(1 for a, b, _ in self.grid if a == arch and b == blur)


class _Reader:
    """pyarrow file system access with paths joined POSIX-style (local and object stores alike)."""

    def __init__(self, location: str):
        import pyarrow.fs as pafs

        self.pafs = pafs
        try:
            self.fs, self.root = filesystem(location)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError with multi-line messages
            raise UserError(f"{location}: cannot open ({_first_line(e)})") from None
        self.root = self.root.rstrip("/") or "/"

    def join(self, *parts: str) -> str:
        return posixpath.join(*parts)

    def info(self, path: str):
        return self.fs.get_file_info(path)

    def list(self, path: str) -> list:
        return self.fs.get_file_info(self.pafs.FileSelector(path, allow_not_found=True, recursive=False))

    def read(self, path: str) -> bytes:
        """The bytes as stored (pyarrow would otherwise gunzip a *.gz file by its name)."""
        with self.fs.open_input_stream(path, compression=None) as f:
            return f.read()


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _json(reader: _Reader, path: str) -> Any:
    return json.loads(reader.read(path).decode("utf-8"))


def _read_trial(reader: _Reader, name: str) -> dict:
    """Raw contents of one candidate trial directory (runs in a thread pool: object stores are slow)."""
    base = reader.join(reader.root, name)
    raw: dict = {"name": name, "path": base, "problems": []}
    try:
        files = {posixpath.basename(i.path): i for i in reader.list(base)}
    except Exception as e:
        raw["problems"].append(f"{name}: cannot list ({_first_line(e)})")
        raw["trial_like"] = bool(TRIAL_DIR_RE.match(name))
        return raw
    Dir, File = reader.pafs.FileType.Directory, reader.pafs.FileType.File
    raw["has_sweep_file"] = SWEEP_FILE in files
    ckpts = sorted((n for n, i in files.items() if i.type == Dir and n.startswith("checkpoint_")), reverse=True)
    raw["trial_like"] = bool(
        TRIAL_DIR_RE.match(name) or ckpts or any(f in files for f in ("params.json", "result.json", "error.txt"))
    )
    if not raw["trial_like"]:
        return raw
    if "params.json" in files:
        try:
            raw["params"] = _json(reader, reader.join(base, "params.json"))
        except Exception as e:
            raw["problems"].append(f"{name}/params.json: unreadable ({_first_line(e)})")
    if "error.txt" in files:
        try:
            raw["error"] = reader.read(reader.join(base, "error.txt")).decode("utf-8", "replace")
        except Exception as e:
            raw["error"] = f"(error.txt unreadable: {_first_line(e)})"
    if ckpts:
        paths = [reader.join(base, c, "evaluation.json") for c in ckpts]
        for p, i in zip(paths, reader.fs.get_file_info(paths)):
            if i.type == File:
                try:
                    raw["evaluation"] = _json(reader, p)
                    raw["evaluation_path"] = p
                except Exception as e:
                    raw["problems"].append(f"{name}/{posixpath.basename(posixpath.dirname(p))}/evaluation.json: "
                                           f"unreadable ({_first_line(e)}); trial counted as incomplete")
                break
    if "evaluation" not in raw and "result.json" in files:
        raw["results"] = _result_lines(reader, reader.join(base, "result.json"))
    return raw


def _result_lines(reader: _Reader, path: str) -> list:
    """JSON lines; a torn last line (trial killed mid-write) is skipped."""
    try:
        text = reader.read(path).decode("utf-8", "replace")
    except Exception:
        return []
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


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


@dataclass
class Source:
    """What one experiment directory or record set holds, before the grid is worked out: the sweep file, the
    trial-like entries (raw dicts as `_read_trial` makes them, or built from records), notes, samples.png."""

    location: str
    sweep: dict
    has_sweep_file: bool
    raws: list
    notes: list = field(default_factory=list)
    samples_png: bytes | None = None
    kind: str = "raw"  # "raw" (a Ray Tune directory) or "records" (records.py)
    name: str | None = None  # the study's name where the location does not tell it (records, merges)


def load_experiment(path, *, require_complete: bool = True, workers: int = 8) -> Experiment:
    """Read ``path`` (local directory or s3:// / gs:// / file:// URI): a raw sweep directory, or a record set
    (a directory holding records.RECORDS_FILE, or that file itself).

    Raises a one-line ``UserError`` when the directory is missing, is not an hwclf experiment, or (with
    ``require_complete``) has no complete trial yet.
    """
    return assemble(read_source(path, workers=workers), require_complete=require_complete)


def read_source(path, *, workers: int = 8) -> Source:
    """The files of one experiment directory or record set, unassembled (see `Source`)."""
    from hwclf.report import records as R

    location = str(path)
    reader = _Reader(location)
    ft = reader.pafs.FileType
    try:
        info = reader.info(reader.root)
    except Exception as e:
        raise UserError(f"{location}: cannot read ({_first_line(e)})") from None
    if info.type == ft.NotFound:
        raise UserError(f"{location}: no such directory; give an experiment directory <storage>/<name>/")
    if info.type == ft.File and location.endswith(R.RECORDS_SUFFIX):
        return R.read_records(reader, reader.root, location)
    if info.type != ft.Directory:
        raise UserError(f"{location}: is a file, not an experiment directory <storage>/<name>/")
    try:
        entries = reader.list(reader.root)
    except Exception as e:
        raise UserError(f"{location}: cannot list ({_first_line(e)})") from None
    files = {posixpath.basename(i.path): i for i in entries}
    if R.RECORDS_FILE in files and files[R.RECORDS_FILE].type == ft.File and SWEEP_FILE not in files:
        return R.read_records(reader, reader.join(reader.root, R.RECORDS_FILE), location)
    notes: list = []

    sweep: dict = {}
    has_sweep_file = SWEEP_FILE in files and files[SWEEP_FILE].type == ft.File
    if has_sweep_file:
        try:
            sweep = _json(reader, reader.join(reader.root, SWEEP_FILE))
            if not isinstance(sweep, dict):
                raise ValueError("top level is not an object")
        except Exception as e:
            notes.append(f"{SWEEP_FILE} is unreadable ({_first_line(e)}); the grid was inferred from the trials.")
            sweep = {}
        schema = str(sweep.get("schema", ""))
        if sweep and not schema.startswith("hwclf.sweep/"):
            notes.append(f"{SWEEP_FILE} has schema {schema!r}, expected hwclf.sweep/1; read as far as it matches.")

    names = sorted(n for n, i in files.items()
                   if i.type == ft.Directory and n not in (REPORT_DIR, RECORDS_DIR) and not n.startswith((".", "_")))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names) or 1))) as pool:
        raws = list(pool.map(lambda n: _read_trial(reader, n), names))

    trial_raws = [r for r in raws if r.get("trial_like")]
    for r in trial_raws:
        notes.extend(r["problems"])
    if not sweep and not trial_raws:
        nested = [r["name"] for r in raws if r.get("has_sweep_file")]
        hint = f"; it holds experiments: {', '.join(nested[:5])}" if nested else ""
        what = f"{SWEEP_FILE} is unreadable" if has_sweep_file else f"no {SWEEP_FILE}"
        raise UserError(f"{location}: not an hwclf experiment ({what} and no trial directories "
                        f"<arch>-b<blur>-s<seed>-<id> and no {RECORDS_DIR}/{R.RECORDS_FILE}){hint}")

    samples = None
    if "samples.png" in files and files["samples.png"].type == ft.File:
        try:
            samples = reader.read(reader.join(reader.root, "samples.png"))
        except Exception as e:
            notes.append(f"samples.png unreadable ({_first_line(e)}).")
    return Source(location=location, sweep=sweep, has_sweep_file=has_sweep_file, raws=trial_raws, notes=notes,
                  samples_png=samples)


def assemble(src: Source, *, require_complete: bool = True) -> Experiment:
    """The grid, one record per grid cell (missing cells included), levels, dataset and classes of a Source."""
    location, sweep, has_sweep_file, trial_raws = src.location, src.sweep, src.has_sweep_file, src.raws
    notes = list(src.notes)
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
                      writers=writers.names, notes=notes, unused_trials=unused, samples_png=samples, kind=src.kind)

