"""Part ``naive``: the original study's way of running its trials, kept small and faithful, timed against
`hwclf.trial.run_trial` in one process and against the sweep, on the same trials, with the test accuracy
of each.

What the original notebook did for every (blur, seed) it trained:

* rebuild the blurred training set from the raw images with a Python loop, one `cv2.blur` call per image;
* scale to [0, 1], add the channel axis, one-hot the labels with `keras.utils.to_categorical`;
* compile with Adam and `categorical_crossentropy`, `model.fit` on the numpy arrays at batch 32;
* no validation, no checkpoints, no per-epoch reports: evaluate on the (loop-blurred) test set at the end;
* trials one after another in one process (TensorFlow's default threads: every core).

The training images are the same ones `run_trial` trains on (same per-class subset and the same
stratified train/validation split, whose validation part the baseline simply does not use), the network
is the same `build_model(arch)` with the same seed, so the two differ only in *how* they run. The
baseline does strictly less work per trial than `run_trial` (no validation pass, no checkpoints), which
makes the comparison conservative.
"""

from __future__ import annotations

import time

import numpy as np

from hwclf.data import Dataset, subset_per_class, train_val_split


def naive_box_blur(images: np.ndarray, k: int) -> np.ndarray:
    """The original loop: `cv2.blur(image, (k, k))` per image. k <= 1 leaves the images as they are."""
    import cv2

    k = int(k)
    if k <= 1:
        return images.copy()
    out = []
    for image in images:
        out.append(cv2.blur(image, (k, k)))
    return np.array(out)


def naive_trial(data: Dataset, *, arch: str = "basic", blur: int = 0, seed: int = 0, epochs: int = 2,
                per_class: int | None = None, val_fraction: float = 0.1, test_blur=None, batch_size: int = 32,
                learning_rate: float = 1e-3, verbose: int = 0) -> dict:
    """One trial the original way; returns wall and fit times and the test accuracy at every test level.

    `test_blur` defaults to (0, blur) like `TrialConfig`: clean and matched test accuracy.
    """
    import keras

    from hwclf.models import build_model

    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    # Same training images as hwclf.trial.prepare_data (its validation part is not used here).
    idx = np.arange(len(data.y_train))
    if per_class:
        idx = subset_per_class(data.y_train, per_class, seed)
    tr, _ = train_val_split(data.y_train[idx], val_fraction, seed)
    tr = idx[tr]

    t = time.perf_counter()
    x_train = naive_box_blur(data.x_train[tr], blur)
    blur_time = time.perf_counter() - t
    x_train = (x_train / 255.0).astype("float32").reshape(-1, 28, 28, 1)
    y_train = keras.utils.to_categorical(data.y_train[tr], data.num_classes)

    model = build_model(arch, data.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    t = time.perf_counter()
    model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=verbose, shuffle=True)
    fit_time = time.perf_counter() - t

    levels = sorted({0, blur} if test_blur is None else set(test_blur))
    y_test = keras.utils.to_categorical(data.y_test, data.num_classes)
    tests = []
    t = time.perf_counter()
    for level in levels:
        x_test = (naive_box_blur(data.x_test, level) / 255.0).astype("float32").reshape(-1, 28, 28, 1)
        loss, accuracy = model.evaluate(x_test, y_test, batch_size=batch_size, verbose=0)
        tests.append({"test_blur": level, "accuracy": float(accuracy), "loss": float(loss)})
    eval_time = time.perf_counter() - t
    return {
        "arch": arch, "blur": blur, "seed": seed, "epochs": epochs, "batch_size": batch_size,
        "n_train": int(len(tr)), "blur_time_s": blur_time, "train_time_s": fit_time, "eval_time_s": eval_time,
        "wall_time_s": time.perf_counter() - started, "test": tests,
    }


def naive_study(data: Dataset, cells: list[dict], **kwargs) -> dict:
    """Every cell ({"arch", "blur", "seed"}) one after another in this process, as the notebook did."""
    started = time.perf_counter()
    trials = [naive_trial(data, arch=c["arch"], blur=c["blur"], seed=c["seed"], **kwargs) for c in cells]
    return {"wall_time_s": time.perf_counter() - started, "trials": trials}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _accuracies(trials: list[dict]) -> dict:
    clean = [t["test"].get("0") for t in trials]
    matched = [t["test"].get(f"{t['blur']:g}") for t in trials]
    return {"clean_accuracy": _mean(clean), "matched_accuracy": _mean(matched)}


