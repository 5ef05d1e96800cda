"""Part ``tta``: time to accuracy, the original study's protocol against hwclf's fast recipe.

Per architecture family and seed, both recipes train through `hwclf.trial.run_trial` on the same data,
one after the other (interleaved, so a slow spell of the machine hits both). After every epoch the live
model is tested on the clean test set by a callback that runs after the epoch's clock has stopped: the
test costs no training time and is reported apart. The target per architecture is the original
protocol's mean final clean test accuracy over the seeds minus 0.5 points. A recipe's time to target is
read off its seed-mean curve (test accuracy and training time, the sum of epoch times with validation as in
every hwclf trial, each averaged over the seeds at every epoch end): the training time at the end of the
first epoch whose mean accuracy reaches the target. On the mean curve the original protocol always reaches
its own target; each seed's own time to target is kept beside it. The fast recipe runs at each epoch budget
of `--tta-epochs` (each a schedule of its own, decayed to 0 at its last step), because a cosine schedule
reaches its best only at its end: the shortest budget that reaches the target is the recipe's real time.
"""

from __future__ import annotations

import statistics
import time

from hwclf.bench.machine import log

# The original notebook: Adam at a constant 1e-3, batch 32, 10 epochs (the epochs come from the bench's
# sizes). hwclf's fast recipe: warm-up over 20% of the steps to 3e-3, cosine decay to 0, batch 128.
RECIPES = {
    "original": {"lr_schedule": "constant", "learning_rate": 1e-3, "warmup_fraction": 0.0, "batch_size": 32},
    "fast": {"lr_schedule": "cosine", "learning_rate": 3e-3, "warmup_fraction": 0.2, "batch_size": 128},
}
TARGET_MARGIN = 0.005  # the target is the original protocol's mean final accuracy minus this (0.5 points)


def curve_trial(cfg, data, x_test) -> dict:
    """One `run_trial` with the clean test accuracy at every epoch end, beside its training clock."""
    import keras

    from hwclf.trial import evaluate, run_trial

    curve = []

    class TestEveryEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            t = time.perf_counter()
            accuracy = evaluate(self.model, x_test, data.y_test, data.num_classes)["accuracy"]
            curve.append({"epoch": epoch + 1, "test_accuracy": accuracy, "eval_s": time.perf_counter() - t})

    ev = run_trial(cfg, data, callbacks=(TestEveryEpoch(),))
    fit = 0.0
    for row, h in zip(curve, ev["history"], strict=True):
        fit += h["epoch_time_s"]
        row.update({"epoch_time_s": h["epoch_time_s"], "fit_time_s": fit, "learning_rate": h["learning_rate"],
                    "val_accuracy": h["val_accuracy"]})
    return {"final_accuracy": next(t["accuracy"] for t in ev["test"] if t["test_blur"] == 0),
            "fit_time_s": fit, "eval_time_s": sum(r["eval_s"] for r in curve), "whole_fit_s": ev["fit_time_s"],
            "n_train": ev["dataset"]["n_train"], "curve": curve}


def time_to_target(curve: list[dict], target: float) -> tuple[int | None, float | None]:
    """(epoch, training seconds) at the end of the first epoch whose test accuracy reaches `target`."""
    for row in curve:
        if row["test_accuracy"] >= target:
            return row["epoch"], row["fit_time_s"]
    return None, None


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values)}


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """Test accuracy and training time so far, averaged over the seeds at every epoch they all ran."""
    return [{"epoch": rows[0]["epoch"], "test_accuracy": statistics.mean(r["test_accuracy"] for r in rows),
             "fit_time_s": statistics.mean(r["fit_time_s"] for r in rows)} for rows in zip(*curves)]


def labels(fast_epochs, original_epochs: int) -> dict[str, tuple[str, int]]:
    """{label: (recipe, epochs)} in run order: "original", then "fast" for one fast budget, or "fast 3 ep",
    "fast 6 ep", ... for several (airbench's question: the shortest budget that still reaches the target)."""
    fast_epochs = tuple(fast_epochs)
    out = {"original": ("original", original_epochs)}
    for e in fast_epochs:
        out["fast" if len(fast_epochs) == 1 else f"fast {e} ep"] = ("fast", e)
    return out


