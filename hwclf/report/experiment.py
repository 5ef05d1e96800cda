"""The shapes and keys every part of the report shares: trial statuses, the file names of a sweep directory,
blur levels as dictionary keys, and the records (LevelResult, TrialRecord, Experiment, Source).

It exists so that the readers (rawdir.py, records.py), the assembly (assembly.py) and the report's tables and
figures share one vocabulary from a module that depends on none of them: it reads no file and imports nothing
else of the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwclf import mixture
from hwclf.errors import UserError

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


# a merged study's parts table (merge.py builds the rows, document.py shows them)
PART_COLUMNS = ["Source", "Sweep", "Read from", "Architectures", "Complete trials", "git", "Host"]


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
    parts: list = field(default_factory=list)  # a merge's sources, one PART_COLUMNS row each (merge.py)

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
    parts: list = field(default_factory=list)  # a merge's sources, one PART_COLUMNS row each (merge.py)
