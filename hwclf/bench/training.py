"""Part ``models``: per architecture, training FLOPs per image, training images/s at batch 128 on random
28x28x1 inputs (`model.fit` on an in-memory array, warm-up excluded) and MFU = images/s x training FLOPs
per image / matmul peak. `basic`'s FLOP count is cross-checked against an analytic count and against
TensorFlow's own per-op FLOP registry on the traced train step; `basic` also at other batch sizes and at
precision mixed_bfloat16."""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from hwclf.bench.machine import log, threads_note


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
        log(f"  {name:<13} {_throughput_line(row)}")
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
        log(f"  basic, {policy:<14} {_throughput_line(r)} (MFU vs the bf16 matmul peak)")
    # The batch-size default: float32 at other batch sizes
    batch_rows = []
    for other in sizes.get("model_batch_variants") or ():
        batch_rows.append(basic_at(other, "float32", peak_gflops))
        log(f"  basic, batch {other:<4} {_throughput_line(batch_rows[-1])}")
    keras.backend.clear_session()
    return {"batch_size": bs, "input": "random float32 28x28x1, labels random 0..25, in-memory numpy array",
            "threads": threads_note(), "peak_gflops": peak_gflops, "rows": rows,
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
