"""`hwclf bench`: how close training runs to this machine's limit, what the sweep costs around the
training, and how much faster hwclf is than the original study's way. See docs/performance.md.

Six parts, measured in one run on the machine it runs on:

1. ``matmul``: the machine limit, float32 GFLOP/s of a large square `keras.ops.matmul` (the models'
   backend), all cores, median of several repeats after warm-up; the same in bfloat16.
2. ``models``: per architecture, training FLOPs per image, training images/s at batch 128 on random
   28x28x1 inputs (`model.fit` on an in-memory array, warm-up epoch excluded), and MFU
   = images/s x training FLOPs per image / matmul peak. `basic`'s FLOP count is cross-checked against
   an analytic count and against TensorFlow's own per-op FLOP registry on the traced train step.
   `basic` also at other batch sizes and at precision mixed_bfloat16.
3. ``blur``: images/s of the vectorised blur (box k=5, k=20, Gaussian sigma=2) on an EMNIST-sized array,
   and of the original per-image loop for comparison.
4. ``sweep``: a small real Ray Tune sweep (`sweep.run.main`) against the training time measured inside
   its trials: wall time, capacity, overhead fraction, where the rest goes, end-to-end MFU.
5. ``naive``: the original study's way (`hwclf.naive`) against `run_trial` in one process and against
   the sweep, on the same trials and epochs, with the test accuracy of each.
6. ``pack``: N trials side by side (`hwclf.packing`), N = 1, 2, 4, ...: where aggregate throughput stops
   growing, on the cores or on one GPU.

``--quick`` runs everything at tiny sizes (seconds) to check that the code runs; its numbers mean nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwclf.errors import UserError

SCHEMA = "hwclf.bench/1"
PARTS = ("matmul", "models", "blur", "sweep", "naive", "pack")
EMNIST_TRAIN_IMAGES = 124_800
FOREIGN_WARN = 0.05  # warn when other processes take more than this share of the CPU during a part
QUICK_NOTE = "QUICK RUN: tiny sizes to check that the benchmark runs; the numbers mean nothing."

# Full run: about 25 minutes on 2 idle cores (the trials of parts 4-5 train on all of femnist-letters'
# training images, as a study's trials do, so that fixed per-trial costs weigh what they weigh there).
# Quick run: seconds per part.
SIZES = {
    "full": {
        "matmul_n": 4096, "matmul_warmup": 2, "matmul_repeats": 11,
        "model_archs": None, "model_batch": 128, "model_target_epoch_s": 4.0, "model_timed_epochs": 4,
        "model_max_steps": 400, "model_batch_variants": (32, 64, 256),
        "model_precision_variants": ("mixed_bfloat16",),
        "blur_images": EMNIST_TRAIN_IMAGES, "blur_repeats": 3,
        "trial_arch": "basic", "trial_blurs": (0, 5), "trial_seeds": (0, 1), "trial_epochs": 2,
        "trial_per_class": None, "naive_batch": 32,
        "pack_arch": "basic", "pack_batches": (128,), "pack_slots": None, "pack_seconds": 10.0, "pack_steps": 64,
        "pack_rounds": 3,
    },
    "quick": {
        "matmul_n": 1024, "matmul_warmup": 1, "matmul_repeats": 9,
        # Tracing a train step costs seconds per architecture (up to ~20 s for mobilenet_se on 2 busy
        # cores), and every architecture goes through the same code: the quick run measures `basic` only.
        "model_archs": ("basic",), "model_batch": 128, "model_target_epoch_s": 0.5, "model_timed_epochs": 3,
        "model_max_steps": 3, "model_batch_variants": (64,), "model_precision_variants": ("mixed_bfloat16",),
        "blur_images": 2_000, "blur_repeats": 1,
        "trial_arch": "basic", "trial_blurs": (0, 5), "trial_seeds": (0,), "trial_epochs": 1,
        "trial_per_class": 20, "naive_batch": 32,
        "pack_arch": "basic", "pack_batches": (32,), "pack_slots": (1, 2), "pack_seconds": 1.0, "pack_steps": 4,
        "pack_rounds": 1,
    },
}
BLUR_CASES = (("box", 5), ("box", 20), ("gaussian", 2.0))


def _threads_note() -> str:
    import keras

    return f"{keras.backend.backend()} default (all cores)"


def pack_slots(cores: int, gpus: int) -> tuple[int, ...]:
    """Slot counts to try: on CPU the ways to split the cores in powers of two (1, 2, 4, ... <= cores);
    on one GPU 1, 2, 4, ... 16 trials sharing it, each keeping at least one host core."""
    limit = min(16, cores) if gpus else cores
    out, n = [], 1
    while n <= limit:
        out.append(n)
        n *= 2
    return tuple(out)


def _log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class CpuWatch:
    """CPU seconds used by processes that are not this one or its descendants (Ray's included) between
    construction and `stop()`: how much of the machine something else took while a part was measured.

    Parent links are remembered from every snapshot (first seen wins): when Ray shuts down, its worker
    processes outlive their raylet for a moment and are re-parented to init, and they must still count
    as the bench's own. `CpuWatch.snapshot()` is called while the process tree is intact for that.
    """

    _parents: dict[tuple[int, str], int] = {}  # (pid, start time) -> parent pid, as first seen

    def __init__(self):
        self.t0 = time.perf_counter()
        self.before = self.snapshot()

    @staticmethod
    def snapshot() -> dict[int, tuple[int, tuple[str, str], float]]:
        """pid -> (parent pid, (name, start time), CPU seconds so far) of every process, from /proc."""
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        out = {}
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return out
        for pid in pids:
            try:
                raw = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            rp = raw.rfind(")")
            # fields[0] is field 3 (state): ppid = field 4, utime 14, stime 15, starttime 22 (identifies the
            # process: pids are reused, names of kernel threads change)
            fields = raw[rp + 2:].split()
            out[pid] = (int(fields[1]), (raw[raw.find("(") + 1:rp], fields[19]),
                        (int(fields[11]) + int(fields[12])) / tick)
            CpuWatch._parents.setdefault((pid, fields[19]), int(fields[1]))
        return out

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        after = self.snapshot()
        # Every process seen in any snapshot (ended ones too, such as Ray's raylet), with the parent it
        # had when first seen rather than init after an orphaning
        parents = {pid: ppid for (pid, _), ppid in CpuWatch._parents.items()}
        for pid, v in {**self.before, **after}.items():
            parents[pid] = CpuWatch._parents.get((pid, v[1][1]), v[0])
        me = os.getpid()

        def ours(pid: int) -> bool:
            for _ in range(64):
                if pid == me:
                    return True
                if pid <= 1:
                    return False
                pid = parents.get(pid, 0)
            return False

        foreign: dict[str, float] = {}
        own = 0.0
        for pid, (_, (name, started), cpu) in after.items():
            prev = self.before.get(pid)
            used = cpu - prev[2] if prev and prev[1][1] == started else cpu  # new since the start: all of it
            if used <= 0:
                continue
            if ours(pid):
                own += used
            else:
                foreign[name] = foreign.get(name, 0.0) + used
        total = sum(foreign.values())
        cores = os.cpu_count() or 1
        top = sorted(foreign.items(), key=lambda kv: -kv[1])[:3]
        return {"wall_s": wall, "own_cpu_s": own, "foreign_cpu_s": total,
                "foreign_cpu_fraction": total / (wall * cores) if wall > 0 else 0.0,
                "foreign_top": [[n, round(c, 1)] for n, c in top]}


def parse_skip(text: str | None) -> set[str]:
    skip = {s.strip() for s in (text or "").split(",") if s.strip()}
    unknown = sorted(skip - set(PARTS))
    if unknown:
        raise UserError(f"--skip: unknown part(s) {', '.join(unknown)}; allowed: {', '.join(PARTS)}")
    return skip


# ------------------------------------------------------------------------------------------- machine

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerators() -> list[str]:
    """GPUs the Keras backend sees (TensorFlow, JAX or torch)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [d.name for d in tf.config.list_physical_devices("GPU")]
        if backend == "jax":
            import jax

            return [str(d) for d in jax.devices() if d.platform == "gpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:
        pass
    return []


def gpu_name() -> str | None:
    """The GPU's product name from nvidia-smi, where there is one."""
    from hwclf.packing import nvidia_smi

    return (nvidia_smi("name") or [None])[0] or None


def machine_info() -> dict:
    import keras

    def version(dist: str) -> str | None:
        try:
            from importlib.metadata import version as v

            return v(dist)
        except Exception:
            return None

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": cpu_model(), "cores": os.cpu_count(), "cores_usable": usable,
        "gpus": accelerators(), "gpu_name": gpu_name(),
        "tensorflow": version("tensorflow"), "jax": version("jax"), "torch": version("torch"),
        "keras": keras.__version__, "keras_backend": keras.backend.backend(),
        "python": platform.python_version(), "numpy": np.__version__, "opencv": version("opencv-python-headless"),
        "ray": version("ray"), "host": platform.node(), "platform": platform.platform(),
        "date": _now(), "load_average_at_start": _load(), "other_ray_instances_at_start": ray_instances_running(),
    }


def ray_instances_running() -> int:
    """How many Ray instances (GCS server processes) run on this machine right now."""
    n = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"gcs_server" in (proc / "cmdline").read_bytes().split(b"\0")[0]:
                n += 1
        except OSError:
            continue
    return n


def default_data() -> tuple[str, str | None]:
    """femnist-letters from the workplace's shared data when present, else the bundled digits."""
    repo = Path(__file__).resolve().parents[1]
    for base in (repo.parent / "shared" / "data" / "femnist-letters", Path("../shared/data/femnist-letters")):
        if (base / "femnist-letters-train-images-idx3-ubyte.gz").is_file() or \
                (base / "femnist-letters-train-images-idx3-ubyte").is_file():
            return "femnist-letters", str(base.resolve())
    return "digits", None


# ------------------------------------------------------------------------------------ 1. matmul peak

def bench_matmul(n: int, warmup: int, repeats: int) -> dict:
    import keras

    rng = np.random.default_rng(0)
    flops = 2.0 * n ** 3

    def product_times(dtype: str) -> list[float]:
        a = keras.ops.cast(keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32)), dtype)
        b = keras.ops.cast(keras.ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32)), dtype)

        def once() -> float:
            t = time.perf_counter()
            c = keras.ops.matmul(a, b)
            keras.ops.convert_to_numpy(c[:1, :1])  # wait for the product (a no-op on CPU, a sync on GPU)
            return time.perf_counter() - t

        for _ in range(warmup):
            once()
        return [once() for _ in range(repeats)]

    times = product_times("float32")
    med = statistics.median(times)
    out = {"n": n, "dtype": "float32", "flops_per_product": flops, "repeats": repeats, "times_s": times,
           "median_s": med, "gflops": flops / med / 1e9, "gflops_best": flops / min(times) / 1e9,
           "threads": _threads_note()}
    # The limit for mixed_bfloat16 trials (bf16 inputs, float32 accumulation where the hardware has it)
    try:
        bf = product_times("bfloat16")
        out.update({"times_s_bf16": bf, "gflops_bf16": flops / statistics.median(bf) / 1e9})
    except Exception as e:  # a backend without bf16 matmul: say so rather than fail the part
        out["bf16_error"] = f"{type(e).__name__}: {e}"[:300]
    return out


