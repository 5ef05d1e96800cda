"""Part ``blur``: images/s of the vectorised blur (box k=5, k=20, Gaussian sigma=2) on an EMNIST-sized
array, and of the original per-image loop for comparison."""

from __future__ import annotations

import statistics
import time

import numpy as np

BLUR_CASES = (("box", 5), ("box", 20), ("gaussian", 2.0))


def bench_blur(n_images: int, repeats: int) -> dict:
    from hwclf.blur import blur
    from hwclf.bench.naive import naive_box_blur

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
