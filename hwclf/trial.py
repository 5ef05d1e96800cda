"""One trial: blur the data at one kernel, train one architecture from one seed, test at every blur level.

No Ray here. The caller passes a `report(metrics, checkpoint_dir)` hook that is called after every epoch
and once at the end (with `evaluation.json` in the checkpoint), exactly the shape of `ray.tune.report`,
so the Ray driver and the `hwclf train` CLI run the same code. A trial given a checkpoint directory
continues from the epoch after it, and ends with the same number of epochs; every checkpoint is sealed by a
checksum manifest and checked before it is resumed (hwclf.checkpoint).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from hwclf import checkpoint as ckpt_io
from hwclf.blur import blur
from hwclf.checkpoint import BEST_FILE, EVALUATION_FILE, OPTIMIZER_FILE, STATE_FILE, WEIGHTS_FILE  # noqa: F401
from hwclf.config import TrialConfig
from hwclf.data import Dataset, load_dataset, subset_per_class, train_val_split
from hwclf.mixture import VALIDATION_DRAW, draw_levels, is_mix, mix_levels

ReportFn = Callable[[dict, "Path | None"], None]

SCHEMA = "hwclf.trial/1"


def configure_backend(threads: int = 0) -> None:
    """CPU thread budget and GPU memory growth, before the backend runs its first op.

    Several trials share a machine: without a thread cap each TF runtime takes every core and they
    oversubscribe; without memory growth the first trial on a shared GPU takes all its memory.
    """
    import keras

    if keras.backend.backend() == "jax":
        # JAX's memory growth: read when its GPU client starts (the first op), not at import
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        return
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:
        pass  # runtime already initialised in this process (e.g. a second trial in tests): keep its settings


def to_model_input(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0)[..., None]


def split_indices(cfg: TrialConfig, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices into the dataset's training split: optional per-class subset, then a
    stratified validation split, both from the trial's seed."""
    idx = np.arange(len(data.y_train))
    if cfg.per_class:
        idx = subset_per_class(data.y_train, cfg.per_class, cfg.seed)
    tr, va = train_val_split(data.y_train[idx], cfg.val_fraction, cfg.seed)
    return idx[tr], idx[va]


def prepare_data(cfg: TrialConfig, data: Dataset):
    """The trial's own copy at one blur level: model inputs for training and validation, and their labels."""
    tr, va = split_indices(cfg, data)
    x_train = to_model_input(blur(data.x_train[tr], cfg.blur, cfg.blur_kind))
    x_val = to_model_input(blur(data.x_train[va], cfg.blur, cfg.blur_kind))
    return x_train, data.y_train[tr], x_val, data.y_train[va]


class MixtureData:
    """A blur mixture's training data: every image blurred once per level (uint8, so 3 levels of all of
    EMNIST take 0.3 GB), and each epoch's inputs picked from those copies by `draw_levels`.

    Picking from pre-blurred copies costs one gather and one float conversion per epoch instead of a blur
    per batch (docs/performance.md measures it against a single-level trial).
    """

    def __init__(self, cfg: TrialConfig, data: Dataset):
        tr, va = split_indices(cfg, data)
        self.levels = mix_levels(cfg.blur)
        self.seed = cfg.seed
        self.copies = np.stack([blur(data.x_train[tr], level, cfg.blur_kind) for level in self.levels])
        self.y_train = data.y_train[tr]
        val_copies = np.stack([blur(data.x_train[va], level, cfg.blur_kind) for level in self.levels])
        self.x_val = to_model_input(self._pick(val_copies, VALIDATION_DRAW))
        self.y_val = data.y_train[va]

    def _pick(self, copies: np.ndarray, epoch: int) -> np.ndarray:
        which = draw_levels(copies.shape[1], len(self.levels), self.seed, epoch)
        return copies[which, np.arange(copies.shape[1])]

    def x_train(self, epoch: int) -> np.ndarray:
        """Model inputs for `epoch` (0-based): a fresh level per image, the same after a resume."""
        return to_model_input(self._pick(self.copies, epoch))