def _label(trial: dict) -> str:
    return trial.get("label", trial["recipe"])  # JSONs written before the budgets have no label


def summarise(trials: list[dict], archs) -> list[dict]:
    """Per architecture: the target and, per recipe label, the time to it on the seed-mean curve, how many
    seeds reached it on their own (each trial gets its own epoch and time to target), final accuracies and
    fit times. `ratios` holds the original's time to target over each fast budget's; `ratio` is the best of
    them and `best` its label (every budget stays in the table)."""
    rows = []
    for arch in archs:
        mine = [t for t in trials if t["arch"] == arch]
        original_finals = [t["final_accuracy"] for t in mine if t["recipe"] == "original"]
        if not original_finals:
            continue
        target = statistics.mean(original_finals) - TARGET_MARGIN
        row = {"arch": arch, "target": target, "target_rule": f"original mean final - {TARGET_MARGIN:g}"}
        seen = list(dict.fromkeys(_label(t) for t in mine))
        for label in seen:
            these = [t for t in mine if _label(t) == label]
            for t in these:
                t["target"] = target
                t["epoch_to_target"], t["time_to_target_s"] = time_to_target(t["curve"], target)
            curve = mean_curve([t["curve"] for t in these])
            epoch, seconds = time_to_target(curve, target)
            row[label] = {
                "seeds": [t["seed"] for t in these], "epoch_to_target": epoch, "time_to_target_s": seconds,
                "seeds_reached": sum(t["time_to_target_s"] is not None for t in these), "mean_curve": curve,
                "final_accuracy": _spread([t["final_accuracy"] for t in these]),
                "fit_time_s": statistics.mean(t["fit_time_s"] for t in these),
                "eval_time_s": statistics.mean(t["eval_time_s"] for t in these),
            }
        o = row.get("original", {}).get("time_to_target_s")
        fast = [label for label in seen if label != "original"]
        row["ratios"] = {label: (o / row[label]["time_to_target_s"] if o and row[label]["time_to_target_s"]
                                 else None) for label in fast}
        reached = {label: r for label, r in row["ratios"].items() if r}
        row["best"] = max(reached, key=reached.get) if reached else None
        row["ratio"] = reached.get(row["best"]) if reached else None
        rows.append(row)
    return rows


def bench_tta(sizes: dict, dataset: str, data_dir: str | None, data) -> dict:
    from hwclf.config import TrialConfig
    from hwclf.trial import to_model_input

    x_test = to_model_input(data.x_test)
    runs = labels(sizes["tta_epochs"], sizes["tta_original_epochs"])
    trials = []
    for arch in sizes["tta_archs"]:
        for seed in sizes["tta_seeds"]:
            for label, (recipe, epochs) in runs.items():
                cfg = TrialConfig(dataset=dataset, data_dir=data_dir, arch=arch, blur=0, seed=seed,
                                  epochs=epochs, per_class=sizes["tta_per_class"],
                                  test_blur=(0,), precision="float32", **RECIPES[recipe])
                t = {"arch": arch, "recipe": recipe, "label": label, "seed": seed, "epochs": cfg.epochs,
                     **curve_trial(cfg, data, x_test)}
                trials.append(t)
                log(f"  {arch:<10} {label:<10} seed {seed}: {cfg.epochs} epochs, fit {t['fit_time_s']:.1f} s, "
                    f"final {t['final_accuracy']:.1%} (test after each epoch: {t['eval_time_s']:.1f} s, "
                    f"not on the clock)")
    rows = summarise(trials, sizes["tta_archs"])
    return {"dataset": dataset, "n_train": trials[0]["n_train"] if trials else None, "n_test": int(len(data.y_test)),
            "recipes": {label: {**RECIPES[recipe], "epochs": epochs, "precision": "float32"}
                        for label, (recipe, epochs) in runs.items()},
            "target_margin": TARGET_MARGIN, "archs": list(sizes["tta_archs"]), "seeds": list(sizes["tta_seeds"]),
            "per_class": sizes["tta_per_class"], "rows": rows, "trials": trials}