# -------------------------------------------------------------------------------------- 2. models

BASIC_LAYERS = (  # (kind, spatial size of the output, c_in, c_out) of `basic`, written out by hand
    ("conv3x3", 28, 1, 32), ("conv3x3", 28, 32, 32),
    ("conv3x3", 14, 32, 64), ("conv3x3", 14, 64, 64),
    ("conv3x3", 7, 64, 128), ("conv3x3", 7, 128, 128),
    ("conv3x3", 4, 128, 256), ("conv3x3", 4, 256, 256),
    ("dense", 1, 2 * 2 * 256, 256),
)


def basic_analytic_flops(num_classes: int = 26) -> dict:
    """Multiply-adds of `basic`'s convolutions and dense layers (2 FLOPs each), from the layer table
    above rather than from the Keras model; element-wise work (ReLU, pooling, softmax) is left out."""
    macs = 0
    for kind, size, cin, cout in BASIC_LAYERS + (("dense", 1, 256, num_classes),):
        macs += (9 if kind == "conv3x3" else 1) * cin * cout * size * size
    forward = 2 * macs
    return {"forward": forward, "training": 3 * forward}


def tf_registry_flops(model, num_classes: int) -> dict:
    """TensorFlow's own FLOP count (the per-op statistics `tf.compat.v1.profiler` sums as float_ops) of
    the traced forward pass and of the traced train step (forward, loss and gradients), one image."""
    import collections

    import keras
    import tensorflow as tf
    from tensorflow.python.framework import ops as tf_ops

    def count(graph) -> dict:
        by_type = collections.Counter()
        for op in graph.get_operations():
            try:
                stat = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops")
            except Exception:  # op types without a registered count (Relu, Reshape, ...) count 0
                continue
            if stat.value:
                by_type[op.type] += int(stat.value)
        return {"total": int(sum(by_type.values())), "by_op": dict(sorted(by_type.items()))}

    @tf.function
    def forward(x):
        return model(x, training=False)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    spec_x = tf.TensorSpec([1, 28, 28, 1], tf.float32)
    fwd = count(forward.get_concrete_function(spec_x).graph)
    train = count(train_step.get_concrete_function(spec_x, tf.TensorSpec([1], tf.int64)).graph)
    return {"forward": fwd["total"], "training": train["total"], "training_by_op": train["by_op"]}


