"""Configs as data: one trial (`TrialConfig`) and one sweep (`SweepConfig`), validated once at the edge.

Every error names the field, what was given and what is allowed, so the CLI and the Ray driver can print
one line instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from hwclf.errors import UserError
from hwclf.mixture import mix_levels, parse_train_blur, parse_train_blurs, sort_key

BLUR_KINDS = ("box", "gaussian")
EVAL_WEIGHTS = ("last", "best")
# float32: the original study's numerics. mixed_bfloat16: bf16 compute, float32 weights and output
# layer; 1.3-1.6x faster (measured) where the hardware has bf16 units (AVX512-BF16/AMX CPUs, Ampere+
# GPUs; not a T4).
PRECISIONS = ("float32", "mixed_bfloat16")
# constant: Adam at a fixed rate (the original notebook). cosine: linear warm-up over `warmup_fraction` of
# the steps to `learning_rate`, then cosine decay to 0 (the fast recipe; docs/recipe.md has its ablation).
LR_SCHEDULES = ("constant", "cosine")


def _names(options) -> str:
    return ", ".join(str(o) for o in options)


def parse_number_list(text: str | list | tuple | int | float, field_name: str, *, integer: bool = True) -> tuple:
    """'0,5,10' or [0, 5, 10] -> (0, 5, 10); blur levels must be >= 0."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        items: list = [text]
    elif isinstance(text, str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise UserError(f"{field_name}: empty list; give comma-separated numbers such as 0,5,10")
    elif isinstance(text, (list, tuple)):
        items = list(text)
    else:
        raise UserError(f"{field_name}: expected a list of numbers, got {type(text).__name__}")
    out = []
    for item in items:
        try:
            value = float(item) if not isinstance(item, bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or value != value:  # NaN
            raise UserError(f"{field_name}: {item!r} is not a number; give comma-separated numbers such as 0,5,10")
        if integer and value != int(value):
            raise UserError(f"{field_name}: {item!r} is not a whole number; box kernels are integers such as 0,5,10")
        if value < 0:
            raise UserError(f"{field_name}: {item!r} is negative; blur levels are >= 0 (0 = no blur)")
        out.append(int(value) if integer else value)
    return tuple(out)


def _check_int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            else:
                raise ValueError
        except ValueError:
            raise UserError(f"{name}: expected a whole number, got {value!r}") from None
    if minimum is not None and value < minimum:
        raise UserError(f"{name}: must be >= {minimum}, got {value}")
    return value


def _check_float(name: str, value: Any, lo: float, hi: float, *, lo_open=False, hi_open=False) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        value = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}: expected a number, got {value!r}") from None
    bad_lo = value <= lo if lo_open else value < lo
    bad_hi = value >= hi if hi_open else value > hi
    if bad_lo or bad_hi or value != value:
        lo_s = f"{'>' if lo_open else '>='} {lo}"
        hi_s = f"{'<' if hi_open else '<='} {hi}"
        raise UserError(f"{name}: must be {lo_s} and {hi_s}, got {value}")
    return value


def _check_choice(name: str, value: Any, options) -> str:
    if value not in options:
        raise UserError(f"{name}: unknown value {value!r}; allowed: {_names(options)}")
    return value


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs. Blur level means kernel width for box blur, sigma for Gaussian."""

    dataset: str = "digits"
    data_dir: str | None = None
    arch: str = "basic"
    blur_kind: str = "box"
    blur: float | str = 0  # a level, or a mixture "mix:0/5/10" (hwclf.mixture)
    seed: int = 0
    epochs: int = 2
    batch_size: int = 128
    learning_rate: float = 1e-3  # the constant rate, or the peak of the cosine schedule
    lr_schedule: str = "constant"  # LR_SCHEDULES
    warmup_fraction: float = 0.0  # cosine: share of all steps spent warming up linearly from 0
    val_fraction: float = 0.1
    test_blur: tuple = ()  # empty: (0, blur)
    per_class: int | None = None  # cap on training images per class, for quick studies
    eval_weights: str = "last"  # which weights are tested: last epoch or best validation accuracy
    threads: int = 0  # TF intra-op threads; 0 = TF's default (all cores)
    se_ratio: int = 16
    precision: str = "float32"  # PRECISIONS

    def __post_init__(self):
        from hwclf.data import DATASETS
        from hwclf.models import MODELS

        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("arch", self.arch, MODELS)
        _check_choice("blur_kind", self.blur_kind, BLUR_KINDS)
        integer = self.blur_kind == "box"
        blur = parse_train_blur(self.blur, "blur", integer=integer)
        object.__setattr__(self, "blur", blur)
        object.__setattr__(self, "seed", _check_int("seed", self.seed, 0))
        object.__setattr__(self, "epochs", _check_int("epochs", self.epochs, 1))
        object.__setattr__(self, "batch_size", _check_int("batch_size", self.batch_size, 1))
        _check_recipe(self)
        object.__setattr__(self, "val_fraction", _check_float("val_fraction", self.val_fraction, 0, 0.5, lo_open=True))
        test_blur = parse_number_list(list(self.test_blur), "test_blur", integer=integer) if self.test_blur else ()
        if not test_blur:
            test_blur = tuple(sorted({0, *mix_levels(blur)}))
        object.__setattr__(self, "test_blur", tuple(sorted(set(test_blur))))
        if self.per_class is not None:
            object.__setattr__(self, "per_class", _check_int("per_class", self.per_class, 1))
        _check_choice("eval_weights", self.eval_weights, EVAL_WEIGHTS)
        object.__setattr__(self, "threads", _check_int("threads", self.threads, 0))
        object.__setattr__(self, "se_ratio", _check_int("se_ratio", self.se_ratio, 1))
        _check_choice("precision", self.precision, PRECISIONS)
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", str(self.data_dir))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrialConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown trial config key(s): {_names(unknown)}; allowed: {_names(sorted(known))}")
        return cls(**dict(d))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["test_blur"] = list(self.test_blur)
        return d


@dataclass(frozen=True)
class SweepConfig:
    """A whole study: the grid train_blur x archs x seeds, plus what every trial shares.

    Loaded from YAML (``sweep/configs/*.yaml``) and overridden from the command line; unknown keys and
    wrong types are errors that name the key.
    """

    name: str = "demo"
    dataset: str = "digits"
    data_dir: str | None = None
    blur_kind: str = "box"
    train_blur: tuple = (0, 5)
    archs: tuple = ("basic",)
    seeds: tuple = (0,)
    test_blur: tuple = ()  # empty: every train blur level plus 0
    epochs: int = 2
    # A row's own budget where it needs more than `epochs` to converge ({30: 20}: every model trained at
    # blur 30 gets 20 epochs). Keyed by train level (mixtures as "mix:0/5/10"); levels not in the grid are
    # allowed, so `--blur` can select rows of a preset.
    epochs_by_train_blur: dict = field(default_factory=dict)
    batch_size: int = 128
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    warmup_fraction: float = 0.0
    val_fraction: float = 0.1
    per_class: int | None = None
    eval_weights: str = "last"
    se_ratio: int = 16
    precision: str = "float32"  # or mixed_bfloat16: see PRECISIONS
    # Scheduling (read by the Ray driver only)
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    threads_per_trial: int = 0  # 0: cpus_per_trial rounded up
    max_concurrent: int = 0  # 0: as many as the resources allow
    max_failures: int = 2
    # One worker process runs trial after trial (TF imported once): docs/performance.md measures the gain
    reuse_actors: bool = True
    storage: str = "results"
    description: str = ""
    extra: dict = field(default_factory=dict)  # free-form notes copied into the report

    def __post_init__(self):
        from hwclf.data import DATASETS
        from hwclf.models import MODELS

        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "/\\ ") or self.name.startswith("."):
            raise UserError(f"name: {self.name!r} is not a usable directory name (no spaces or slashes)")
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("blur_kind", self.blur_kind, BLUR_KINDS)
        integer = self.blur_kind == "box"
        object.__setattr__(self, "train_blur", tuple(sorted(parse_train_blurs(self.train_blur, "train_blur", integer),
                                                            key=sort_key)))
        archs = self.archs.split(",") if isinstance(self.archs, str) else list(self.archs)
        archs = [a.strip() for a in archs if str(a).strip()]
        if not archs:
            raise UserError(f"archs: empty; allowed: {_names(MODELS)}")
        for a in archs:
            _check_choice("archs", a, MODELS)
        object.__setattr__(self, "archs", tuple(dict.fromkeys(archs)))
        seeds = parse_number_list(self.seeds, "seeds", integer=True)
        object.__setattr__(self, "seeds", tuple(dict.fromkeys(seeds)))
        object.__setattr__(self, "train_blur", tuple(dict.fromkeys(self.train_blur)))
        tb = parse_number_list(self.test_blur, "test_blur", integer=integer) if self.test_blur else ()
        if not tb:
            tb = (0,) + tuple(level for b in self.train_blur for level in mix_levels(b))
        object.__setattr__(self, "test_blur", tuple(sorted(set(tb))))
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("se_ratio", 1), ("threads_per_trial", 0),
                              ("max_concurrent", 0), ("max_failures", -1)):
            object.__setattr__(self, name, _check_int(name, getattr(self, name), minimum))
        object.__setattr__(self, "epochs_by_train_blur", _parse_row_epochs(self.epochs_by_train_blur, integer))
        if self.per_class is not None:
            object.__setattr__(self, "per_class", _check_int("per_class", self.per_class, 1))
        _check_recipe(self)
        object.__setattr__(self, "val_fraction", _check_float("val_fraction", self.val_fraction, 0, 0.5, lo_open=True))
        object.__setattr__(self, "cpus_per_trial", _check_float("cpus_per_trial", self.cpus_per_trial, 0, 1024, lo_open=True))
        object.__setattr__(self, "gpus_per_trial", _check_float("gpus_per_trial", self.gpus_per_trial, 0, 64))
        _check_choice("eval_weights", self.eval_weights, EVAL_WEIGHTS)
        _check_choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.storage, str) or not self.storage:
            raise UserError(f"storage: expected a path or s3:// / gs:// URI, got {self.storage!r}")
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", str(self.data_dir))
        if not isinstance(self.reuse_actors, bool):
            raise UserError(f"reuse_actors: must be true or false, got {self.reuse_actors!r}")
        if not isinstance(self.extra, dict):
            raise UserError("extra: expected a mapping")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "config") -> "SweepConfig":
        if not isinstance(d, Mapping):
            raise UserError(f"{source}: expected a mapping of keys to values at the top level")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise UserError(f"{source}: unknown key(s) {_names(unknown)}; allowed: {_names(sorted(known))}")
        for key, value in d.items():
            _check_type(source, key, value, known[key].default)
        return cls(**dict(d))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "SweepConfig":
        import yaml

        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except OSError as e:
            raise UserError(f"{path}: cannot read config ({e.strerror})") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        return cls.from_dict(data, source=str(path))

    def replace(self, **overrides) -> "SweepConfig":
        d = self.to_dict()
        d.update({k: v for k, v in overrides.items() if v is not None})
        return SweepConfig.from_dict(d, source="command line")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("train_blur", "archs", "seeds", "test_blur"):
            d[k] = list(d[k])
        d["epochs_by_train_blur"] = dict(self.epochs_by_train_blur)
        return d

    def epochs_for(self, blur) -> int:
        """The budget of the row trained at `blur`: its own entry in epochs_by_train_blur, else `epochs`."""
        return self.epochs_by_train_blur.get(blur, self.epochs)

    def epochs_text(self) -> str:
        """'10' or '10 (train blur 30: 20)', for the rows of this grid."""
        from hwclf.mixture import label

        rows = [f"train blur {label(b)}: {self.epochs_for(b)}" for b in self.train_blur
                if self.epochs_for(b) != self.epochs]
        return f"{self.epochs}" + (f" ({', '.join(rows)})" if rows else "")

    def grid(self) -> list[dict]:
        """Every (arch, blur, seed) cell, in the order a reader expects."""
        return [{"arch": a, "blur": b, "seed": s} for a in self.archs for b in self.train_blur for s in self.seeds]

    def trial_config(self, arch: str, blur, seed: int, threads: int | None = None) -> TrialConfig:
        return TrialConfig(
            dataset=self.dataset, data_dir=self.data_dir, arch=arch, blur_kind=self.blur_kind, blur=blur,
            seed=seed, epochs=self.epochs_for(blur), batch_size=self.batch_size, learning_rate=self.learning_rate,
            lr_schedule=self.lr_schedule, warmup_fraction=self.warmup_fraction, val_fraction=self.val_fraction,
            test_blur=self.test_blur, per_class=self.per_class,
            eval_weights=self.eval_weights, threads=self.threads_per_trial if threads is None else threads,
            se_ratio=self.se_ratio, precision=self.precision,
        )


def _parse_row_epochs(value: Any, integer: bool) -> dict:
    """{30: 20, "mix:0/5": 12} -> {30: 20, "mix:0/5": 12} with canonical keys and whole-number budgets."""
    if not isinstance(value, Mapping):
        raise UserError(f"epochs_by_train_blur: expected a mapping of train level to epochs such as {{30: 20}}, "
                        f"got {value!r}")
    out = {}
    for key, epochs in value.items():
        level = parse_train_blur(key, "epochs_by_train_blur", integer=integer)
        out[level] = _check_int(f"epochs_by_train_blur[{key}]", epochs, 1)
    return out


def _check_recipe(cfg) -> None:
    """Learning rate and its schedule, shared by trial and sweep configs (frozen dataclasses)."""
    object.__setattr__(cfg, "learning_rate", _check_float("learning_rate", cfg.learning_rate, 0, 10, lo_open=True))
    _check_choice("lr_schedule", cfg.lr_schedule, LR_SCHEDULES)
    object.__setattr__(cfg, "warmup_fraction",
                       _check_float("warmup_fraction", cfg.warmup_fraction, 0, 1, hi_open=True))
    if cfg.lr_schedule == "constant" and cfg.warmup_fraction:
        raise UserError(f"warmup_fraction: {cfg.warmup_fraction:g} needs lr_schedule: cosine "
                        f"(a constant rate has no warm-up)")


_LISTY = (tuple, list)


def _check_type(source: str, key: str, value: Any, default: Any) -> None:
    """YAML types against the dataclass defaults: lists where lists go, numbers where numbers go."""
    if value is None:
        if key in ("data_dir", "per_class"):
            return
        raise UserError(f"{source}: key {key!r} is empty")
    if isinstance(default, _LISTY):
        allowed = (*_LISTY, str, int, float, dict) if key == "train_blur" else (*_LISTY, str, int, float)  # {mix: [...]}
        if not isinstance(value, allowed) or isinstance(value, bool):
            raise UserError(f"{source}: key {key!r} must be a list, got {type(value).__name__}")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"{source}: key {key!r} must be true/false, got {value!r}")
    elif isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{source}: key {key!r} must be a number, got {value!r}")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise UserError(f"{source}: key {key!r} must be a string, got {value!r}")
