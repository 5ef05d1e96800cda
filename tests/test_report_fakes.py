"""Hand-built experiment directories that follow docs/results-format.md, for the report tests.

``write_sweep`` / ``write_trial`` write exactly the files the sweep driver and Ray Tune leave (hwclf-sweep.json,
<arch>-b<blur>-s<seed>-<id>/ with params.json, result.json lines, checkpoint_NNNNNN/ with state.json and, in
the last one, evaluation.json; error.txt for a failed trial) with numbers the tests choose. ``make_realistic``
builds a full-size synthetic study (6 archs x 5 blur levels x 3 seeds, 26 letters, writers) for visual checks.

Run ``python tests/test_report_fakes.py DIR`` to write the realistic experiment to DIR.
"""

from __future__ import annotations

import json
import string
import sys
import zlib
from pathlib import Path

import numpy as np

from hwclf import mixture

LETTERS = list(string.ascii_uppercase)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def write_sweep(exp: Path, *, archs, train_blur, seeds, test_blur, name="study", dataset="femnist-letters",
                classes=("A", "B", "C"), has_writers=False, grid=None, **config) -> dict:
    cfg = {"name": name, "dataset": dataset, "data_dir": None, "blur_kind": "box", "train_blur": list(train_blur),
           "archs": list(archs), "seeds": list(seeds), "test_blur": list(test_blur), "epochs": 3, "batch_size": 128,
           "learning_rate": 0.001, "val_fraction": 0.1, "per_class": None, "eval_weights": "last", "se_ratio": 16,
           "cpus_per_trial": 1, "gpus_per_trial": 0, "threads_per_trial": 0, "max_concurrent": 0, "max_failures": 2,
           "storage": str(exp.parent), "description": "", "extra": {}}
    cfg.update(config)
    doc = {
        "schema": "hwclf.sweep/1",
        "config": cfg,
        "grid": grid if grid is not None else [{"arch": a, "blur": b, "seed": s} for a in archs for b in train_blur
                                               for s in seeds],
        "dataset": {"name": dataset, "fingerprint": "sha256:" + "ab" * 32, "n_train": 17896, "n_test": 5034,
                    "classes": list(classes), "has_writers": has_writers},
        "environment": {"hwclf": "0.1.0", "python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.15.1",
                        "ray": "2.60.0", "numpy": "2.4.6", "opencv": "5.0.0", "git_commit": "abc123def456",
                        "git_dirty": False, "host": "testhost", "cpus": 2, "gpus": 0, "platform": "Linux-x86_64"},
        "started_at": "2026-11-26T10:00:00+00:00",
        "finished_at": "2026-11-26T10:05:00+00:00",
        "wall_time_s": 300.0,
        "command": "python sweep/run.py --preset demo",
    }
    write_json(exp / "hwclf-sweep.json", doc)
    return doc


def level(k, acc, *, classes=("A", "B", "C"), loss=None, bal=None, per_class=None, confusion=None,
          per_writer=None) -> dict:
    """One evaluation.json test entry. Without explicit per-class data every class gets ``acc`` and the misses of
    class i all go to class i+1 (100 images per class), so confusions are predictable."""
    n = len(classes)
    if per_class is None:
        per_class = [acc] * n
    if confusion is None:
        confusion = []
        for i, r in enumerate(per_class):
            row = [0] * n
            row[i] = int(round(100 * r))
            row[(i + 1) % n] += 100 - row[i]
            confusion.append(row)
    return {"test_blur": k, "accuracy": acc, "balanced_accuracy": acc if bal is None else bal,
            "loss": round(1 - acc, 6) if loss is None else loss, "per_class_accuracy": list(per_class),
            "confusion": confusion, "per_writer": per_writer}


def history(epochs: int, final_val_acc: float = 0.8) -> list:
    out = []
    for e in range(1, epochs + 1):
        f = e / epochs
        out.append({"epoch": e, "loss": round(1.5 - f, 4), "accuracy": round(0.4 + 0.5 * f, 4),
                    "val_loss": round(1.4 - 0.9 * f, 4), "val_accuracy": round(final_val_acc * (0.6 + 0.4 * f), 4),
                    "epoch_time_s": 2.0, "images_per_s": 5000.0})
    return out


