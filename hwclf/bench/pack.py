"""Part ``pack``: how many trials one machine (or one GPU) should run side by side: aggregate training
throughput of N worker processes started together, for N = 1, 2, 4, ...

Each worker is a separate process, as each trial of a sweep is: it builds the model, compiles it,
warms up, signals that it is ready, waits for the common start, then trains on random 28x28 inputs
until a common deadline and reports the images it trained. Throughput stops growing when the shared
device (cores, or the GPU) is saturated; that point is the "trials in parallel" default to choose.

The measurement runs under whatever Keras backend the environment selects (TensorFlow here, JAX or
torch on a GPU machine without TensorFlow). The worker is ``python -m hwclf.bench.pack ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY_TIMEOUT_S = 600  # building and compiling N models at once on a busy host can take minutes


def pack_slots(cores: int, gpus: int) -> tuple[int, ...]:
    """Slot counts to try: on CPU the ways to split the cores in powers of two (1, 2, 4, ... <= cores);
    on one GPU 1, 2, 4, ... 16 trials sharing it, each keeping at least one host core."""
    limit = min(16, cores) if gpus else cores
    out, n = [], 1
    while n <= limit:
        out.append(n)
        n *= 2
    return tuple(out)


def worker(arch: str, batch_size: int, threads: int, seconds: float, steps: int, go: Path, ready: Path,
           out: Path, num_classes: int = 26) -> None:
    from hwclf.trial import configure_backend

    configure_backend(threads)  # before the first op: thread cap (TF), memory growth (TF, JAX)
    import keras
    import numpy as np

    from hwclf.models import build_model, compile_model

    keras.utils.set_random_seed(0)
    model = compile_model(build_model(arch, num_classes))
    rng = np.random.default_rng(0)
    x = rng.random((batch_size * steps, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, num_classes, len(x))
    t = time.perf_counter()
    model.fit(x[:2 * batch_size], y[:2 * batch_size], batch_size=batch_size, epochs=2, verbose=0)
    warmup_s = time.perf_counter() - t

    class UntilDeadline(keras.callbacks.Callback):
        """Counts finished epochs of `steps` batches and stops at the first epoch end past the deadline.

        Epoch-level on purpose: a per-batch hook makes Keras fetch the logs, a device sync, after every
        step, which a trial does not do (measured on the H200: 47k instead of 71k images/s for `basic`).
        """

        def __init__(self, deadline: float):
            super().__init__()
            self.deadline, self.batches = deadline, 0

        def on_epoch_end(self, epoch, logs=None):
            self.batches += steps
            if time.time() >= self.deadline:
                self.model.stop_training = True

    ready.write_text(json.dumps({"pid": os.getpid(), "warmup_s": warmup_s}))
    t_wait = time.time()
    while not go.exists():
        if time.time() - t_wait > READY_TIMEOUT_S:
            raise TimeoutError("no start signal")
        time.sleep(0.01)
    start = float(go.read_text())
    while time.time() < start:
        time.sleep(0.001)
    cb = UntilDeadline(start + seconds)
    t0 = time.time()
    model.fit(x, y, batch_size=batch_size, epochs=10 ** 6, verbose=0, shuffle=False, callbacks=[cb])
    t1 = time.time()
    out.write_text(json.dumps({"images": cb.batches * batch_size, "batches": cb.batches, "start": t0, "end": t1,
                               "seconds": t1 - t0, "images_per_s": cb.batches * batch_size / (t1 - t0),
                               "warmup_s": warmup_s}))


def nvidia_smi(fields: str) -> list[str] | None:
    """The first GPU's values of nvidia-smi's `--query-gpu` fields; None where there is no such GPU."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
        return [v.strip() for v in out.stdout.strip().splitlines()[0].split(",")]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _gpu_sample() -> dict | None:
    """GPU utilisation and memory in use right now."""
    values = nvidia_smi("utilization.gpu,memory.used,memory.total")
    try:
        util, used, total = (float(v) for v in values)
    except (TypeError, ValueError):
        return None
    return {"gpu_util_percent": util, "memory_used_mib": used, "memory_total_mib": total}


