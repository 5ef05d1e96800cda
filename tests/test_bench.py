"""`hwclf bench`: the quick run writes every part with sane numbers, the naive baseline does the same
blur work as hwclf (so the speed-up it reports is about how, not what), the committed bench JSONs still
render, and the time-to-accuracy part computes its target and ratio from what it measured."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hwclf.blur import box_blur
from hwclf.cli import main as cli_main
from hwclf.bench.machine import FOREIGN_WARN
from hwclf.bench.naive import naive_box_blur

from conftest import official_letters


def _positive_numbers(obj, path="") -> list[str]:
    """Every number in `obj` (recursively) that is not > 0, by path; skips fields that may be 0 or None."""
    zero_ok = ("load_average", "start_offset", "data_blur", "first_epoch_extra", "blur", "seed", "setup_s",
               "slot_s", "fraction_of_capacity", "tf_registry_backward", "idle", "quick", "test", "accuracy", "cpu")
    bad = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not any(z in k for z in zero_ok):
                bad += _positive_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad += _positive_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        if not obj > 0:
            bad.append(f"{path}={obj}")
    return bad


def _check_common(result: dict, tmp_path) -> None:
    assert result["schema"] == "hwclf.bench/1" and result["quick"] is True and "mean nothing" in result["note"]
    m = result["machine"]
    assert m["cpu_model"] and m["cores"] >= 1 and m["tensorflow"] and m["keras"] and m["date"]
    mm = result["parts"]["matmul"]
    assert mm["gflops"] > 0 and mm["gflops_best"] >= mm["gflops"] and len(mm["times_s"]) == mm["repeats"]
    md = (tmp_path / "bench.md").read_text()
    assert md.startswith("> **QUICK RUN") and "| measurement | value |" in md and "GFLOP/s" in md


def test_quick_bench_writes_every_part_with_sane_numbers(tmp_path, capsys):
    """The Ray sweep part is skipped here (Ray start + trial processes: see the slow test below)."""
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "--quick", "--out", str(out), "--skip", "sweep"]) == 0
    result = json.loads(out.read_text())
    _check_common(result, tmp_path)
    parts = result["parts"]
    assert parts["sweep"] == {"skipped": True}

    models = parts["models"]
    assert [r["arch"] for r in models["rows"]] == ["basic"]
    # MFU divides the training rate by the matmul peak, two parts measured minutes apart: another process
    # in one and not the other moves it anywhere (4.7 seen beside a study run), so the upper bound only
    # holds on a quiet machine; the FLOP count itself is checked exactly below.
    quiet = all(parts[p]["cpu"]["foreign_cpu_fraction"] <= FOREIGN_WARN for p in ("matmul", "models"))
    for r in models["rows"]:
        assert r["images_per_s"] > 0 and r["train_flops_per_image"] > 0 and r["mfu"] > 0, r
        assert r["mfu"] < 1.5 or not quiet, r
    fc = models["flops_check"]
    # hwclf's count, the hand-written layer table and TF's own op registry agree within 1%
    assert fc["hwclf_over_analytic"] == pytest.approx(1, abs=0.01)
    assert fc["hwclf_over_tf_registry"] == pytest.approx(1, abs=0.01)
    assert fc["tf_registry_backward_over_forward"] == pytest.approx(2, abs=0.05)

    blur = parts["blur"]
    assert {(r["kind"], r["level"]) for r in blur["rows"]} == {("box", 5), ("box", 20), ("gaussian", 2.0)}
    assert all(r["images_per_s"] > 0 for r in blur["rows"])

    naive = parts["naive"]
    keys = [m["key"] for m in naive["methods"]]
    assert keys == ["naive", "hwclf_sequential_b32", "hwclf_sequential", "hwclf_sequential_bf16"]  # no sweep row
    # same batch, same initial weights, same images, same steps: the same model up to float round-off
    by_key = {m["key"]: m for m in naive["methods"]}
    assert by_key["hwclf_sequential_b32"]["clean_accuracy"] == pytest.approx(by_key["naive"]["clean_accuracy"],
                                                                              abs=0.05)
    for m in naive["methods"]:
        assert m["wall_s"] > 0 and len(m["trials"]) == len(naive["cells"])
        assert 0 <= m["clean_accuracy"] <= 1 and 0 <= m["matched_accuracy"] <= 1
    assert naive["methods"][0]["naive_over_this"] == 1.0 and naive["speedup_sequential"] > 0

    bad = _positive_numbers({k: v for k, v in parts.items() if k != "sweep"})
    assert not bad, bad
    printed = capsys.readouterr()
    assert "| `basic` |" in printed.out and "Naive baseline vs hwclf" in printed.out
    assert "[1/6] matmul" in printed.err and "[4/6] sweep: skipped" in printed.err
    assert [r["batch_size"] for r in models["batch_rows"]] == [64] and models["batch_rows"][0]["images_per_s"] > 0
    assert "`basic` at other batch sizes" in printed.out
    (bf16,) = models["precision_rows"]  # the bf16 row, against the bf16 matmul peak
    assert bf16["precision"] == "mixed_bfloat16" and bf16["images_per_s"] > 0 and bf16["speedup_vs_float32"] > 0
    assert parts["matmul"]["gflops_bf16"] > 0 and "precision mixed_bfloat16" in printed.out

    pack = parts["pack"]  # real worker processes side by side, released together
    assert [(r["slots"], r["threads_per_slot"]) for r in pack["rows"]] == [(1, max(1, os.cpu_count())),
                                                                         (2, max(1, os.cpu_count() // 2))]
    for r in pack["rows"]:
        assert len(r["per_slot_images_per_s"]) == r["slots"] and all(v > 0 for v in r["per_slot_images_per_s"])
        assert r["images_per_s"] == pytest.approx(sum(r["per_slot_images_per_s"]))
        # the workers trained at the same time, not one after another (that gives an overlap <= 0); how much
        # they overlap depends on the machine: 0.32 beside a study run, where one worker was starved for a while
        assert r["overlap_fraction"] > 0
    assert pack["throughput_stops_growing_after"]["32"] in (1, 2) and "Trials side by side" in printed.out
    for name in ("matmul", "models", "blur", "naive"):  # how much of the CPU others took, per part
        cpu = parts[name]["cpu"]
        assert cpu["own_cpu_s"] > 0 and 0 <= cpu["foreign_cpu_fraction"] and cpu["wall_s"] > 0


@pytest.mark.slow
def test_quick_bench_sweep_part_runs_a_real_sweep(tmp_path):
    """The Ray Tune part on its own Ray instance: capacity, overhead, breakdown, and the naive table's
    third row (the same trials through the sweep)."""
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "--quick", "--out", str(out), "--skip", "models,blur,pack"]) == 0
    result = json.loads(out.read_text())
    _check_common(result, tmp_path)
    sw = result["parts"]["sweep"]
    assert sw["n_trials"] == 2 and sw["slots"] >= 1 and sw["wall_s"] > 0 and sw["ray_start_s"] > 0
    assert sw["capacity_slot_s"] == pytest.approx(sw["wall_s"] * sw["slots"])
    assert 0 < sw["sum_train_time_s"] < sw["capacity_slot_s"] and 0 < sw["overhead_fraction"] < 1
    assert 0 < sw["end_to_end_mfu"] < sw["end_to_end_mfu_all_passes"] < 1.5
    assert 1 <= sw["worker_processes"] <= sw["slots"]  # workers are reused from trial to trial
    top = [b for b in sw["breakdown"] if not b.get("sub")]
    assert sum(b["slot_s"] for b in top) == pytest.approx(sw["capacity_slot_s"], rel=1e-6)
    assert all(t["train_time_s"] > 0 and t["lifetime_s"] >= t["trial_wall_time_s"] for t in sw["trials"])
    methods = {m["key"]: m for m in result["parts"]["naive"]["methods"]}
    assert set(methods) == {"naive", "hwclf_sequential_b32", "hwclf_sequential", "hwclf_sequential_bf16", "hwclf_sweep"}
    assert methods["hwclf_sweep"]["wall_s"] == sw["wall_s"] and 0 <= methods["hwclf_sweep"]["clean_accuracy"] <= 1


def test_unknown_part_in_skip_is_one_line(capsys):
    assert cli_main(["bench", "--quick", "--skip", "matmul,gpu"]) == 2
    err = capsys.readouterr().err
    assert "--skip: unknown part(s) gpu; allowed: matmul, models, blur, sweep, naive, pack, tta" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 7, 10, 20, 30])
def test_naive_loop_blur_gives_the_same_images_as_hwclf(k):
    """The baseline's per-image cv2.blur loop and hwclf's batch-as-channels blur are the same function:
    the benchmark compares two ways of doing the same work, pixel for pixel."""
    rng = np.random.default_rng(k)
    random_images = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)  # > 128: crosses a chunk boundary
    letters, _ = official_letters(n_per_class=3)
    for images in (random_images, letters):
        naive = naive_box_blur(images, k)
        assert naive.dtype == np.uint8 and naive.shape == images.shape
        np.testing.assert_array_equal(naive, box_blur(images, k))


def test_knee_is_where_one_more_trial_stops_adding_five_percent():
    from hwclf.bench.pack import knee

    def rows(*rates):
        return [{"slots": 2 ** i, "images_per_s": r} for i, r in enumerate(rates)]

    assert knee(rows(100, 190, 250, 251, 252)) == 4  # the H200 shape: 1 -> 2 -> 4 grow, then flat
    assert knee(rows(100, 104, 200)) == 1  # the first step already adds < 5%: stop there
    assert knee(rows(100, 110)) == 2 and knee(rows(100)) == 1


def test_pack_slots_split_the_cores_or_share_one_gpu():
    from hwclf.bench.pack import pack_slots

    assert pack_slots(2, 0) == (1, 2) and pack_slots(1, 0) == (1,) and pack_slots(12, 0) == (1, 2, 4, 8)
    assert pack_slots(16, 1) == (1, 2, 4, 8, 16) and pack_slots(64, 1) == (1, 2, 4, 8, 16)


def test_cpu_watch_counts_orphaned_descendants_as_its_own(tmp_path):
    """Ray's workers outlive their raylet at shutdown and are re-parented to init: they are still the
    bench's own processes, not 'other processes' taking the machine (a false 'not idle' warning)."""
    import subprocess
    import sys
    import time

    from hwclf.bench.machine import CpuWatch

    # A name of its own (/proc/PID/comm): other Python processes on a shared machine are "python" too
    busy = ("open('/proc/self/comm', 'w').write('hwclf-busy')\n"
            "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass\n")
    (tmp_path / "busy.py").write_text(busy)
    parent = f"import subprocess, sys, time; subprocess.Popen([sys.executable, {str(tmp_path / 'busy.py')!r}]); time.sleep(0.4)"
    watch = CpuWatch()
    proc = subprocess.Popen([sys.executable, "-c", parent])
    time.sleep(0.3)
    CpuWatch.snapshot()  # the tree while it is intact, as bench_sweep does before ray.shutdown
    proc.wait()  # the busy grandchild is an orphan now
    time.sleep(0.8)
    result = watch.stop()
    assert result["own_cpu_s"] > 0, result  # how much depends on the load: the busy loop runs for a wall time
    assert "hwclf-busy" not in dict(result["foreign_top"]), result


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "docs").glob("bench-*.json")),
                         ids=lambda p: p.name)
def test_committed_bench_json_still_renders(path):
    """The JSONs of earlier runs (docs/) load in the markdown writer; where the run's table was committed
    beside its JSON, today's writer gives that table, character for character."""
    from hwclf.bench.markdown import markdown

    result = json.loads(path.read_text())
    md = markdown(result)
    assert md.startswith("`hwclf bench` on ") and result["machine"]["cpu_model"] in md
    if result["parts"].get("naive", {}).get("methods"):
        assert "Naive baseline vs hwclf" in md
    for row in result["parts"].get("tta", {}).get("rows", []):
        assert f"| `{row['arch']}` | {100 * row['target']:.1f}% |" in md
    committed = path.with_suffix(".md")
    if committed.exists():
        assert md == committed.read_text()