def write_trial(exp: Path, arch: str, blur, seed: int, tests: list | None = None, *, status: str = "complete",
                epochs: int = 3, test_blur=(0, 5, 10), dataset="femnist-letters", classes=("A", "B", "C"),
                hist=None, trial_id: str | None = None, error: str = "ValueError: loss became NaN at epoch 2",
                model=None, wall_time_s=140.2, train_time_s=123.4) -> Path:
    """One Ray Tune trial directory. status: complete (evaluation.json in the last checkpoint), failed
    (error.txt, no evaluation.json) or incomplete (neither)."""
    trial_id = trial_id or f"t{zlib.crc32(f'{arch}/{blur}/{seed}'.encode()) % 100000:05d}_{seed:05d}"
    d = exp / f"{arch}-b{mixture.slug(blur)}-s{seed}-{trial_id}"  # mix:0/5/10 -> mix0_5_10, as Ray names it
    d.mkdir(parents=True, exist_ok=True)
    params = {"dataset": dataset, "data_dir": None, "arch": arch, "blur_kind": "box", "blur": blur, "seed": seed,
              "epochs": epochs, "batch_size": 128, "learning_rate": 0.001, "val_fraction": 0.1,
              "test_blur": list(test_blur), "per_class": None, "eval_weights": "last", "threads": 0, "se_ratio": 16}
    write_json(d / "params.json", params)
    hist = hist if hist is not None else history(epochs)
    ran = hist if status == "complete" else hist[: max(1, len(hist) - 1)]
    lines = [dict(h, training_iteration=i + 1, trial_id=trial_id, time_total_s=2.0 * (i + 1))
             for i, h in enumerate(ran)]
    if status == "complete":
        final = {"done_training": True, "training_iteration": len(ran) + 1, "trial_id": trial_id}
        for t in tests:
            final[f"test_accuracy_b{t['test_blur']}"] = t["accuracy"]
            final[f"test_loss_b{t['test_blur']}"] = t["loss"]
        lines.append(final)
    (d / "result.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
    for i, h in enumerate(ran):
        ck = d / f"checkpoint_{i:06d}"
        write_json(ck / "state.json", {"epoch": h["epoch"], "history": ran[: i + 1], "best_val_accuracy": h["val_accuracy"]})
        (ck / "model.weights.h5").write_bytes(b"\x89HDF\r\n")
    if status == "complete":
        ev = {"schema": "hwclf.trial/1", "config": params,
              "dataset": {"name": dataset, "fingerprint": "sha256:" + "ab" * 32, "n_train": 17896, "n_val": 1988,
                          "n_test": 5034, "classes": list(classes)},
              "model": model or {"params": 123456, "train_flops_per_image": 7_000_000},
              "history": hist, "evaluated_weights": "last", "evaluated_epoch": len(hist), "test": tests,
              "train_time_s": train_time_s, "wall_time_s": wall_time_s, "resumed_from_epoch": 0,
              "epochs_run": len(hist)}
        write_json(d / f"checkpoint_{max(len(ran) - 1, 0):06d}" / "evaluation.json", ev)
    elif status == "failed":
        (d / "error.txt").write_text("Failure # 1 (occurred at 2026-11-26_10-03-00)\nTraceback (most recent call last):\n"
                                     '  File "train.py", line 10, in fit\n' + error + "\n")
    return d


# --- the small study with known numbers -------------------------------------------------------------------

# accuracy per (arch, train blur) -> test blur -> [seed 0, seed 1, seed 2]
KNOWN_ACC = {
    ("basic", 0): {0: [0.80, 0.82, 0.84], 5: [0.60, 0.62, 0.64], 10: [0.30, 0.35, 0.40]},
    ("resnet", 0): {0: [0.90, 0.93, 0.91], 5: [0.70, 0.72, 0.71], 10: [0.50, 0.60, 0.55]},
    ("mobilenet", 0): {0: [0.91, 0.91, 0.91], 5: [0.65, 0.66, 0.67], 10: [0.45, 0.46, 0.47]},
    ("basic", 5): {0: [0.78, 0.80, 0.82], 5: [0.70, 0.72, 0.74], 10: [0.50, 0.52, 0.54]},
    ("resnet", 5): {0: [0.86, 0.88, 0.87], 5: [0.85, 0.86, 0.87], 10: [0.70, 0.71, 0.72]},
    ("mobilenet", 5): {0: [0.85, 0.86, 0.87], 5: [0.80, 0.80, 0.81], 10: [0.65, 0.66, 0.67]},
}
KNOWN_ARCHS = ["basic", "resnet", "mobilenet"]
# per-writer [correct, total] at each test blur; w4 has 3 images (< 5) so it is left out of writer statistics
KNOWN_WRITERS = {0: {"w1": [9, 10], "w2": [8, 10], "w3": [5, 10], "w4": [1, 3]},
                 5: {"w1": [7, 10], "w2": [6, 10], "w3": [3, 10], "w4": [1, 3]},
                 10: {"w1": [5, 10], "w2": [4, 10], "w3": [2, 10], "w4": [0, 3]}}


def make_known(exp: Path, *, skip=(), fail=(), incomplete=(), seeds=(0, 1, 2), sweep=True, writers=True,
               **sweep_config) -> Path:
    """3 archs x train blur {0, 5} x 3 seeds, tested at {0, 5, 10}, classes A, B, C (100 test images each).
    Clean-trained models at a blurred test level lose B twice as fast: per-class [a+0.05, a-0.1, a+0.05], and
    the misses of class i go to class i+1. ``skip``/``fail``/``incomplete``: (arch, blur, seed) cells."""
    if sweep:
        write_sweep(exp, archs=KNOWN_ARCHS, train_blur=[0, 5], seeds=list(seeds), test_blur=[0, 5, 10],
                    has_writers=writers, **sweep_config)
    for (a, b), levels in KNOWN_ACC.items():
        for s in seeds:
            if (a, b, s) in skip:
                continue
            tests = []
            for k, accs in levels.items():
                acc = accs[s]
                pc = [acc, acc, acc] if (k == 0 or b != 0) else [acc + 0.05, acc - 0.1, acc + 0.05]
                tests.append(level(k, acc, per_class=pc, per_writer=KNOWN_WRITERS[k] if writers else None))
            status = "failed" if (a, b, s) in fail else "incomplete" if (a, b, s) in incomplete else "complete"
            write_trial(exp, a, b, s, tests, status=status)
    return exp


# --- a realistic full-size study ---------------------------------------------------------------------------

ARCHS = ["basic", "basic_se", "resnet", "resnet_se", "mobilenet", "mobilenet_se"]
BASE = {"basic": 0.875, "basic_se": 0.88, "resnet": 0.915, "resnet_se": 0.92, "mobilenet": 0.9, "mobilenet_se": 0.903}


def make_realistic(exp: Path, *, archs=ARCHS, train_blur=(0, 5, 10, 20, 30), seeds=(0, 1, 2), n_writers=160,
                   epochs=8, rng_seed=0, drop=(), fail=(), samples=True) -> Path:
    """6 archs x 5 train blurs x 3 seeds, tested at every level, 26 unbalanced letter classes with writers.
    ``drop``: cells (arch, blur, seed) with no trial dir; ``fail``: cells whose trial failed."""
    rng = np.random.default_rng(rng_seed)
    levels = sorted({0, *train_blur})
    write_sweep(exp, archs=archs, train_blur=train_blur, seeds=seeds, test_blur=levels, name=exp.name,
                classes=LETTERS, has_writers=True, epochs=epochs,
                description="Blur study on FEMNIST letters <b>demo</b>")
    nc = len(LETTERS)
    counts = rng.integers(90, 320, size=nc)  # unbalanced classes
    n_test = int(counts.sum())
    labels = np.repeat(np.arange(nc), counts)
    writers = np.array([f"f{1000 + i:04d}_{i % 90:02d}" for i in range(n_writers)])
    img_writer = rng.integers(0, n_writers, size=n_test)
    writer_skill = rng.normal(0, 0.05, size=n_writers)
    fragility = rng.uniform(0.6, 1.5, size=nc)  # how much blur hurts each letter
    lookalike = {i: (i + 4) % nc for i in range(nc)}
    for a, b in [("E", "F"), ("O", "Q"), ("I", "L"), ("C", "G"), ("U", "V"), ("H", "N"), ("B", "R"), ("M", "N")]:
        lookalike[LETTERS.index(a)] = LETTERS.index(b)
    chance = 1 / nc

    def info(k):
        return max(0.05, 1 - 0.006 * k - 0.0004 * k * k)

    for a in archs:
        for b in train_blur:
            for s in seeds:
                if (a, b, s) in drop:
                    continue
                seed_noise = rng.normal(0, 0.006)
                tests = []
                for k in levels:
                    width = 10.0 if k > b else 22.0
                    mean_acc = chance + (BASE[a] - chance) * info(k) * np.exp(-(((k - b) / width) ** 2))
                    mean_acc = float(np.clip(mean_acc + seed_noise + rng.normal(0, 0.004), chance, 0.99))
                    gap = BASE[a] - mean_acc
                    recall = np.clip(mean_acc - gap * (fragility - 1) + rng.normal(0, 0.01, nc), 0.0, 1.0)
                    conf = np.zeros((nc, nc), dtype=int)
                    correct_img = np.zeros(n_test, dtype=bool)
                    start = 0
                    for c in range(nc):
                        n_c = counts[c]
                        ok = int(round(recall[c] * n_c))
                        conf[c, c] = ok
                        miss = n_c - ok
                        to_look = int(round(miss * 0.55))
                        conf[c, lookalike[c]] += to_look
                        others = rng.choice([j for j in range(nc) if j != c], size=miss - to_look)
                        np.add.at(conf[c], others, 1)
                        idx = np.arange(start, start + n_c)
                        wprob = np.clip(recall[c] + writer_skill[img_writer[idx]], 0, 1)
                        order = np.argsort(-(wprob + rng.normal(0, 0.2, n_c)))
                        correct_img[idx[order[:ok]]] = True
                        start += n_c
                    per_class = conf.diagonal() / counts
                    acc = float(conf.diagonal().sum() / n_test)
                    pw = {}
                    for w in range(n_writers):
                        m = img_writer == w
                        if m.any():
                            pw[str(writers[w])] = [int(correct_img[m].sum()), int(m.sum())]
                    loss = float(-np.log(max(acc, 1e-3)) * 1.15 + rng.normal(0, 0.01))
                    tests.append({"test_blur": k, "accuracy": acc, "balanced_accuracy": float(per_class.mean()),
                                  "loss": loss, "per_class_accuracy": per_class.tolist(), "confusion": conf.tolist(),
                                  "per_writer": pw})
                final = [t for t in tests if t["test_blur"] == b][0]["accuracy"]
                hist = []
                for e in range(1, epochs + 1):
                    f = 1 - np.exp(-e / 2.2)
                    va = float(final * (0.55 + 0.45 * f) + rng.normal(0, 0.004))
                    hist.append({"epoch": e, "loss": float(2.4 * (1 - f) + 0.25), "accuracy": va + 0.02,
                                 "val_loss": float(-np.log(max(va, 1e-3)) * 1.1 + rng.normal(0, 0.01)),
                                 "val_accuracy": va, "epoch_time_s": 11.0, "images_per_s": 1700.0})
                status = "failed" if (a, b, s) in fail else "complete"
                params = {"basic": 420_000, "resnet": 1_200_000, "mobilenet": 650_000}
                fam = a.removesuffix("_se")
                write_trial(exp, a, b, s, tests, status=status, epochs=epochs, test_blur=levels, classes=LETTERS,
                            hist=hist, trial_id=f"{zlib.crc32(f'{a}/{b}'.encode()) % 99999:05d}_{s:05d}",
                            model={"params": params[fam] + (30_000 if a.endswith("_se") else 0),
                                   "train_flops_per_image": params[fam] * 6},
                            wall_time_s=float(95 + rng.normal(0, 5)), train_time_s=float(80 + rng.normal(0, 5)))
    if samples:
        _write_samples(exp, levels)
    return exp


def _write_samples(exp: Path, levels) -> None:
    """A stand-in for the driver's samples.png: a letter-like stroke at every blur level."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.1 * len(levels) + 0.5, 1.6), dpi=100)
    axes = fig.subplots(1, len(levels))
    img = np.zeros((28, 28))
    img[5:23, 8:10] = 1
    img[5:7, 8:20] = 1
    img[13:15, 8:18] = 1
    img[21:23, 8:20] = 1
    for ax, k in zip(axes, levels):
        if k:
            from numpy.lib.stride_tricks import sliding_window_view

            p = k // 2
            padded = np.pad(img, p)
            blurred = sliding_window_view(padded, (k, k)).mean(axis=(-1, -2))[:28, :28] if k > 1 else img
        else:
            blurred = img
        ax.imshow(blurred, cmap="gray_r")
        ax.set_title(f"blur {k}", fontsize=8)
        ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    (exp / "samples.png").write_bytes(buf.getvalue())


def test_fake_trial_follows_the_contract(tmp_path):
    """The helpers themselves: a complete trial has evaluation.json in its last checkpoint; failed has error.txt."""
    write_trial(tmp_path, "basic", 0, 0, [level(0, 0.9), level(5, 0.7), level(10, 0.4)])
    write_trial(tmp_path, "basic", 5, 0, status="failed")
    (done,) = tmp_path.glob("basic-b0-s0-*")
    evs = sorted(done.glob("checkpoint_*/evaluation.json"))
    assert len(evs) == 1 and evs[0].parent.name == "checkpoint_000002"
    ev = json.loads(evs[0].read_text())
    assert ev["schema"] == "hwclf.trial/1" and [t["test_blur"] for t in ev["test"]] == [0, 5, 10]
    lines = [json.loads(x) for x in (done / "result.json").read_text().splitlines()]
    assert lines[-1]["done_training"] and lines[-1]["test_accuracy_b5"] == 0.7
    (failed,) = tmp_path.glob("basic-b5-s0-*")
    assert (failed / "error.txt").exists() and not list(failed.glob("checkpoint_*/evaluation.json"))


if __name__ == "__main__":
    make_realistic(Path(sys.argv[1]))
    print(sys.argv[1])