def make_learning_rate(cfg: TrialConfig, steps_per_epoch: int):
    """A float for the constant schedule; for cosine, linear warm-up from 0 to the peak over
    `warmup_fraction` of all steps, then cosine decay to 0 at the last step. The schedule reads Adam's step
    counter, which is checkpointed, so a resumed trial continues the curve where it stopped."""
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    import keras

    total = cfg.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_fraction * total))
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=total, alpha=0.0)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=max(1, total - warmup), alpha=0.0,
                                                  warmup_target=cfg.learning_rate, warmup_steps=warmup)


def current_learning_rate(model) -> float:
    import keras

    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


def evaluate(model, x: np.ndarray, y: np.ndarray, num_classes: int, writers: np.ndarray | None = None,
             batch_size: int = 1024) -> dict:
    """Accuracy, balanced accuracy, loss, per-class recall, confusion and per-writer counts on one set."""
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    pred = probs.argmax(axis=1)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    confusion = np.bincount(y * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    support = confusion.sum(axis=1)
    recall = np.divide(np.diag(confusion), support, out=np.full(num_classes, np.nan), where=support > 0)
    out = {
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": float(np.nanmean(recall)),
        "loss": float(-np.log(p_true).mean()),
        "per_class_accuracy": [None if np.isnan(r) else float(r) for r in recall],
        "confusion": confusion.tolist(),
        "per_writer": None,
    }
    if writers is not None:
        correct = pred == y
        out["per_writer"] = {str(w): [int(correct[writers == w].sum()), int((writers == w).sum())]
                             for w in np.unique(writers)}
    return out


def save_weights_and_optimizer(model, directory: Path) -> None:
    model.save_weights(directory / WEIGHTS_FILE)
    values = {f"v{i:04d}": np.asarray(v.numpy() if hasattr(v, "numpy") else v) for i, v in enumerate(model.optimizer.variables)}
    np.savez(directory / OPTIMIZER_FILE, **values)


def restore_weights_and_optimizer(model, directory: Path) -> None:
    """Weights, then Adam's state by position (the same architecture gives the same variable order).

    Keras loads a file that does not fit with warnings and leaves the unmatched layers as initialised: here
    any such warning is a failure, since a half-restored model is a silently wrong resume."""
    import warnings

    model.optimizer.build(model.trainable_variables)  # so the file's optimizer variables have a place
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(directory / WEIGHTS_FILE)
    skipped = [w for w in caught if issubclass(w.category, UserWarning)]
    if skipped:
        raise ValueError(f"{len(skipped)} parts did not match, e.g. {str(skipped[0].message).splitlines()[0]}")
    opt_path = directory / OPTIMIZER_FILE
    saved = np.load(opt_path)
    variables = model.optimizer.variables
    if len(saved.files) != len(variables):
        raise ValueError(f"{opt_path}: {len(saved.files)} optimizer variables saved, model has {len(variables)}")
    for i, var in enumerate(variables):
        var.assign(saved[f"v{i:04d}"])


def _candidates(resume_from) -> list[Path]:
    if resume_from is None:
        return []
    if isinstance(resume_from, (str, os.PathLike)):
        return [Path(resume_from)]
    return [Path(p) for p in resume_from]


def restore(model_factory, cfg: TrialConfig, fingerprint: str, resume_from):
    """The model and state to continue from: the first checkpoint in `resume_from` (latest first) that is
    intact, was written by this trial's identity, and loads; else a fresh model and None (start over).

    Every checkpoint passed over is named in ONE warning line with its damage, so a retry never burns on
    the same bad file and a resume is never silently wrong.
    """
    model = model_factory()
    candidates = _candidates(resume_from)
    ident = ckpt_io.identity(cfg.to_dict(), fingerprint)
    problems, state, used, legacy = [], None, None, False
    for directory in candidates:
        try:
            found, legacy = ckpt_io.verify(directory, ident)
            try:
                restore_weights_and_optimizer(model, directory)
            except Exception as e:  # any load failure means the checkpoint is unusable; say which and why
                model = model_factory()  # a failed load may have written part of the weights: start clean
                first = (str(e).strip().splitlines() or [""])[0][:200]
                raise ckpt_io.Damaged(f"{directory}: does not load into {cfg.arch} ({type(e).__name__}: {first})")
            state, used = found, directory
            break
        except ckpt_io.Damaged as e:
            problems.append(str(e))
    notes = list(problems)
    if used is not None and legacy:
        notes.append(f"{used} has no {ckpt_io.MANIFEST_FILE} (written by an older hwclf): its files were "
                     f"checked by loading them, not by checksum")
    if notes:
        tail = f"resuming from {used} (epoch {state['epoch']})" if used is not None else "starting the trial over"
        ckpt_io.warn("; ".join(notes) + "; " + tail)
    return model, state, used


def run_trial(cfg: TrialConfig, data: Dataset | None = None, report: ReportFn | None = None,
              resume_from=None, verbose: int = 0, callbacks: tuple = ()) -> dict:
    """Train and evaluate one configuration; returns the evaluation dict (docs/results-format.md).

    `resume_from`: a checkpoint directory, or several (latest first) to fall back through (`restore`).
    `callbacks`: extra Keras callbacks for `model.fit` (the bench's per-epoch test), run after the trial's
    own epoch hook has stopped the epoch clock, so their work is not in `epoch_time_s`."""
    started = time.perf_counter()
    configure_backend(cfg.threads)
    import keras

    from hwclf.models import build_model, compile_model, count_params, training_flops_per_image

    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir)
    mixture = MixtureData(cfg, data) if is_mix(cfg.blur) else None
    if mixture is None:
        x_train, y_train, x_val, y_val = prepare_data(cfg, data)
    else:
        x_train, y_train, x_val, y_val = None, mixture.y_train, mixture.x_val, mixture.y_val

    steps_per_epoch = -(-len(y_train) // cfg.batch_size)

    def new_model():
        keras.backend.clear_session()  # a process may run trial after trial (reused Ray workers, the bench)
        # Global in Keras: set by every trial, so a reused worker never inherits the previous trial's policy
        keras.mixed_precision.set_global_policy(cfg.precision)
        keras.utils.set_random_seed(cfg.seed)
        return compile_model(build_model(cfg.arch, data.num_classes, se_ratio=cfg.se_ratio),
                             make_learning_rate(cfg, steps_per_epoch))

    model, state, resume_dir = restore(new_model, cfg, data.fingerprint, resume_from)
    if state is not None:
        # The shuffling stream of an uninterrupted run cannot be recovered; make the resumed one repeatable.
        keras.utils.set_random_seed(cfg.seed + 1000 * state["epoch"])
    else:
        state = {"epoch": 0, "history": [], "best_val_accuracy": -1.0, "best_epoch": 0, "train_time_s": 0.0}
    resumed_from_epoch = state["epoch"]
    report = report or (lambda metrics, checkpoint_dir: None)
    scratch = Path(tempfile.mkdtemp(prefix="hwclf-ckpt-"))
    best_src = resume_dir / BEST_FILE if resume_dir is not None and state["epoch"] else None
    ident = ckpt_io.identity(cfg.to_dict(), data.fingerprint)

    def save_checkpoint(evaluation: dict | None = None) -> Path:
        ckpt = scratch / f"epoch_{state['epoch']:04d}"
        ckpt.mkdir(parents=True, exist_ok=True)
        save_weights_and_optimizer(model, ckpt)
        if cfg.eval_weights == "best" and best_weights_path.is_file():
            shutil.copy2(best_weights_path, ckpt / BEST_FILE)
        (ckpt / STATE_FILE).write_text(json.dumps(state))
        if evaluation is not None:
            (ckpt / EVALUATION_FILE).write_text(json.dumps(evaluation))
        ckpt_io.write_manifest(ckpt, ident)  # last: a checkpoint without it was cut short
        return ckpt

    best_weights_path = scratch / BEST_FILE
    if best_src is not None and best_src.is_file():
        shutil.copy2(best_src, best_weights_path)

    class EpochHook(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            dt = time.perf_counter() - self.t0
            logs = logs or {}
            row = {"epoch": epoch + 1, "loss": float(logs.get("loss", np.nan)),
                   "accuracy": float(logs.get("accuracy", np.nan)),
                   "val_loss": float(logs.get("val_loss", np.nan)),
                   "val_accuracy": float(logs.get("val_accuracy", np.nan)),
                   "learning_rate": current_learning_rate(model),  # at the epoch's end
                   "epoch_time_s": dt, "images_per_s": len(y_train) / dt if dt > 0 else None}
            state["epoch"] = epoch + 1
            state["history"].append(row)
            state["train_time_s"] += dt
            if row["val_accuracy"] > state["best_val_accuracy"]:
                state["best_val_accuracy"], state["best_epoch"] = row["val_accuracy"], epoch + 1
                if cfg.eval_weights == "best":
                    model.save_weights(best_weights_path)
            ckpt = save_checkpoint()
            report(dict(row), ckpt)
            shutil.rmtree(ckpt, ignore_errors=True)

    t_fit = time.perf_counter()
    if mixture is None and state["epoch"] < cfg.epochs:
        model.fit(x_train, y_train, batch_size=cfg.batch_size, epochs=cfg.epochs, initial_epoch=state["epoch"],
                  validation_data=(x_val, y_val), callbacks=[EpochHook(), *callbacks], verbose=verbose, shuffle=True)
    while mixture is not None and state["epoch"] < cfg.epochs:
        # One fit per epoch, each on that epoch's draw and reseeded from (seed, epoch): a resumed mixture
        # trial shuffles and draws exactly as the uninterrupted one did.
        epoch = state["epoch"]
        keras.utils.set_random_seed(cfg.seed + 1000 * epoch)
        model.fit(mixture.x_train(epoch), y_train, batch_size=cfg.batch_size, epochs=epoch + 1, initial_epoch=epoch,
                  validation_data=(x_val, y_val), callbacks=[EpochHook(), *callbacks], verbose=verbose, shuffle=True)

    fit_time = time.perf_counter() - t_fit
    evaluated_epoch = state["epoch"]
    if cfg.eval_weights == "best" and best_weights_path.is_file():
        model.load_weights(best_weights_path)
        evaluated_epoch = state["best_epoch"]
    tests = []
    t_test = time.perf_counter()
    for level in cfg.test_blur:
        x_test = to_model_input(blur(data.x_test, level, cfg.blur_kind))
        tests.append({"test_blur": level, **evaluate(model, x_test, data.y_test, data.num_classes, data.writers_test)})

    evaluation = {
        "schema": SCHEMA,
        "config": cfg.to_dict(),
        "dataset": {**{k: v for k, v in data.describe().items() if k != "source"},
                    "n_train": int(len(y_train)), "n_val": int(len(y_val))},
        "model": {"params": count_params(model), "train_flops_per_image": training_flops_per_image(model)},
        "history": state["history"],
        "evaluated_weights": cfg.eval_weights,
        "evaluated_epoch": evaluated_epoch,
        "test": tests,
        "train_time_s": state["train_time_s"],
        "fit_time_s": fit_time,  # the whole model.fit call: epochs plus Keras' set-up and tear-down
        "test_time_s": time.perf_counter() - t_test,
        "wall_time_s": time.perf_counter() - started,
        "resumed_from_epoch": resumed_from_epoch,
        "epochs_run": state["epoch"] - resumed_from_epoch,
        "host": platform.node(),
        "backend": keras.backend.backend(),
    }
    final = {"done_training": True, "epoch": state["epoch"]}
    for t in tests:
        k = f"{t['test_blur']:g}"
        final.update({f"test_accuracy_b{k}": t["accuracy"], f"test_balanced_accuracy_b{k}": t["balanced_accuracy"],
                      f"test_loss_b{k}": t["loss"]})
    ckpt = save_checkpoint(evaluation)
    report(final, ckpt)
    shutil.rmtree(scratch, ignore_errors=True)
    return evaluation