def run_side_by_side(n: int, arch: str, batch_size: int, threads: int, seconds: float, steps: int,
                     env: dict | None = None, log=print) -> dict:
    """Start `n` workers, release them together once all are compiled, and sum what they trained."""
    work = Path(tempfile.mkdtemp(prefix="hwclf-pack-"))
    go = work / "go"
    procs = []
    try:
        for i in range(n):
            cmd = [sys.executable, "-m", "hwclf.bench.pack", "--arch", arch, "--batch", str(batch_size),
                   "--threads", str(threads), "--seconds", str(seconds), "--steps", str(steps),
                   "--go", str(go), "--ready", str(work / f"ready-{i}"), "--out", str(work / f"result-{i}.json")]
            err = open(work / f"stderr-{i}", "w")
            procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}), err))
        t = time.time()
        while not all((work / f"ready-{i}").exists() for i in range(n)):
            dead = [i for i, (p, _) in enumerate(procs) if p.poll() is not None]
            if dead:
                tail = (work / f"stderr-{dead[0]}").read_text()[-1500:]
                raise RuntimeError(f"worker {dead[0]} of {n} exited with {procs[dead[0]][0].returncode}:\n{tail}")
            if time.time() - t > READY_TIMEOUT_S:
                raise RuntimeError(f"{n} workers not ready after {READY_TIMEOUT_S} s")
            time.sleep(0.05)
        ready_s = time.time() - t
        start = time.time() + 0.5
        go.write_text(repr(start))
        gpu = []
        while any(p.poll() is None for p, _ in procs):
            if start + 0.25 * seconds < time.time() < start + 0.75 * seconds and len(gpu) < 20:
                sample = _gpu_sample()
                if sample:
                    gpu.append(sample)
            time.sleep(0.2)
        for i, (p, _) in enumerate(procs):
            if p.returncode != 0:
                tail = (work / f"stderr-{i}").read_text()[-1500:]
                raise RuntimeError(f"worker {i} of {n} exited with {p.returncode}:\n{tail}")
        results = [json.loads((work / f"result-{i}.json").read_text()) for i in range(n)]
    finally:
        for p, err in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            err.close()
        shutil.rmtree(work, ignore_errors=True)
    overlap = min(r["end"] for r in results) - max(r["start"] for r in results)
    row = {"slots": n, "threads_per_slot": threads, "batch_size": batch_size, "arch": arch,
           "images_per_s": sum(r["images_per_s"] for r in results),
           "per_slot_images_per_s": [r["images_per_s"] for r in results],
           "overlap_fraction": overlap / max(r["seconds"] for r in results), "ready_s": ready_s,
           "warmup_s": [r["warmup_s"] for r in results]}
    if gpu:
        row["gpu_util_percent"] = max(s["gpu_util_percent"] for s in gpu)
        row["gpu_memory_used_mib"] = max(s["memory_used_mib"] for s in gpu)
        row["gpu_memory_total_mib"] = gpu[0]["memory_total_mib"]
    log(f"  {n:>3} side by side x {threads or 'default'} thread(s), batch {batch_size}: {row['images_per_s']:,.0f} img/s"
        + (f", GPU busy {row['gpu_util_percent']:.0f}%, {row['gpu_memory_used_mib']:,.0f} MiB" if gpu else ""))
    return row


def knee(rows: list[dict], gain: float = 0.05) -> int:
    """The slot count past which adding trials raises aggregate throughput by less than `gain` (5%)."""
    rows = sorted(rows, key=lambda r: r["slots"])
    best = rows[0]
    for r in rows[1:]:
        if r["images_per_s"] < best["images_per_s"] * (1 + gain):
            break
        best = r
    return best["slots"]


def bench_pack(arch: str, batch_sizes, slots, cores: int, seconds: float, steps: int, gpus: int,
               rounds: int = 1, log=print) -> dict:
    """Every (batch size, slot count): on CPU the cores are split between the slots (threads =
    cores // slots), on a GPU every slot shares the one GPU (the backend's default threads).

    With `rounds` > 1 the slot counts are measured in turn, forwards then backwards, and each row is
    the median over the rounds: a machine whose speed drifts (a VM losing a core for a while) then
    biases no slot count more than another.
    """
    import statistics

    rows, stops = [], {}
    for bs in batch_sizes:
        runs: dict[int, list[dict]] = {n: [] for n in slots}
        for r in range(rounds):
            for n in (slots if r % 2 == 0 else tuple(reversed(slots))):
                threads = 0 if gpus else max(1, cores // n)  # 0: the backend's default
                runs[n].append(run_side_by_side(n, arch, bs, threads, seconds, steps, log=log))
        these = []
        for n in slots:
            rates = [x["images_per_s"] for x in runs[n]]
            row = dict(min(runs[n], key=lambda x: abs(x["images_per_s"] - statistics.median(rates))))
            row.update({"images_per_s": statistics.median(rates), "images_per_s_rounds": rates})
            these.append(row)
        base = these[0]["images_per_s"]
        for r in these:
            r["speedup_vs_1"] = r["images_per_s"] / base if base else None
        stops[str(bs)] = knee(these)
        rows += these
    import keras

    return {"arch": arch, "device": "gpu" if gpus else "cpu", "cores": cores, "train_seconds": seconds,
            "rounds": rounds, "keras_backend": keras.backend.backend(),
            "rows": rows, "throughput_stops_growing_after": stops,
            "rule": "the slot count past which one more trial adds less than 5% aggregate throughput"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="basic")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--go", type=Path, required=True)
    p.add_argument("--ready", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    worker(a.arch, a.batch, a.threads, a.seconds, a.steps, a.go, a.ready, a.out)


if __name__ == "__main__":
    main()