def _hwclf_sequential(data, dataset: str, data_dir: str | None, cells: list[dict], epochs: int,
                      per_class: int, batch_size: int, precision: str = "float32") -> tuple[float, list[dict]]:
    """`run_trial` on every cell, one after another in this process (each from a fresh Keras session)."""
    from hwclf.config import TrialConfig
    from hwclf.trial import run_trial

    started = time.perf_counter()
    trials = []
    for c in cells:
        cfg = TrialConfig(dataset=dataset, data_dir=data_dir, arch=c["arch"], blur=c["blur"], seed=c["seed"],
                          epochs=epochs, batch_size=batch_size, per_class=per_class, test_blur=(0, c["blur"]),
                          precision=precision)
        ev = run_trial(cfg, data)
        trials.append({**c, "wall_time_s": ev["wall_time_s"], "train_time_s": ev["train_time_s"],
                       "test": {f"{t['test_blur']:g}": t["accuracy"] for t in ev["test"]}})
    return time.perf_counter() - started, trials


def bench_naive(sizes: dict, dataset: str, data_dir: str | None, sweep_part: dict | None) -> dict:
    """The same trials five ways: the original way; hwclf at the original's batch 32 (same optimisation,
    so the accuracy must match and the time difference is the engineering alone); hwclf at its default
    batch 128, in float32 and in mixed_bfloat16; and the sweep of part 4 when it ran the same trials."""
    import keras

    from hwclf.data import load_dataset

    data = load_dataset(dataset, data_dir)
    cells = [{"arch": sizes["trial_arch"], "blur": b, "seed": s} for b in sizes["trial_blurs"]
             for s in sizes["trial_seeds"]]
    epochs, per_class, nb = sizes["trial_epochs"], sizes["trial_per_class"], sizes["naive_batch"]

    hw128_wall, hw128 = _hwclf_sequential(data, dataset, data_dir, cells, epochs, per_class, 128)
    bf16_wall, bf16 = _hwclf_sequential(data, dataset, data_dir, cells, epochs, per_class, 128, "mixed_bfloat16")
    hw32_wall, hw32 = _hwclf_sequential(data, dataset, data_dir, cells, epochs, per_class, nb)
    keras.backend.clear_session()  # the naive study starts from a fresh session, then runs as the notebook did
    naive = naive_study(data, cells, epochs=epochs, per_class=per_class, batch_size=nb)
    naive_trials = [{"arch": t["arch"], "blur": t["blur"], "seed": t["seed"], "wall_time_s": t["wall_time_s"],
                     "train_time_s": t["train_time_s"], "blur_time_s": t["blur_time_s"],
                     "eval_time_s": t["eval_time_s"],
                     "test": {f"{x['test_blur']:g}": x["accuracy"] for x in t["test"]}} for t in naive["trials"]]

    methods = [
        {"method": f"naive: original way (per-image blur loop, one-hot, batch {nb}, no validation), sequential",
         "key": "naive", "batch_size": nb, "wall_s": naive["wall_time_s"], "trials": naive_trials,
         **_accuracies(naive_trials)},
        {"method": f"hwclf run_trial at batch {nb} (same optimisation as naive), sequential, all threads",
         "key": "hwclf_sequential_b32", "batch_size": nb, "wall_s": hw32_wall, "trials": hw32,
         **_accuracies(hw32)},
        {"method": "hwclf run_trial at batch 128 (hwclf default), sequential, all threads",
         "key": "hwclf_sequential", "batch_size": 128, "wall_s": hw128_wall, "trials": hw128,
         **_accuracies(hw128)},
        {"method": "hwclf run_trial at batch 128, precision mixed_bfloat16, sequential, all threads",
         "key": "hwclf_sequential_bf16", "batch_size": 128, "precision": "mixed_bfloat16", "wall_s": bf16_wall,
         "trials": bf16, **_accuracies(bf16)},
    ]

    def key(cs):
        return sorted((c["arch"], c["blur"], c["seed"]) for c in cs)

    same_cells = sweep_part is not None and "trials" in sweep_part and key(sweep_part.get("cells", [])) == key(cells)
    if same_cells:
        sw = [{"arch": t["arch"], "blur": t["blur"], "seed": t["seed"], "test": t["test"]}
              for t in sweep_part["trials"]]
        methods.append({"method": f"hwclf sweep at batch 128 (Ray Tune, {sweep_part['slots']} parallel trials x "
                                  f"1 thread; wall incl. Ray start)", "key": "hwclf_sweep", "batch_size": 128,
                        "wall_s": sweep_part["wall_s"], "trials": sw, **_accuracies(sw)})
    for m in methods:
        m["naive_over_this"] = naive["wall_time_s"] / m["wall_s"]
    by_key = {m["key"]: m for m in methods}
    return {"dataset": dataset, "cells": cells, "epochs": epochs, "per_class": per_class,
            "n_test": int(len(data.y_test)), "classes": list(data.classes), "methods": methods,
            "speedup_same_batch": by_key["hwclf_sequential_b32"]["naive_over_this"],
            "speedup_sequential": by_key["hwclf_sequential"]["naive_over_this"],
            "speedup_sequential_bf16": by_key["hwclf_sequential_bf16"]["naive_over_this"],
            "speedup_sweep": by_key["hwclf_sweep"]["naive_over_this"] if same_cells else None}
