"""Part ``sweep``: a small real Ray Tune sweep (`sweep.run.main`) against the training time measured
inside its trials: wall time, capacity, overhead fraction, where the rest goes, end-to-end MFU."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hwclf.bench.machine import CpuWatch, log, ray_instances_running


def _read_json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def tf_import_seconds() -> float | None:
    """Seconds a fresh Python process takes to import Keras/TensorFlow: what every trial process pays."""
    code = "import time; t = time.perf_counter(); import keras, tensorflow; print(time.perf_counter() - t)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        return float(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _trial_times(exp: Path) -> dict[str, tuple[float, float]]:
    """Trial id -> (start, last result) in the driver's clock, from Tune's experiment state: start is when
    the trial's actor was up (Tune sets it RUNNING), last result when the driver received its final report."""
    states = sorted(exp.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return {}
    out = {}
    for trial_json, meta_json in json.loads(states[-1].read_text()).get("trial_data", []):
        trial = json.loads(trial_json) if isinstance(trial_json, str) else trial_json
        meta = json.loads(meta_json) if isinstance(meta_json, str) else meta_json
        if meta.get("start_time") and meta.get("last_result_time"):
            out[trial["trial_id"]] = (float(meta["start_time"]), float(meta["last_result_time"]))
    return out


def analyse_sweep(exp: Path, wall_s: float, slots: int, t0: float, t_end: float, ray_start_s: float | None,
                  blur_rate: float | None, peak_gflops: float | None, tf_import_s: float | None) -> dict:
    """Capacity, overhead fraction and its breakdown from what the sweep left on disk.

    `t0`/`t_end` are the wall-clock (time.time) bounds of the sweep as the bench saw it. Inside a trial,
    Ray's per-report iteration times (result.json) split its time into setup, epochs, checkpoints and the
    final evaluation; each trial's start and end come from Tune's experiment state (driver clock).
    """
    times = _trial_times(exp)
    trials = []
    for params in sorted(exp.glob("*/params.json")):
        d = params.parent
        evals = sorted(d.glob("checkpoint_*/evaluation.json"))
        if not evals:
            continue
        ev = json.loads(evals[-1].read_text())
        rows = _read_json_lines(d / "result.json")
        epochs = [r for r in rows if "epoch_time_s" in r and not r.get("done_training")]
        final = [r for r in rows if r.get("done_training")]
        if not epochs or not final:
            continue
        trial_id = rows[-1].get("trial_id") or d.name.rsplit("-", 1)[-1]
        # Iteration 1 = setup + epoch 1 + its checkpoint; iteration e >= 2 = epoch e + its checkpoint.
        ckpt_each = [r["time_this_iter_s"] - r["epoch_time_s"] for r in epochs[1:]]
        ckpt_mean = statistics.mean(ckpt_each) if ckpt_each else 0.0
        setup = epochs[0]["time_this_iter_s"] - epochs[0]["epoch_time_s"] - ckpt_mean
        start, end = times.get(trial_id, (None, None))
        if start is None:  # no experiment state: fall back on file times (start is then only a bound)
            start, end = params.stat().st_mtime, (d / "result.json").stat().st_mtime
        cfg = ev["config"]
        n_prepared = ev["dataset"]["n_train"] + ev["dataset"]["n_val"]
        hist = ev["history"]
        ray_total = final[-1]["time_total_s"]
        trials.append({
            "trial": d.name, "trial_id": trial_id, "arch": cfg["arch"], "blur": cfg["blur"], "seed": cfg["seed"],
            "threads": cfg["threads"], "n_train": ev["dataset"]["n_train"], "epochs_run": ev["epochs_run"],
            "images_trained": ev["dataset"]["n_train"] * ev["epochs_run"],
            # forward passes besides training: validation every epoch, the test set at every test level
            "images_forward": ev["dataset"]["n_val"] * ev["epochs_run"] + ev["dataset"]["n_test"] * len(ev["test"]),
            "worker_pids": sorted({r["pid"] for r in rows if "pid" in r}),
            "train_flops_per_image": ev["model"]["train_flops_per_image"],
            "train_time_s": ev["train_time_s"], "trial_wall_time_s": ev["wall_time_s"],
            "ray_time_total_s": ray_total, "lifetime_s": end - start,
            "start_offset_s": start - t0, "end_offset_s": end - t0,
            "setup_s": setup, "checkpoint_report_s": ckpt_mean * len(epochs),
            "evaluation_final_checkpoint_s": final[-1]["time_this_iter_s"],
            "test_time_s": ev.get("test_time_s"),
            # report_s on a row: how long the previous tune.report held the trial (sweep/trainable.py)
            "final_report_wait_s": final[-1].get("report_s"),
            "report_wait_s": sum(r.get("report_s") or 0.0 for r in rows),
            "bookkeeping_s": (end - start) - ray_total,
            "data_blur_s_est": (n_prepared / blur_rate) if (blur_rate and cfg["blur"] and cfg["blur"] > 1) else 0.0,
            "first_epoch_extra_s": (hist[0]["epoch_time_s"] - hist[1]["epoch_time_s"]) if len(hist) > 1 else None,
            "test": {f"{t['test_blur']:g}": t["accuracy"] for t in ev["test"]},
        })
    if not trials:
        raise RuntimeError(f"{exp}: no trial finished (no checkpoint_*/evaluation.json)")
    capacity = wall_s * slots
    train = sum(t["train_time_s"] for t in trials)
    # Ray's timers: time_total_s = train + setup + checkpoints + final report (up to rounding)
    in_ray = sum(t["ray_time_total_s"] for t in trials)
    setup = sum(t["setup_s"] for t in trials)
    ckpt = sum(t["checkpoint_report_s"] for t in trials)
    evaluation = sum(t["evaluation_final_checkpoint_s"] for t in trials)
    setup += in_ray - (train + setup + ckpt + evaluation)  # train_time_s vs Ray's epoch timing: a few ms
    lifetimes = sum(t["lifetime_s"] for t in trials)
    bookkeeping = lifetimes - in_ray
    first_start = min(t["start_offset_s"] for t in trials)
    last_end = max(t["end_offset_s"] for t in trials)
    driver = (first_start + max(0.0, (t_end - t0) - last_end)) * slots
    between = capacity - lifetimes - driver
    images = sum(t["images_trained"] for t in trials)
    flops = sum(t["images_trained"] * t["train_flops_per_image"] for t in trials)
    # training FLOPs per image are 3 x forward (hwclf.models): validation and test passes cost 1/3 per image
    all_flops = flops + sum(t["images_forward"] * t["train_flops_per_image"] / 3 for t in trials)
    workers = len({p for t in trials for p in t["worker_pids"]}) or len(trials)
    breakdown = [
        {"part": "training (model.fit epochs incl. validation; graph tracing in epoch 1)", "slot_s": train,
         "how": "measured: sum of train_time_s"},
        {"part": "trial setup: imports (TF), data subset + blur, model build", "slot_s": setup,
         "how": "measured: Ray's first iteration time minus epoch 1 minus one checkpoint"},
        {"part": f"  of which TF import (fresh-process measurement x {workers} worker processes)",
         "slot_s": (tf_import_s * workers) if tf_import_s else None,
         "how": "measured in a separate process; paid once per worker (reuse_actors)", "sub": True},
        {"part": "  of which data blur", "slot_s": sum(t["data_blur_s_est"] for t in trials),
         "how": "estimate: images blurred / box k=5 rate of part 3", "sub": True},
        {"part": "per-epoch checkpoint + tune.report", "slot_s": ckpt,
         "how": "estimate: Ray's iteration time minus epoch time, epochs 2.. (x epochs)"},
        {"part": "test evaluation (blur test set, predict) + final checkpoint", "slot_s": evaluation,
         "how": "measured: Ray's time of the final report"},
        {"part": "  of which blurring and predicting the test set", "sub": True,
         "slot_s": sum(t["test_time_s"] for t in trials) if all(t["test_time_s"] for t in trials) else None,
         "how": "measured: test_time_s in evaluation.json"},
        {"part": "  of which the last epoch's tune.report still holding the trial", "sub": True,
         "slot_s": (sum(t["final_report_wait_s"] for t in trials)
                    if all(t["final_report_wait_s"] is not None for t in trials) else None),
         "how": "measured: report_s of the final result (persisting the checkpoint, waiting for the driver)"},
        {"part": "Ray bookkeeping in a trial's life (actor up to last result, outside Ray's timers)",
         "slot_s": bookkeeping, "how": "measured: Tune's trial start to last result, minus time_total_s"},
        {"part": "between trials: handing a worker to the next trial (or a new worker), scheduling, last "
                 "round not full", "slot_s": between, "how": "remainder: slots x time between first start and last "
                                                      "result not covered by a trial"},
        {"part": "driver, no trial running: Ray start, data load, samples.png, first actor start, Tune stop",
         "slot_s": driver, "how": "measured: before the first trial is up and after the last result, x slots"},
        {"part": "  of which Ray start", "slot_s": ray_start_s * slots if ray_start_s is not None else None,
         "how": "measured: ray.init, x slots", "sub": True},
    ]
    for b in breakdown:
        b["fraction_of_capacity"] = b["slot_s"] / capacity if b["slot_s"] is not None else None
    return {
        "trials": trials, "n_trials": len(trials), "slots": slots, "wall_s": wall_s, "capacity_slot_s": capacity,
        "sum_train_time_s": train, "overhead_fraction": 1 - train / capacity, "breakdown": breakdown,
        "trial_times_from": "experiment_state" if times else "file modification times",
        "images_trained": images, "train_flops": flops,
        "end_to_end_gflops": flops / wall_s / 1e9,
        "end_to_end_mfu": flops / (wall_s * peak_gflops * 1e9) if peak_gflops else None,
        "model_flops": all_flops, "worker_processes": workers,
        "end_to_end_mfu_all_passes": all_flops / (wall_s * peak_gflops * 1e9) if peak_gflops else None,
        "train_only_mfu": flops / (train / slots * peak_gflops * 1e9) if peak_gflops and train else None,
    }


def bench_sweep(sizes: dict, dataset: str, data_dir: str | None, workdir: Path, peak_gflops: float | None,
                blur_rate: float | None) -> dict:
    """A real Ray Tune sweep through `sweep.run.main`, on a Ray instance of its own (never a running one)."""
    import yaml

    cores = os.cpu_count() or 1
    storage = workdir / "sweep"
    config = {
        "name": "bench-sweep", "dataset": dataset, "data_dir": data_dir, "blur_kind": "box",
        "train_blur": list(sizes["trial_blurs"]), "test_blur": sorted({0, *sizes["trial_blurs"]}),
        "archs": [sizes["trial_arch"]], "seeds": list(sizes["trial_seeds"]), "epochs": sizes["trial_epochs"],
        "batch_size": 128, "per_class": sizes["trial_per_class"], "cpus_per_trial": 1, "threads_per_trial": 1,
        "max_failures": 0, "storage": str(storage),
        "description": "hwclf bench: sweep overhead (temporary)",
    }
    cfg_path = workdir / "bench-sweep.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    tf_import_s = tf_import_seconds()
    log_path = workdir / "sweep.log"

    import ray

    from sweep.run import main as sweep_main

    others = ray_instances_running()
    if others:
        log(f"      note: {others} other Ray instance(s) run here; they share the cores, and a sweep driver "
             f"started now with the default address may attach to this bench's Ray")
    t0 = time.time()
    # A Ray of its own: "auto" (what the driver tries first) would join any Ray already running here.
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="warning", object_store_memory=300 * 1024 ** 2)
    ray_start = time.time() - t0
    try:
        slots = int(min(len(sizes["trial_blurs"]) * len(sizes["trial_seeds"]),
                        ray.cluster_resources().get("CPU", cores) // config["cpus_per_trial"]))
        with open(log_path, "w") as sweep_log, contextlib.redirect_stdout(sweep_log):
            rc = sweep_main(["--config", str(cfg_path), "--no-report", "--fresh"])
        t_end = time.time()
    finally:
        CpuWatch.snapshot()  # Ray's workers while they are still children of its raylet (see CpuWatch)
        t_shut = time.time()
        ray.shutdown()
        shutdown_s = time.time() - t_shut
    if rc != 0:
        tail = log_path.read_text()[-2000:]
        raise RuntimeError(f"sweep exited with {rc}; log tail:\n{tail}")
    wall = t_end - t0
    exp = storage / "bench-sweep"
    record = json.loads((exp / "hwclf-sweep.json").read_text())
    out = analyse_sweep(exp, wall, slots, t0, t_end, ray_start, blur_rate, peak_gflops, tf_import_s)
    out.update({"config": config, "dataset": dataset, "other_ray_instances": others, "ray_start_s": ray_start,
                "ray_shutdown_s": shutdown_s,
                "driver_wall_time_s": record.get("wall_time_s"), "tf_import_s": tf_import_s,
                "cells": [{"arch": t["arch"], "blur": t["blur"], "seed": t["seed"]} for t in out["trials"]]})
    return out
