"""The original study's way of running its trials, kept small and faithful, as the benchmark's baseline.

What the original notebook did for every (blur, seed) it trained, and what `hwclf bench` times against
`hwclf.trial.run_trial` on the same trials:

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
