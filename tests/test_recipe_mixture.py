"""The fast recipe (warm-up + cosine) and blur-mixture training: validation, draws, resume, names."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from hwclf.cli import main
from hwclf.config import SweepConfig, TrialConfig
from hwclf.errors import UserError
from hwclf.mixture import draw_levels, label, mix_levels, parse_train_blur, parse_train_blurs, slug, from_slug, sort_key
from hwclf.trial import MixtureData, run_trial


def quick(**kw) -> TrialConfig:
    base = dict(dataset="digits", arch="basic", blur="mix:0/3/6", seed=0, epochs=3, batch_size=64,
                lr_schedule="cosine", warmup_fraction=0.2, learning_rate=3e-3, test_blur=(0, 3, 6))
    base.update(kw)
    return TrialConfig(**base)


# ---- spelling and validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [{"mix": [10, 0, 5, 5]}, "mix:0/5/10", "mix 0/5/10", " MIX:10/5/0 ", "mix:0+5+10"])
def test_a_mixture_has_one_canonical_form(value):
    assert parse_train_blur(value) == "mix:0/5/10"


def test_names_for_people_directories_and_order():
    axis = parse_train_blurs([{"mix": [0, 5, 10]}, 20, 0, "mix:0/5"])
    assert sorted(axis, key=sort_key) == [0, 20, "mix:0/5", "mix:0/5/10"]
    assert label("mix:0/5/10") == "mix 0/5/10" and label(5) == "5"
    assert slug("mix:0/5/10") == "mix0_5_10" and from_slug("mix0_5_10") == "mix:0/5/10" and from_slug("5") == 5
    assert mix_levels("mix:0/5/10") == (0, 5, 10) and mix_levels(7) == (7,)
    assert parse_train_blur({"mix": [0, 1.5]}, integer=False) == "mix:0/1.5"


@pytest.mark.parametrize("value, message", [
    ({"mix": []}, "at least two different blur levels"),
    ("mix:", "empty mixture"),
    ({"mix": [5, 5]}, "at least two different blur levels"),
    ({"mix": [0, -5]}, "-5 is negative"),
    ({"mixx": [0, 5]}, "unknown key(s) mixx"),
    ({"mix": [0, 5], "p": [1, 2]}, "unknown key(s) p"),
    ({"mix": [0, {"mix": [1, 2]}]}, "no mixtures of mixtures"),
    ({"mix": [0, "five"]}, "'five' is not a number"),
    ({"mix": [0, 2.5]}, "2.5 is not a whole number"),
    ({"mix": 5}, "takes a list of blur levels"),
    ([0, 5], "is a list inside the list"),
])
def test_malformed_mixtures_name_the_field(value, message):
    with pytest.raises(UserError, match="^train_blur: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_train_blur(value)


def test_sweep_config_takes_mixtures_from_yaml_and_tests_their_levels(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: m\ntrain_blur: [10, {mix: [0, 5, 10]}, 0]\n")
    cfg = SweepConfig.from_yaml(f)
    assert cfg.train_blur == (0, 10, "mix:0/5/10")
    assert cfg.test_blur == (0, 5, 10)  # default: every level trained on, mixtures' included
    assert len(cfg.grid()) == 3 and cfg.trial_config("basic", "mix:0/5/10", 0).blur == "mix:0/5/10"
    f.write_text("name: m\ntrain_blur: [0, {mix: [0, 5], extra: 1}]\n")
    with pytest.raises(UserError, match=r"train_blur: unknown key\(s\) extra"):
        SweepConfig.from_yaml(f)
    # the resolved config written beside a sweep loads back to the same config
    import yaml

    f.write_text(yaml.safe_dump(cfg.to_dict()))
    assert SweepConfig.from_yaml(f) == cfg


@pytest.mark.parametrize("kw, message", [
    (dict(lr_schedule="linear"), "lr_schedule: unknown value 'linear'; allowed: constant, cosine"),
    (dict(lr_schedule="cosine", warmup_fraction=1.0), "warmup_fraction: must be >= 0 and < 1, got 1.0"),
    (dict(lr_schedule="cosine", warmup_fraction=-0.1), "warmup_fraction: must be >= 0 and < 1"),
    (dict(lr_schedule="cosine", warmup_fraction="a lot"), "warmup_fraction: expected a number, got 'a lot'"),
    (dict(lr_schedule="constant", warmup_fraction=0.2), "warmup_fraction: 0.2 needs lr_schedule: cosine"),
])
def test_bad_recipe_values_name_the_field(kw, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        TrialConfig(**kw)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        SweepConfig(**kw)


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr-schedule", "step"], "lr_schedule: unknown value 'step'"),
    (["train", "--lr-schedule", "cosine", "--warmup", "1.5"], "warmup_fraction: must be >= 0 and < 1, got 1.5"),
    (["train", "--blur", "mix:0/-5"], "--blur: '-5' is negative"),
    (["train", "--blur", "mix:"], "--blur: empty mixture"),
    (["train", "--blur", "mix:3"], "--blur: a mixture needs at least two different blur levels"),
])
def test_cli_recipe_and_mixture_mistakes_are_one_line(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("hwclf: error:")]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_sweep_cli_rejects_a_malformed_mixture(capsys):
    from sweep.run import main as sweep_main

    assert sweep_main(["--preset", "demo", "--blur", "0,mix:0/x", "--address", "local"]) == 2
    err = capsys.readouterr().err
    assert "sweep: error: train_blur: 'x' is not a number" in err and "Traceback" not in err


# ---- the draws --------------------------------------------------------------------------------------------

def test_drawn_levels_follow_the_seed_change_between_epochs_and_are_uniform():
    a0, a0_again, a1 = draw_levels(5000, 3, 0, 0), draw_levels(5000, 3, 0, 0), draw_levels(5000, 3, 0, 1)
    b0 = draw_levels(5000, 3, 1, 0)
    assert np.array_equal(a0, a0_again)
    assert (a0 != a1).mean() > 0.5 and (a0 != b0).mean() > 0.5  # ~2/3 differ for 3 levels
    assert set(np.unique(a0)) == {0, 1, 2}
    assert np.all(np.abs(np.bincount(a0) / 5000 - 1 / 3) < 0.03)


def test_each_epoch_blurs_each_image_at_its_drawn_level(digits):
    from hwclf.blur import blur
    from hwclf.trial import split_indices, to_model_input

    cfg = quick()
    mix = MixtureData(cfg, digits)
    tr, _ = split_indices(cfg, digits)
    for epoch in (0, 1):
        x = mix.x_train(epoch)
        which = draw_levels(len(tr), 3, cfg.seed, epoch)
        for level_index, level in enumerate((0, 3, 6)):
            sel = which == level_index
            assert np.array_equal(x[sel], to_model_input(blur(digits.x_train[tr][sel], level, "box")))
    assert not np.array_equal(mix.x_train(0), mix.x_train(1))
    assert np.array_equal(mix.x_train(1), MixtureData(cfg, digits).x_train(1))  # a pure function of (seed, epoch)


# ---- training and resume ----------------------------------------------------------------------------------

def _stop_after(cfg: TrialConfig, data, epoch: int) -> Path:
    """Run `cfg` and keep the checkpoint reported after `epoch`, as a crashed trial would leave it."""
    kept = {}

    def report(metrics, checkpoint):
        if metrics.get("epoch") == epoch and "done_training" not in metrics and "ckpt" not in kept:
            kept["ckpt"] = Path(tempfile.mkdtemp()) / "ckpt"
            shutil.copytree(checkpoint, kept["ckpt"])

    run_trial(cfg, data, report=report)
    return kept["ckpt"]


def _numbers(result):
    return ([{k: v for k, v in h.items() if k not in ("epoch_time_s", "images_per_s")} for h in result["history"]],
            result["test"])


def test_a_resumed_mixture_trial_matches_an_uninterrupted_one(digits):
    cfg = quick()
    whole = run_trial(cfg, digits)
    resumed = run_trial(cfg, digits, resume_from=_stop_after(cfg, digits, 1))
    assert resumed["resumed_from_epoch"] == 1
    assert _numbers(resumed) == _numbers(whole)
    assert whole["test"][0]["accuracy"] > 0.3  # it learned (chance 0.1)


def test_resumed_and_uninterrupted_runs_follow_the_same_learning_rate_curve(digits):
    cfg = quick(blur=3)
    whole = run_trial(cfg, digits)
    resumed = run_trial(cfg, digits, resume_from=_stop_after(cfg, digits, 2))
    lr = lambda r: [h["learning_rate"] for h in r["history"]]  # noqa: E731
    assert lr(resumed) == pytest.approx(lr(whole), rel=1e-6)
    # warm-up to the peak over 20% of the steps, then cosine decay to 0 at the last step
    per_epoch = -(-whole["dataset"]["n_train"] // cfg.batch_size)
    steps, warm = 3 * per_epoch, round(0.2 * 3 * per_epoch)
    expected = [3e-3 * 0.5 * (1 + np.cos(np.pi * (e * per_epoch - warm) / (steps - warm))) for e in (1, 2, 3)]
    assert lr(whole) == pytest.approx(expected, abs=1e-6)


def test_constant_schedule_keeps_the_rate(digits):
    result = run_trial(quick(blur=0, lr_schedule="constant", warmup_fraction=0, learning_rate=1e-3, epochs=1), digits)
    assert result["history"][0]["learning_rate"] == pytest.approx(1e-3)