def _fit_epoch_times(model, x, y, batch_size: int, epochs: int) -> list[float]:
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t0)

    cb = EpochTimes()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True, callbacks=[cb])
    return cb.times


def bench_models(sizes: dict, peak_gflops: float | None, num_classes: int = 26,
                 bf16_peak_gflops: float | None = None) -> dict:
    import keras

    from hwclf.models import MODELS, build_model, compile_model, count_params, forward_flops_per_image, \
        training_flops_per_image

    bs = sizes["model_batch"]
    rng = np.random.default_rng(0)
    rows = []
    flops_check = None
    for name in sizes["model_archs"] or MODELS:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = compile_model(build_model(name, num_classes))
        train_flops = training_flops_per_image(model)
        row = {"arch": name, "params": count_params(model), "forward_flops_per_image": forward_flops_per_image(model),
               "train_flops_per_image": train_flops}
        if name == "basic":
            analytic = basic_analytic_flops(num_classes)
            flops_check = {"arch": "basic", "hwclf_training": train_flops, "analytic_training": analytic["training"],
                           "analytic_forward": analytic["forward"]}
            try:
                reg = tf_registry_flops(build_model(name, num_classes), num_classes)
                flops_check.update({"tf_registry_forward": reg["forward"], "tf_registry_training": reg["training"],
                                    "tf_registry_training_by_op": reg["training_by_op"],
                                    "tf_registry_backward_over_forward": reg["training"] / reg["forward"] - 1})
            except Exception as e:  # private TF API: report why instead of failing the part
                flops_check["tf_registry_error"] = f"{type(e).__name__}: {e}"[:300]
            flops_check["hwclf_over_analytic"] = train_flops / analytic["training"]
            if flops_check.get("tf_registry_training"):
                flops_check["hwclf_over_tf_registry"] = train_flops / flops_check["tf_registry_training"]
        row.update(_throughput(model, bs, sizes, rng, num_classes, train_flops, peak_gflops))
        rows.append(row)
        _log(f"  {name:<13} {_throughput_line(row)}")
        del model
    def basic_at(batch: int, policy: str, peak: float | None) -> dict:
        """`basic` again from a fresh model, at another batch size or precision policy."""
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = compile_model(build_model("basic", num_classes))
            flops = training_flops_per_image(model)
            return {"arch": "basic", "precision": policy, "train_flops_per_image": flops,
                    **_throughput(model, batch, sizes, rng, num_classes, flops, peak)}
        finally:
            keras.mixed_precision.set_global_policy("float32")

    base = next((x for x in rows if x["arch"] == "basic"), None)
    # mixed_bfloat16 at the default batch, against the bf16 matmul peak
    precision_rows = []
    for policy in sizes.get("model_precision_variants") or ():
        r = basic_at(bs, policy, bf16_peak_gflops)
        r["speedup_vs_float32"] = r["images_per_s"] / base["images_per_s"] if base else None
        precision_rows.append(r)
        _log(f"  basic, {policy:<14} {_throughput_line(r)} (MFU vs the bf16 matmul peak)")
    # The batch-size default: float32 at other batch sizes
    batch_rows = []
    for other in sizes.get("model_batch_variants") or ():
        batch_rows.append(basic_at(other, "float32", peak_gflops))
        _log(f"  basic, batch {other:<4} {_throughput_line(batch_rows[-1])}")
    keras.backend.clear_session()
    return {"batch_size": bs, "input": "random float32 28x28x1, labels random 0..25, in-memory numpy array",
            "threads": _threads_note(), "peak_gflops": peak_gflops, "rows": rows,
            "batch_rows": batch_rows, "precision_rows": precision_rows, "flops_check": flops_check}


