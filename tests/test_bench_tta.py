"""`hwclf bench --parts tta`: the target, the time to it and the ratio are computed from what was measured
(the summary on made-up curves), and the real code path runs end to end on digits at a tiny budget."""

from __future__ import annotations

import json

import pytest

from hwclf.bench.tta import TARGET_MARGIN, summarise, time_to_target
from hwclf.cli import main as cli_main


def _trial(recipe: str, seed: int, accuracies, epoch_s: float) -> dict:
    curve = [{"epoch": e + 1, "test_accuracy": a, "fit_time_s": epoch_s * (e + 1), "eval_s": 0.5}
             for e, a in enumerate(accuracies)]
    return {"arch": "basic", "recipe": recipe, "seed": seed, "epochs": len(curve), "curve": curve,
            "final_accuracy": accuracies[-1], "fit_time_s": epoch_s * len(curve), "eval_time_s": 0.5 * len(curve)}


def test_target_time_and_ratio_come_from_the_curves():
    trials = [_trial("original", 0, [0.50, 0.70, 0.79, 0.80], 30.0),  # final 0.80
              _trial("original", 1, [0.55, 0.75, 0.81, 0.82], 30.0),  # final 0.82: target 0.81 - 0.005 = 0.805
              _trial("fast", 0, [0.60, 0.81, 0.84], 10.0),
              _trial("fast", 1, [0.70, 0.79, 0.83], 12.0)]
    (row,) = summarise(trials, ["basic"])
    assert row["target"] == pytest.approx(0.81 - TARGET_MARGIN)
    # each seed on its own: original seed 0 never reaches 0.805 (its final is 0.80)
    assert [t["epoch_to_target"] for t in trials] == [None, 3, 2, 3]
    assert row["original"]["seeds_reached"] == 1 and row["fast"]["seeds_reached"] == 2
    # the seed-mean curves: original 0.525, 0.725, 0.80, 0.81 (30 s an epoch); fast 0.65, 0.80, 0.835 (11 s)
    assert row["original"]["epoch_to_target"] == 4 and row["original"]["time_to_target_s"] == pytest.approx(120.0)
    assert row["fast"]["epoch_to_target"] == 3 and row["fast"]["time_to_target_s"] == pytest.approx(33.0)
    assert row["ratio"] == pytest.approx(120.0 / 33.0)
    assert row["original"]["final_accuracy"] == pytest.approx({"mean": 0.81, "min": 0.80, "max": 0.82})
    assert row["fast"]["fit_time_s"] == pytest.approx(33.0)

    trials[2:] = [_trial("fast", 0, [0.60, 0.70], 10.0), _trial("fast", 1, [0.70, 0.80], 10.0)]
    (row,) = summarise(trials, ["basic"])
    assert row["fast"]["time_to_target_s"] is None and row["fast"]["seeds_reached"] == 0 and row["ratio"] is None


def test_each_fast_budget_gets_its_own_ratio_and_the_best_is_named():
    """Several budgets (--tta-epochs 2,3): each is a row of its own; `ratio` is the best reached one."""
    def fast(seed, accuracies, epoch_s):
        return {**_trial("fast", seed, accuracies, epoch_s), "label": f"fast {len(accuracies)} ep"}

    trials = [{**_trial("original", 0, [0.50, 0.70, 0.79, 0.81], 30.0), "label": "original"},  # target 0.805
              fast(0, [0.60, 0.79], 10.0),         # 2 epochs: never reaches the target
              fast(0, [0.60, 0.70, 0.82], 10.0)]   # 3 epochs: reaches it at 30 s
    (row,) = summarise(trials, ["basic"])
    assert row["ratios"] == {"fast 2 ep": None, "fast 3 ep": pytest.approx(120.0 / 30.0)}
    assert row["best"] == "fast 3 ep" and row["ratio"] == pytest.approx(4.0)
    assert row["fast 2 ep"]["time_to_target_s"] is None and row["fast 3 ep"]["epoch_to_target"] == 3

    from hwclf.bench.markdown import _tta_markdown

    recipes = {"original": {"lr_schedule": "constant", "learning_rate": 1e-3, "warmup_fraction": 0.0,
                            "batch_size": 32, "epochs": 4, "precision": "float32"}}
    for e in (2, 3):
        recipes[f"fast {e} ep"] = {"lr_schedule": "cosine", "learning_rate": 3e-3, "warmup_fraction": 0.2,
                                   "batch_size": 128, "epochs": e, "precision": "float32"}
    text = "\n".join(_tta_markdown({"rows": [row], "recipes": recipes, "dataset": "digits", "per_class": 10,
                                     "n_train": 260, "n_test": 360, "seeds": [0], "target_margin": TARGET_MARGIN}))
    assert "budget of 2 and 3 epochs" in text
    assert "| fast 2 ep | not reached (0 of 1 seeds on their own) | n/a |" in text
    assert "| fast 3 ep (best) | 30 s (epoch 3; 1 of 1 seeds on their own) | 4.00x |" in text


