"""`hwclf bench`'s entry point: which parts run at which sizes, one after another, each saved as it ends."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from hwclf.bench.machine import FOREIGN_WARN, CpuWatch, default_data, load_average, log, machine_info, now
from hwclf.errors import UserError

SCHEMA = "hwclf.bench/1"
PARTS = ("matmul", "models", "blur", "sweep", "naive", "pack", "tta", "mixture")
# tta trains the original and 2 fast budgets x 3 architectures x 2 seeds (~2 h on 2 cores), mixture 4 study-sized trials
# (~15 min): on request
DEFAULT_PARTS = PARTS[:-2]
DATA_PARTS = ("sweep", "naive", "tta", "mixture")  # the parts that train on a real dataset

# Full run: about 25 minutes on 2 idle cores (the trials of parts 4-5 train on all of femnist-letters'
# training images, as a study's trials do, so that fixed per-trial costs weigh what they weigh there).
# Quick run: seconds per part.
SIZES = {
    "full": {
        "matmul_n": 4096, "matmul_warmup": 2, "matmul_repeats": 11,
        "model_archs": None, "model_batch": 128, "model_target_epoch_s": 4.0, "model_timed_epochs": 4,
        "model_max_steps": 400, "model_batch_variants": (32, 64, 256),
        "model_precision_variants": ("mixed_bfloat16",),
        "blur_images": 124_800, "blur_repeats": 3,  # an EMNIST-letters training split
        "trial_arch": "basic", "trial_blurs": (0, 5), "trial_seeds": (0, 1), "trial_epochs": 2,
        "trial_per_class": None, "naive_batch": 32,
        "pack_arch": "basic", "pack_batches": (128,), "pack_slots": None, "pack_seconds": 10.0, "pack_steps": 64,
        "pack_rounds": 3,
        "tta_archs": ("basic", "resnet", "mobilenet"), "tta_seeds": (0, 1), "tta_epochs": (3, 6),
        "tta_original_epochs": 10, "tta_per_class": None,
        "mix_arch": "basic", "mix_single": 5, "mix_blur": "mix:0/5/10", "mix_epochs": 2, "mix_per_class": None,
        "mix_rounds": 2,
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
        "tta_archs": ("basic",), "tta_seeds": (0,), "tta_epochs": (2,), "tta_original_epochs": 2, "tta_per_class": 10,
        "mix_arch": "basic", "mix_single": 5, "mix_blur": "mix:0/5/10", "mix_epochs": 2, "mix_per_class": 10,
        "mix_rounds": 1,
    },
}


def parse_parts(text: str | None, flag: str) -> set[str]:
    """A comma-separated list of part names; an unknown name is a UserError naming the flag."""
    names = {s.strip() for s in (text or "").split(",") if s.strip()}
    unknown = sorted(names - set(PARTS))
    if unknown:
        raise UserError(f"{flag}: unknown part(s) {', '.join(unknown)}; allowed: {', '.join(PARTS)}")
    return names


def parse_skip(text: str | None) -> set[str]:
    return parse_parts(text, "--skip")


def tta_sizes(args, sizes: dict) -> dict:
    """--tta-archs/--tta-seeds/--tta-epochs/--tta-per-class over the sizes, checked before anything runs."""
    from hwclf.config import parse_number_list

    out = {}
    if getattr(args, "tta_archs", None):
        from hwclf.models import MODELS

        archs = tuple(a.strip() for a in args.tta_archs.split(",") if a.strip())
        bad = [a for a in archs if a not in MODELS]
        if bad or not archs:
            raise UserError(f"--tta-archs: unknown architecture(s) {', '.join(bad) or '(none given)'}; "
                            f"allowed: {', '.join(MODELS)}")
        out["tta_archs"] = archs
    if getattr(args, "tta_seeds", None):
        out["tta_seeds"] = tuple(dict.fromkeys(parse_number_list(args.tta_seeds, "--tta-seeds", integer=True)))
    if getattr(args, "tta_epochs", None):
        try:
            budgets = sorted({int(t) for t in args.tta_epochs.split(",") if t.strip()})
        except ValueError:
            budgets = []
        if not budgets or budgets[0] < 1:
            raise UserError(f"--tta-epochs: give whole numbers >= 1 such as 3,6; got {args.tta_epochs!r}")
        out["tta_epochs"] = tuple(budgets)
    value = getattr(args, "tta_per_class", None)
    if value is not None:
        if value < 1:
            raise UserError(f"--tta-per-class: must be >= 1, got {value}")
        out["tta_per_class"] = value
    return {**sizes, **out}


def data_choice(args, quick: bool) -> tuple[str, str | None]:
    """--dataset (with --data-dir); --data-dir alone means femnist-letters there; neither: digits for a quick
    run, else femnist-letters from the workplace's shared data where present (else digits)."""
    dataset, data_dir = getattr(args, "dataset", None), getattr(args, "data_dir", None)
    if dataset is None and data_dir is not None:
        dataset = "femnist-letters"
    if dataset is None:
        return ("digits", None) if quick else default_data()
    from hwclf.data import DATASETS

    if dataset not in DATASETS:
        raise UserError(f"--dataset: unknown value {dataset!r}; allowed: {', '.join(DATASETS)}")
    return dataset, data_dir