def _throughput(model, bs: int, sizes: dict, rng, num_classes: int, train_flops: float,
                peak_gflops: float | None) -> dict:
    """Warm-up (traces the train step), a short probe that sizes the timed epochs to ~target seconds,
    then the timed fit; its first epoch is excluded as well, the median of the rest is the rate."""
    x = rng.random((bs * max(4, sizes["model_max_steps"]), 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, num_classes, len(x))
    t = time.perf_counter()
    model.fit(x[:2 * bs], y[:2 * bs], batch_size=bs, epochs=1, verbose=0)
    warmup_s = time.perf_counter() - t
    probe = _fit_epoch_times(model, x[:4 * bs], y[:4 * bs], bs, 1)[0]
    rate = 4 * bs / probe
    steps = int(min(sizes["model_max_steps"], max(1, math.ceil(rate * sizes["model_target_epoch_s"] / bs))))
    n = steps * bs
    times = _fit_epoch_times(model, x[:n], y[:n], bs, 1 + sizes["model_timed_epochs"])
    timed = times[1:]
    ips = n / statistics.median(timed)
    return {"batch_size": bs, "warmup_s": warmup_s, "images_per_epoch": n, "epoch_times_s": times,
            "images_per_s": ips, "images_per_s_best": n / min(timed), "images_per_s_worst": n / max(timed),
            "achieved_gflops": ips * train_flops / 1e9,
            "mfu": ips * train_flops / (peak_gflops * 1e9) if peak_gflops else None}


def _throughput_line(r: dict) -> str:
    return (f"{r['images_per_s']:8.0f} img/s ({r['images_per_s_worst']:.0f}-{r['images_per_s_best']:.0f})  "
            f"{r['achieved_gflops']:6.1f} GFLOP/s" + (f"  MFU {r['mfu']:.1%}" if r["mfu"] is not None else ""))


# ---------------------------------------------------------------------------------------- 3. blur

def bench_blur(n_images: int, repeats: int) -> dict:
    from hwclf.blur import blur
    from hwclf.naive import naive_box_blur

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_images, 28, 28), dtype=np.uint8)
    rows = []
    for kind, level in BLUR_CASES:
        blur(x[:1000], level, kind)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            blur(x, level, kind)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        rows.append({"method": "hwclf.blur (batch as channels)", "kind": kind, "level": level, "seconds": med,
                     "images_per_s": n_images / med})
    naive_box_blur(x[:1000], 5)
    t = time.perf_counter()
    naive_box_blur(x, 5)
    sec = time.perf_counter() - t
    rows.append({"method": "naive per-image loop", "kind": "box", "level": 5, "seconds": sec,
                 "images_per_s": n_images / sec})
    return {"n_images": n_images, "repeats": repeats, "rows": rows}


