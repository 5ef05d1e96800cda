"""Configs are validated once, at the edge, with messages that name the field and the allowed values."""

from __future__ import annotations

import pytest

from hwclf.config import SweepConfig, TrialConfig, parse_number_list
from hwclf.errors import UserError


def test_trial_defaults_test_at_clean_and_own_blur():
    cfg = TrialConfig(blur=5)
    assert cfg.test_blur == (0, 5)
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "vgg"}, "arch: unknown value 'vgg'; allowed: basic"),
    ({"epochs": 0}, "epochs: must be >= 1, got 0"),
    ({"batch_size": -4}, "batch_size: must be >= 1"),
    ({"blur": -1}, "blur: -1 is negative"),
    ({"blur": 2.5}, "not a whole number"),
    ({"dataset": "mnist"}, "dataset: unknown value 'mnist'; allowed: digits, emnist-letters, femnist-letters"),
    ({"eval_weights": "middle"}, "eval_weights: unknown value 'middle'; allowed: last, best"),
    ({"precision": "float16"}, "precision: unknown value 'float16'; allowed: float32, mixed_bfloat16"),
    ({"val_fraction": 0.9}, "val_fraction: must be > 0 and <= 0.5"),
    ({"test_blur": ["a"]}, "test_blur: 'a' is not a number"),
])
def test_bad_trial_fields_name_the_field(kwargs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrialConfig(**kwargs)


def test_gaussian_blur_takes_fractional_sigma():
    assert TrialConfig(blur_kind="gaussian", blur=1.5).blur == 1.5


def test_unknown_trial_key():
    with pytest.raises(UserError, match="unknown trial config key.*colour"):
        TrialConfig.from_dict({"colour": 1})


@pytest.mark.parametrize("text, expected", [("0,5,10", (0, 5, 10)), ("7", (7,)), ([0, 20], (0, 20)), (3, (3,))])
def test_number_lists(text, expected):
    assert parse_number_list(text, "blur") == expected


@pytest.mark.parametrize("text", ["", "5,x", "1.5", "-2"])
def test_bad_number_lists(text):
    with pytest.raises(UserError, match="^blur: "):
        parse_number_list(text, "blur")


def test_sweep_grid_and_default_test_levels():
    cfg = SweepConfig(train_blur=(5, 0), archs=("basic", "resnet"), seeds=(0, 1, 2))
    assert len(cfg.grid()) == 2 * 2 * 3
    assert cfg.test_blur == (0, 5)
    t = cfg.trial_config("resnet", 5, 2)
    assert (t.arch, t.blur, t.seed, t.test_blur) == ("resnet", 5, 2, (0, 5))


def test_a_row_can_have_its_own_epochs(tmp_path):
    spec = tmp_path / "rows.yaml"
    spec.write_text("train_blur: [0, 30, {mix: [0, 5]}]\nepochs: 10\nepochs_by_train_blur: {30: 20, 'mix:0/5': 12}\n")
    cfg = SweepConfig.from_yaml(spec)
    assert [cfg.trial_config("basic", b, 0).epochs for b in cfg.train_blur] == [10, 20, 12]
    assert cfg.epochs_text() == "10 (train blur 30: 20, train blur mix 0/5: 12)"
    # the sweep file is JSON (keys become strings): read back, the same budgets
    import json

    again = SweepConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.epochs_by_train_blur == {30: 20, "mix:0/5": 12} and again.to_dict() == cfg.to_dict()
    # a row of the preset left out by --blur is fine; a bad budget names the entry
    assert cfg.replace(train_blur="0").epochs_text() == "10"
    for text, message in (("{30: 0}", r"epochs_by_train_blur\[30\]: must be >= 1, got 0"),
                          ("{x: 5}", "epochs_by_train_blur: 'x' is not a number"),
                          ("[30, 20]", "epochs_by_train_blur: expected a mapping of train level to epochs")):
        spec.write_text(f"epochs_by_train_blur: {text}\n")
        with pytest.raises(UserError, match=message):
            SweepConfig.from_yaml(spec)


def test_sweep_yaml_unknown_key_and_wrong_type(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nepoch: 3\n")
    with pytest.raises(UserError, match=r"bad.yaml: unknown key\(s\) epoch; allowed: .*epochs"):
        SweepConfig.from_yaml(bad)
    bad.write_text("name: x\nepochs: three\n")
    with pytest.raises(UserError, match="key 'epochs' must be a number, got 'three'"):
        SweepConfig.from_yaml(bad)
    bad.write_text("archs: {basic: 1}\n")
    with pytest.raises(UserError, match="key 'archs' must be a list"):
        SweepConfig.from_yaml(bad)
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        SweepConfig.from_yaml(bad)
    with pytest.raises(UserError, match="config file not found"):
        SweepConfig.from_yaml(tmp_path / "none.yaml")
    for text, message in (("reuse_actors: 1", "key 'reuse_actors' must be true/false, got 1"),
                          ("precision: bf16", "precision: unknown value 'bf16'; allowed: float32, mixed_bfloat16")):
        bad.write_text(text + "\n")
        with pytest.raises(UserError, match=message):
            SweepConfig.from_yaml(bad)


def test_overrides_are_validated_too():
    cfg = SweepConfig()
    assert cfg.replace(archs="basic,resnet_se", train_blur="0,10").archs == ("basic", "resnet_se")
    with pytest.raises(UserError, match="archs: unknown value 'resnet50'"):
        cfg.replace(archs="resnet50")
    with pytest.raises(UserError, match="name: 'a b' is not a usable directory name"):
        cfg.replace(name="a b")


def test_every_committed_preset_loads():
    from pathlib import Path

    presets = sorted((Path(__file__).parents[1] / "sweep" / "configs").glob("*.yaml"))
    assert {p.stem for p in presets} >= {"demo", "emnist-quick", "emnist-full"}
    for p in presets:
        cfg = SweepConfig.from_yaml(p)
        assert cfg.name == p.stem, f"{p.name}: name should match the file name"
        assert "python sweep/run.py" in p.read_text() or "ray submit" in p.read_text(), f"{p.name}: header lacks the command"


def test_emnist_full_runs_the_femnist_blur_study_on_emnist():
    """emnist-full says it is femnist-blur's study on EMNIST, "so the two studies compare": the same grid and
    recipe, each row's budget included (the k = 30 row needs 20 epochs); only the data and the compute differ."""
    from pathlib import Path

    configs = Path(__file__).parents[1] / "sweep" / "configs"
    full, blur = (SweepConfig.from_yaml(configs / f"{n}.yaml").to_dict() for n in ("emnist-full", "femnist-blur"))
    differ_by_design = {"name", "description", "dataset", "data_dir", "cpus_per_trial", "gpus_per_trial",
                        "threads_per_trial", "max_concurrent", "max_failures", "storage", "reuse_actors"}
    assert {k: v for k, v in full.items() if k not in differ_by_design} == \
        {k: v for k, v in blur.items() if k not in differ_by_design}