def test_time_to_target_is_the_first_epoch_at_or_over_it():
    curve = [{"epoch": 1, "test_accuracy": 0.3, "fit_time_s": 5.0}, {"epoch": 2, "test_accuracy": 0.6, "fit_time_s": 9.0},
             {"epoch": 3, "test_accuracy": 0.5, "fit_time_s": 13.0}]
    assert time_to_target(curve, 0.6) == (2, 9.0) and time_to_target(curve, 0.3) == (1, 5.0)
    assert time_to_target(curve, 0.61) == (None, None)


def test_quick_tta_on_digits_runs_both_recipes(tmp_path, capsys):
    """The real code path, tiny: one architecture, one seed, 2 epochs each, 10 images per class."""
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "--quick", "--parts", "tta", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["parts"]) == ["tta"]
    tt = result["parts"]["tta"]
    assert tt["dataset"] == "digits" and tt["n_test"] == 360 and tt["per_class"] == 10
    assert tt["recipes"]["original"] == {"lr_schedule": "constant", "learning_rate": 1e-3, "warmup_fraction": 0.0,
                                         "batch_size": 32, "epochs": 2, "precision": "float32"}
    assert tt["recipes"]["fast"]["lr_schedule"] == "cosine" and tt["recipes"]["fast"]["batch_size"] == 128
    by = {t["recipe"]: t for t in tt["trials"]}
    assert sorted(by) == ["fast", "original"] and all(t["arch"] == "basic" and t["seed"] == 0 for t in tt["trials"])
    for t in tt["trials"]:
        assert [r["epoch"] for r in t["curve"]] == [1, 2]
        # the last per-epoch test is the trial's own final test: same weights, same images
        assert t["curve"][-1]["test_accuracy"] == pytest.approx(t["final_accuracy"], abs=1e-9)
        assert t["fit_time_s"] == pytest.approx(sum(r["epoch_time_s"] for r in t["curve"]))
        assert all(r["eval_s"] > 0 for r in t["curve"])
        # the per-epoch test ran inside model.fit but off the epoch clock: both fit in the whole fit call
        assert t["whole_fit_s"] >= t["fit_time_s"] + t["eval_time_s"]
    # each recipe really trained as declared: constant 1e-3, and cosine decayed to 0 at the last step
    assert [r["learning_rate"] for r in by["original"]["curve"]] == pytest.approx([1e-3, 1e-3])
    assert by["fast"]["curve"][-1]["learning_rate"] == pytest.approx(0.0, abs=1e-9)

    (row,) = tt["rows"]
    assert row["target"] == pytest.approx(by["original"]["final_accuracy"] - TARGET_MARGIN)
    for recipe in ("original", "fast"):
        t = by[recipe]
        first = next((r for r in t["curve"] if r["test_accuracy"] >= row["target"]), None)
        assert t["time_to_target_s"] == (first["fit_time_s"] if first else None)
        assert row[recipe]["time_to_target_s"] == pytest.approx(t["time_to_target_s"])  # one seed: its own curve
    assert row["original"]["seeds_reached"] == 1  # one seed: its own final accuracy is over its target
    fast = row["fast"]["time_to_target_s"]
    assert row["ratio"] == (pytest.approx(row["original"]["time_to_target_s"] / fast) if fast else None)

    printed = capsys.readouterr()
    assert "[1/1] tta: time to accuracy on digits" in printed.err
    assert "Time to accuracy on digits" in printed.out and "| `basic` | fast |" in printed.out
    assert "| measurement | value |" not in printed.out  # no empty table of the parts that did not run


@pytest.mark.parametrize("argv, message", [
    (["--parts", "tta,gpu"], "--parts: unknown part(s) gpu; allowed: matmul, models, blur, sweep, naive, pack, tta"),
    (["--parts", "tta", "--tta-archs", "basic,vgg"], "--tta-archs: unknown architecture(s) vgg; allowed: basic,"),
    (["--parts", "tta", "--tta-seeds", "0,x"], "--tta-seeds: 'x' is not a number"),
    (["--parts", "tta", "--tta-epochs", "0"], "--tta-epochs: give whole numbers >= 1 such as 3,6; got '0'"),
    (["--parts", "tta", "--tta-epochs", "3,x"], "--tta-epochs: give whole numbers >= 1 such as 3,6; got '3,x'"),
    (["--parts", "tta", "--tta-per-class", "0"], "--tta-per-class: must be >= 1, got 0"),
    (["--parts", "tta", "--dataset", "mnist"], "--dataset: unknown value 'mnist'; allowed: digits, emnist-letters,"),
])
def test_bad_tta_arguments_are_one_line(tmp_path, capsys, argv, message):
    assert cli_main(["bench", "--quick", "--out", str(tmp_path / "b.json"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.json").exists()


def test_missing_data_dir_is_one_line_before_any_part_runs(tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert cli_main(["bench", "--parts", "tta", "--data-dir", str(empty), "--out", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "Traceback" not in err and "[1/1]" not in err