# ---------------------------------------------------------------------------------------- 4. sweep

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
        _log(f"      note: {others} other Ray instance(s) run here; they share the cores, and a sweep driver "
             f"started now with the default address may attach to this bench's Ray")
    t0 = time.time()
    # A Ray of its own: "auto" (what the driver tries first) would join any Ray already running here.
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="warning", object_store_memory=300 * 1024 ** 2)
    ray_start = time.time() - t0
    try:
        slots = int(min(len(sizes["trial_blurs"]) * len(sizes["trial_seeds"]),
                        ray.cluster_resources().get("CPU", cores) // config["cpus_per_trial"]))
        with open(log_path, "w") as log, contextlib.redirect_stdout(log):
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


# ---------------------------------------------------------------------------------------- 5. naive

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
    from hwclf.naive import naive_study

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


# ------------------------------------------------------------------------------------------- output

def _fmt(v, spec: str = ",.0f", none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def _pack_markdown(pk: dict) -> list[str]:
    if not pk.get("rows"):
        return ["", "pack: skipped"] if pk.get("skipped") else (["", f"pack: ERROR: {pk['error'][:300]}"]
                                                                  if pk.get("error") else [])
    gpu = pk["device"] == "gpu"
    where = "one GPU" if gpu else f"{pk['cores']} CPU cores (threads split between the slots)"
    if pk.get("keras_backend", "tensorflow") != "tensorflow" and not gpu:
        where += "; the thread cap applies to TensorFlow only, so here every slot uses every core"
    rounds = pk.get("rounds", 1)
    lines = ["", f"Trials side by side on {where}: `{pk['arch']}` in separate processes started together, "
                 f"{pk['train_seconds']:g} s of training each, random inputs"
                 + (f"; median of {rounds} rounds, the slot counts taken in turn" if rounds > 1 else "") + ":", "",
             "| trials at once | threads each | batch | images/s, all together | vs 1 | per trial"
             + (" | GPU busy | GPU memory |" if gpu else " |"),
             "|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if gpu else "")]
    for r in pk["rows"]:
        per = r["per_slot_images_per_s"]
        each = r.get("images_per_s_rounds") or []
        total = f"{r['images_per_s']:,.0f}" + (f" ({', '.join(f'{v:,.0f}' for v in each)})" if len(each) > 1 else "")
        line = (f"| {r['slots']} | {r['threads_per_slot'] or 'default'} | {r['batch_size']} | {total} "
                f"| {r['speedup_vs_1']:.2f}x | {min(per):,.0f}-{max(per):,.0f} |")
        if gpu:
            line += (f" {_fmt(r.get('gpu_util_percent'), '.0f')}% | {_fmt(r.get('gpu_memory_used_mib'))} MiB |")
        lines.append(line)
    stops = ", ".join(f"batch {b}: {n}" for b, n in pk["throughput_stops_growing_after"].items())
    lines += ["", f"Throughput stops growing after (one more trial adds < 5%): {stops}."]
    return lines


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = []
    if result["quick"]:
        lines += [f"> **{QUICK_NOTE}**", ""]
    gpu = f", GPU {m.get('gpu_name') or ', '.join(m['gpus'])}" if m.get("gpus") else ", no GPU"
    backend = {"tensorflow": "TF", "jax": "JAX", "torch": "torch"}.get(m["keras_backend"], m["keras_backend"])
    lines += [f"`hwclf bench` on {m['cpu_model']}, {m['cores']} cores{gpu}, Keras {m['keras']} on {backend} "
              f"{m.get(m['keras_backend'])}, {m['date']}; load average at start {m['load_average_at_start']}, "
              f"total {result['total_time_s']:.0f} s.", ""]
    p = result["parts"]
    shares = {k: v["cpu"]["foreign_cpu_fraction"] for k, v in p.items() if isinstance(v.get("cpu"), dict)}
    if shares:
        busy = {k: v for k, v in shares.items() if v > FOREIGN_WARN}
        text = ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
        lines += [(f"**Not an idle machine: other processes took CPU during {', '.join(busy)}; those numbers are "
                   f"low.** " if busy else "") + f"CPU taken by other processes during each part: {text}.", ""]

    mm = p.get("matmul", {})
    lines += ["| measurement | value |", "|---|---:|"]
    if "gflops" in mm:
        lines.append(f"| matmul peak, float32 {mm['n']}x{mm['n']} (median of {mm['repeats']}; best) "
                     f"| {mm['gflops']:,.1f} GFLOP/s ({mm['gflops_best']:,.1f}) |")
        if mm.get("gflops_bf16"):
            lines.append(f"| matmul peak, bfloat16 {mm['n']}x{mm['n']} (median of {mm['repeats']}) "
                         f"| {mm['gflops_bf16']:,.1f} GFLOP/s |")
    bl = p.get("blur", {})
    for r in bl.get("rows", []):
        lines.append(f"| blur {r['kind']} {r['level']:g}, {r['method']}, {bl['n_images']:,} images "
                     f"| {r['images_per_s']:,.0f} img/s ({r['seconds']:.2f} s) |")
    sw = p.get("sweep", {})
    if "wall_s" in sw:
        lines += [
            f"| sweep: {sw['n_trials']} trials on {sw['slots']} slots, wall | {sw['wall_s']:.1f} s |",
            f"| sweep: capacity = wall x slots | {sw['capacity_slot_s']:.1f} slot-s |",
            f"| sweep: sum of train_time_s | {sw['sum_train_time_s']:.1f} s |",
            f"| sweep: overhead fraction = 1 - train / capacity | {sw['overhead_fraction']:.1%} |",
            f"| sweep: end-to-end MFU ({sw['images_trained']:,} images trained) "
            f"| {_fmt(sw['end_to_end_mfu'], '.1%')} |",
        ]
        if sw.get("end_to_end_mfu_all_passes") is not None:
            lines.append(f"| sweep: end-to-end MFU counting the validation and test forward passes too "
                         f"| {_fmt(sw['end_to_end_mfu_all_passes'], '.1%')} |")
        ev = next((b for b in sw.get("breakdown", []) if b["part"].startswith("test evaluation")), None)
        if ev:
            lines.append(f"| sweep: overhead fraction without the test evaluation (the trial's output) "
                         f"| {(1 - (sw['sum_train_time_s'] + ev['slot_s']) / sw['capacity_slot_s']):.1%} |")
    for name in ("matmul", "blur", "sweep"):
        part = p.get(name, {})
        if part.get("skipped") or part.get("error"):
            lines.append(f"| {name} | {'skipped' if part.get('skipped') else 'ERROR: ' + part['error'][:80]} |")

    md = p.get("models", {})
    if md.get("rows"):
        timed = len(md["rows"][0]["epoch_times_s"]) - 1
        lines += ["", f"Training throughput at batch {md['batch_size']} (random 28x28x1 inputs, all threads; median "
                      f"of {timed} timed epochs after a warm-up fit and one excluded epoch):", "",
                  "| arch | params | training MFLOP / image | images/s (median) | slowest-fastest epoch | GFLOP/s "
                  "| MFU |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in md["rows"]:
            lines.append(f"| `{r['arch']}` | {r['params']:,} | {r['train_flops_per_image'] / 1e6:,.1f} "
                         f"| {r['images_per_s']:,.0f} | {r['images_per_s_worst']:,.0f}-{r['images_per_s_best']:,.0f} "
                         f"| {r['achieved_gflops']:,.1f} | {_fmt(r['mfu'], '.1%')} |")
        for r in md.get("precision_rows") or ():
            lines += ["", f"`basic` with precision {r['precision']} (bf16 compute, float32 weights and output layer), "
                          f"batch {r['batch_size']}: {r['images_per_s']:,.0f} images/s "
                          f"({r['images_per_s_worst']:,.0f}-{r['images_per_s_best']:,.0f}), "
                          f"{_fmt(r['speedup_vs_float32'], '.2f')}x float32, MFU {_fmt(r['mfu'], '.1%')} of the "
                          f"bfloat16 matmul peak."]
        if md.get("batch_rows"):
            base = next((r for r in md["rows"] if r["arch"] == "basic"), None)
            rows = sorted(md["batch_rows"] + ([base] if base else []), key=lambda r: r["batch_size"])
            lines += ["", "`basic` at other batch sizes (the batch-size default):", "",
                      "| batch | images/s (median) | slowest-fastest epoch | MFU |", "|---:|---:|---:|---:|"]
            for r in rows:
                lines.append(f"| {r['batch_size']} | {r['images_per_s']:,.0f} | {r['images_per_s_worst']:,.0f}-"
                             f"{r['images_per_s_best']:,.0f} | {_fmt(r['mfu'], '.1%')} |")
        fc = md.get("flops_check") or {}
        if fc:
            reg = fc.get("tf_registry_training")
            lines += ["", f"FLOP cross-check, `basic`, training per image: hwclf {fc['hwclf_training'] / 1e6:,.2f} M; "
                          f"analytic (conv + dense multiply-adds x 3) {fc['analytic_training'] / 1e6:,.2f} M; "
                          + (f"TensorFlow op registry on the traced train step {reg / 1e6:,.2f} M "
                             f"(backward = {fc['tf_registry_backward_over_forward']:.2f} x forward)."
                             if reg else f"TensorFlow registry unavailable ({fc.get('tf_registry_error')}).")]
    elif md.get("skipped") or md.get("error"):
        lines += ["", f"models: {'skipped' if md.get('skipped') else 'ERROR: ' + md['error'][:200]}"]

    if sw.get("breakdown"):
        lines += ["", f"Where the sweep's capacity goes ({sw['capacity_slot_s']:.1f} slot-seconds):", "",
                  "| part | slot-s | share | how |", "|---|---:|---:|---|"]
        for b in sw["breakdown"]:
            lines.append(f"| {b['part']} | {_fmt(b['slot_s'], '.1f')} | {_fmt(b['fraction_of_capacity'], '.1%')} "
                         f"| {b['how']} |")

    nv = p.get("naive", {})
    if nv.get("methods"):
        cells = nv["cells"]
        images = f"{nv['per_class']} images per class" if nv["per_class"] else "every training image"
        lines += ["", f"Naive baseline vs hwclf: {len(cells)} trials ({cells[0]['arch']}, blur "
                      f"{sorted({c['blur'] for c in cells})}, seeds {sorted({c['seed'] for c in cells})}), "
                      f"{nv['epochs']} epochs, {images}, {nv['dataset']} "
                      f"({nv['n_test']:,} test images); accuracy is the mean over the trials:", "",
                  "| method | wall s | naive / this | clean test acc | matched-blur test acc |",
                  "|---|---:|---:|---:|---:|"]
        for mt in nv["methods"]:
            lines.append(f"| {mt['method']} | {mt['wall_s']:.1f} | {mt['naive_over_this']:.2f}x "
                         f"| {_fmt(mt['clean_accuracy'], '.1%')} | {_fmt(mt['matched_accuracy'], '.1%')} |")
        lines += ["", "Rows at the same batch size and precision train the same model (same images, initial "
                      "weights and number of steps), so their accuracies must agree; batch 128 takes 4x fewer "
                      "optimizer steps per epoch, so after a few epochs its accuracy differs for that reason "
                      "alone, and mixed_bfloat16 rounds differently, so its models differ a little from float32's. "
                      f"Chance is {1 / len(nv.get('classes') or [0] * 26):.1%}."]
    elif nv.get("skipped") or nv.get("error"):
        lines += ["", f"naive: {'skipped' if nv.get('skipped') else 'ERROR: ' + nv['error'][:200]}"]
    lines += _pack_markdown(p.get("pack", {}))
    return "\n".join(lines) + "\n"


def main(args) -> int:
    from hwclf.cli import _writable_file

    skip = parse_skip(getattr(args, "skip", ""))
    quick = bool(getattr(args, "quick", False))
    out = _writable_file(getattr(args, "out", None) or "bench.json")
    sizes = dict(SIZES["quick" if quick else "full"])
    dataset, data_dir = ("digits", None) if quick else default_data()
    started = time.perf_counter()

    from hwclf.trial import configure_backend

    configure_backend(0)  # TF's default threads (all cores); GPU memory growth where there is a GPU
    machine = machine_info()
    gpus = len(machine["gpus"])
    if gpus and not quick:
        sizes["matmul_n"] = 8192  # a 4096^2 product takes well under a millisecond on a GPU
    if sizes["pack_slots"] is None:
        sizes["pack_slots"] = pack_slots(os.cpu_count() or 1, gpus)
    result = {"schema": SCHEMA, "quick": quick, "note": QUICK_NOTE if quick else None, "machine": machine,
              "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}, "parts": {}}
    watch = CpuWatch()
    time.sleep(1.0)
    idle_check = watch.stop()
    result["machine"]["foreign_cpu_fraction_before_start"] = idle_check["foreign_cpu_fraction"]
    if idle_check["foreign_cpu_fraction"] > FOREIGN_WARN:
        _log(f"warning: other processes use {idle_check['foreign_cpu_fraction']:.0%} of the CPU "
             f"({', '.join(n for n, _ in idle_check['foreign_top'])}): the numbers will be low")
    parts = result["parts"]
    workdir = Path(tempfile.mkdtemp(prefix="hwclf-bench-"))
    failed = False

    from hwclf.io import atomic_write_text

    def save() -> None:  # after every part: a crash or a kill late in the run keeps what was measured
        atomic_write_text(out, json.dumps(result, indent=2, default=float) + "\n")

    def run(i: int, name: str, what: str, fn):
        nonlocal failed
        if name in skip:
            parts[name] = {"skipped": True}
            _log(f"[{i}/{len(PARTS)}] {name}: skipped")
            save()
            return
        _log(f"[{i}/{len(PARTS)}] {name}: {what} ...")
        t = time.perf_counter()
        watch = CpuWatch()
        try:
            parts[name] = fn()
        except Exception as e:  # one broken part must not lose the others
            failed = True
            parts[name] = {"error": f"{type(e).__name__}: {e}"}
            _log(f"[{i}/{len(PARTS)}] {name}: FAILED: {type(e).__name__}: {str(e)[:500]}")
            save()
            return
        parts[name]["seconds"] = time.perf_counter() - t
        parts[name]["load_average_after"] = _load()
        cpu = parts[name]["cpu"] = watch.stop()
        save()
        if cpu["foreign_cpu_fraction"] > FOREIGN_WARN:
            _log(f"      warning: other processes took {cpu['foreign_cpu_fraction']:.0%} of the CPU during this "
                 f"part ({', '.join(f'{n} {c:.0f} s' for n, c in cpu['foreign_top'])}): its numbers are low")

    try:
        run(1, "matmul", f"float32 {sizes['matmul_n']}^2 keras.ops.matmul x {sizes['matmul_repeats']}",
            lambda: bench_matmul(sizes["matmul_n"], sizes["matmul_warmup"], sizes["matmul_repeats"]))
        peak = parts["matmul"].get("gflops")
        if peak:
            _log(f"      peak {peak:,.1f} GFLOP/s")
        archs = "every architecture" if not sizes["model_archs"] else ", ".join(sizes["model_archs"])
        run(2, "models", f"training images/s of {archs} at batch {sizes['model_batch']}",
            lambda: bench_models(sizes, peak, bf16_peak_gflops=parts["matmul"].get("gflops_bf16")))
        run(3, "blur", f"box 5, box 20, gaussian 2 on {sizes['blur_images']:,} images",
            lambda: bench_blur(sizes["blur_images"], sizes["blur_repeats"]))
        box5 = next((r["images_per_s"] for r in parts["blur"].get("rows", []) if r["kind"] == "box"
                     and r["level"] == 5 and r["method"].startswith("hwclf")), None)
        n_cells = len(sizes["trial_blurs"]) * len(sizes["trial_seeds"])
        run(4, "sweep", f"Ray Tune sweep of {n_cells} trials on {dataset}, {sizes['trial_epochs']} epochs",
            lambda: bench_sweep(sizes, dataset, data_dir, workdir, peak, box5))
        sw = parts["sweep"]
        if "wall_s" in sw:
            _log(f"      wall {sw['wall_s']:.1f} s, overhead {sw['overhead_fraction']:.1%}")
        run(5, "naive", f"original way vs hwclf on the same {n_cells} trials",
            lambda: bench_naive(sizes, dataset, data_dir, sw if "wall_s" in sw else None))
        from hwclf.packing import bench_pack

        run(6, "pack", f"{sizes['pack_arch']} trials side by side: {', '.join(map(str, sizes['pack_slots']))} "
                       f"at once, {sizes['pack_seconds']:g} s each",
            lambda: bench_pack(sizes["pack_arch"], sizes["pack_batches"], sizes["pack_slots"], os.cpu_count() or 1,
                               sizes["pack_seconds"], sizes["pack_steps"], gpus, rounds=sizes["pack_rounds"],
                               log=_log))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    result["total_time_s"] = time.perf_counter() - started
    result["finished_at"] = _now()
    result["machine"]["load_average_at_end"] = _load()
    save()
    table = markdown(result)
    md_path = out.with_suffix(".md")
    atomic_write_text(md_path, table)
    print(table)
    _log(f"wrote {out} and {md_path}")
    return 1 if failed else 0
