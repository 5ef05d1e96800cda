"""`hwclf bench`: the quick run writes every part with sane numbers, and the naive baseline does the same
blur work as hwclf (so the speed-up it reports is about how, not what)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwclf.blur import box_blur
from hwclf.cli import main as cli_main
from hwclf.naive import naive_box_blur

from conftest import official_letters


def _positive_numbers(obj, path="") -> list[str]:
    """Every number in `obj` (recursively) that is not > 0, by path; skips fields that may be 0 or None."""
    zero_ok = ("load_average", "start_offset", "data_blur", "first_epoch_extra", "blur", "seed", "setup_s",
               "slot_s", "fraction_of_capacity", "tf_registry_backward", "idle", "quick", "test", "accuracy")
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
    for r in models["rows"]:
        assert r["images_per_s"] > 0 and r["train_flops_per_image"] > 0 and 0 < r["mfu"] < 1.5, r
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
    assert keys == ["naive", "hwclf_sequential"]  # no sweep to compare with when it is skipped
    for m in naive["methods"]:
        assert m["wall_s"] > 0 and len(m["trials"]) == len(naive["cells"])
        assert 0 <= m["clean_accuracy"] <= 1 and 0 <= m["matched_accuracy"] <= 1
    assert naive["methods"][0]["naive_over_this"] == 1.0 and naive["speedup_sequential"] > 0

    bad = _positive_numbers({k: v for k, v in parts.items() if k != "sweep"})
    assert not bad, bad
    printed = capsys.readouterr()
    assert "| `basic` |" in printed.out and "Naive baseline vs hwclf" in printed.out
    assert "[1/5] matmul" in printed.err and "[4/5] sweep: skipped" in printed.err


@pytest.mark.slow
def test_quick_bench_sweep_part_runs_a_real_sweep(tmp_path):
    """The Ray Tune part on its own Ray instance: capacity, overhead, breakdown, and the naive table's
    third row (the same trials through the sweep)."""
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "--quick", "--out", str(out), "--skip", "models,blur"]) == 0
    result = json.loads(out.read_text())
    _check_common(result, tmp_path)
    sw = result["parts"]["sweep"]
    assert sw["n_trials"] == 2 and sw["slots"] >= 1 and sw["wall_s"] > 0 and sw["ray_start_s"] > 0
    assert sw["capacity_slot_s"] == pytest.approx(sw["wall_s"] * sw["slots"])
    assert 0 < sw["sum_train_time_s"] < sw["capacity_slot_s"] and 0 < sw["overhead_fraction"] < 1
    assert 0 < sw["end_to_end_mfu"] < 1.5
    top = [b for b in sw["breakdown"] if not b.get("sub")]
    assert sum(b["slot_s"] for b in top) == pytest.approx(sw["capacity_slot_s"], rel=1e-6)
    assert all(t["train_time_s"] > 0 and t["lifetime_s"] >= t["trial_wall_time_s"] for t in sw["trials"])
    methods = {m["key"]: m for m in result["parts"]["naive"]["methods"]}
    assert set(methods) == {"naive", "hwclf_sequential", "hwclf_sweep"}
    assert methods["hwclf_sweep"]["wall_s"] == sw["wall_s"] and 0 <= methods["hwclf_sweep"]["clean_accuracy"] <= 1


def test_unknown_part_in_skip_is_one_line(capsys):
    assert cli_main(["bench", "--quick", "--skip", "matmul,gpu"]) == 2
    err = capsys.readouterr().err
    assert "--skip: unknown part(s) gpu; allowed: matmul, models, blur, sweep, naive" in err
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
