"""The machine a bench runs on, and whether it was left alone: CPU, cores, GPUs, library versions, and
the CPU time other processes took while a part was measured (`CpuWatch`)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

FOREIGN_WARN = 0.05  # warn when other processes take more than this share of the CPU during a part


def threads_note() -> str:
    import keras

    return f"{keras.backend.backend()} default (all cores)"


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def load_average() -> list[float] | None:
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
    from hwclf.bench.pack import nvidia_smi

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
        "date": now(), "load_average_at_start": load_average(), "other_ray_instances_at_start": ray_instances_running(),
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
    repo = Path(__file__).resolve().parents[2]
    for base in (repo.parent / "shared" / "data" / "femnist-letters", Path("../shared/data/femnist-letters")):
        if (base / "femnist-letters-train-images-idx3-ubyte.gz").is_file() or \
                (base / "femnist-letters-train-images-idx3-ubyte").is_file():
            return "femnist-letters", str(base.resolve())
    return "digits", None
