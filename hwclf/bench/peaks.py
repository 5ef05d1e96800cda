"""Part ``matmul``: the machine's limit, GFLOP/s of a large square `keras.ops.matmul` through the models'
backend, all cores, median of several repeats after warm-up; the same in bfloat16 (the limit for
mixed_bfloat16 trials). Every MFU in the bench divides by these."""

from __future__ import annotations

import statistics
import time

import numpy as np

from hwclf.bench.machine import threads_note


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
           "threads": threads_note()}
    # The limit for mixed_bfloat16 trials (bf16 inputs, float32 accumulation where the hardware has it)
    try:
        bf = product_times("bfloat16")
        out.update({"times_s_bf16": bf, "gflops_bf16": flops / statistics.median(bf) / 1e9})
    except Exception as e:  # a backend without bf16 matmul: say so rather than fail the part
        out["bf16_error"] = f"{type(e).__name__}: {e}"[:300]
    return out