def main(args) -> int:
    from hwclf.bench.markdown import QUICK_NOTE, markdown
    from hwclf.io import atomic_write_text, writable_file

    quick = bool(getattr(args, "quick", False))
    chosen = parse_parts(args.parts, "--parts") if getattr(args, "parts", None) else set(DEFAULT_PARTS)
    skip = parse_skip(getattr(args, "skip", ""))
    order = [name for name in PARTS if name in chosen]
    out = writable_file(getattr(args, "out", None) or "bench.json")
    sizes = tta_sizes(args, dict(SIZES["quick" if quick else "full"]))
    dataset, data_dir = data_choice(args, quick)
    data = None
    if set(DATA_PARTS) & (chosen - skip):  # a wrong --data-dir is one line now, not a failed part later
        from hwclf.data import load_dataset

        data = load_dataset(dataset, data_dir)
    started = time.perf_counter()

    from hwclf.trial import configure_backend

    configure_backend(0)  # TF's default threads (all cores); GPU memory growth where there is a GPU
    machine = machine_info()
    gpus = len(machine["gpus"])
    if gpus and not quick:
        sizes["matmul_n"] = 8192  # a 4096^2 product takes well under a millisecond on a GPU
    if sizes["pack_slots"] is None:
        from hwclf.bench.pack import pack_slots

        sizes["pack_slots"] = pack_slots(os.cpu_count() or 1, gpus)
    result = {"schema": SCHEMA, "quick": quick, "note": QUICK_NOTE if quick else None, "machine": machine,
              "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}, "parts": {}}
    watch = CpuWatch()
    time.sleep(1.0)
    idle_check = watch.stop()
    result["machine"]["foreign_cpu_fraction_before_start"] = idle_check["foreign_cpu_fraction"]
    if idle_check["foreign_cpu_fraction"] > FOREIGN_WARN:
        log(f"warning: other processes use {idle_check['foreign_cpu_fraction']:.0%} of the CPU "
            f"({', '.join(n for n, _ in idle_check['foreign_top'])}): the numbers will be low")
    parts = result["parts"]
    workdir = Path(tempfile.mkdtemp(prefix="hwclf-bench-"))
    failed = False

    def save() -> None:  # after every part: a crash or a kill late in the run keeps what was measured
        atomic_write_text(out, json.dumps(result, indent=2, default=float) + "\n")

    def run(name: str, what: str, fn):
        nonlocal failed
        if name not in chosen:
            return
        step = f"[{order.index(name) + 1}/{len(order)}] {name}"
        if name in skip:
            parts[name] = {"skipped": True}
            log(f"{step}: skipped")
            save()
            return
        log(f"{step}: {what} ...")
        t = time.perf_counter()
        watch = CpuWatch()
        try:
            parts[name] = fn()
        except Exception as e:  # one broken part must not lose the others
            failed = True
            parts[name] = {"error": f"{type(e).__name__}: {e}"}
            log(f"{step}: FAILED: {type(e).__name__}: {str(e)[:500]}")
            save()
            return
        parts[name]["seconds"] = time.perf_counter() - t
        parts[name]["load_average_after"] = load_average()
        cpu = parts[name]["cpu"] = watch.stop()
        save()
        if cpu["foreign_cpu_fraction"] > FOREIGN_WARN:
            log(f"      warning: other processes took {cpu['foreign_cpu_fraction']:.0%} of the CPU during this "
                f"part ({', '.join(f'{n} {c:.0f} s' for n, c in cpu['foreign_top'])}): its numbers are low")

    try:
        _run_parts(run, parts, sizes, dataset, data_dir, data, workdir, gpus)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    result["total_time_s"] = time.perf_counter() - started
    result["finished_at"] = now()
    result["machine"]["load_average_at_end"] = load_average()
    save()
    table = markdown(result)
    md_path = out.with_suffix(".md")
    atomic_write_text(md_path, table)
    print(table)
    log(f"wrote {out} and {md_path}")
    return 1 if failed else 0


def _run_parts(run, parts: dict, sizes: dict, dataset: str, data_dir: str | None, data, workdir: Path,
               gpus: int) -> None:
    """Every part in order; later parts use what earlier ones measured (the peak, the blur rate, the sweep)."""
    from hwclf.bench.blur import bench_blur
    from hwclf.bench.mixture import bench_mixture
    from hwclf.bench.naive import bench_naive
    from hwclf.bench.overhead import bench_sweep
    from hwclf.bench.pack import bench_pack
    from hwclf.bench.peaks import bench_matmul
    from hwclf.bench.training import bench_models
    from hwclf.bench.tta import bench_tta

    run("matmul", f"float32 {sizes['matmul_n']}^2 keras.ops.matmul x {sizes['matmul_repeats']}",
        lambda: bench_matmul(sizes["matmul_n"], sizes["matmul_warmup"], sizes["matmul_repeats"]))
    peak = parts.get("matmul", {}).get("gflops")
    if peak:
        log(f"      peak {peak:,.1f} GFLOP/s")
    archs = "every architecture" if not sizes["model_archs"] else ", ".join(sizes["model_archs"])
    run("models", f"training images/s of {archs} at batch {sizes['model_batch']}",
        lambda: bench_models(sizes, peak, bf16_peak_gflops=parts.get("matmul", {}).get("gflops_bf16")))
    run("blur", f"box 5, box 20, gaussian 2 on {sizes['blur_images']:,} images",
        lambda: bench_blur(sizes["blur_images"], sizes["blur_repeats"]))
    box5 = next((r["images_per_s"] for r in parts.get("blur", {}).get("rows", []) if r["kind"] == "box"
                 and r["level"] == 5 and r["method"].startswith("hwclf")), None)
    n_cells = len(sizes["trial_blurs"]) * len(sizes["trial_seeds"])
    run("sweep", f"Ray Tune sweep of {n_cells} trials on {dataset}, {sizes['trial_epochs']} epochs",
        lambda: bench_sweep(sizes, dataset, data_dir, workdir, peak, box5))
    sw = parts.get("sweep", {})
    if "wall_s" in sw:
        log(f"      wall {sw['wall_s']:.1f} s, overhead {sw['overhead_fraction']:.1%}")
    run("naive", f"original way vs hwclf on the same {n_cells} trials",
        lambda: bench_naive(sizes, dataset, data_dir, sw if "wall_s" in sw else None))
    run("pack", f"{sizes['pack_arch']} trials side by side: {', '.join(map(str, sizes['pack_slots']))} "
                f"at once, {sizes['pack_seconds']:g} s each",
        lambda: bench_pack(sizes["pack_arch"], sizes["pack_batches"], sizes["pack_slots"], os.cpu_count() or 1,
                           sizes["pack_seconds"], sizes["pack_steps"], gpus, rounds=sizes["pack_rounds"], log=log))
    n_tta = len(sizes["tta_archs"]) * len(sizes["tta_seeds"])
    run("tta", f"time to accuracy on {dataset}: original protocol vs fast recipe, {n_tta} pairs of trials",
        lambda: bench_tta(sizes, dataset, data_dir, data))
    run("mixture", f"blur mixture {sizes['mix_blur']} against blur {sizes['mix_single']}, {sizes['mix_arch']}, "
                   f"{sizes['mix_rounds']} interleaved rounds",
        lambda: bench_mixture(sizes, dataset, data_dir, data))
