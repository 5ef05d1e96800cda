"""Damaged checkpoints: `hwclf train --resume` warns in one line and resumes from the previous good
checkpoint, or starts over, and its numbers are those of a valid run; never a traceback, never a wrong resume.

A reference trial (3 epochs, tiny digits) is run once; its checkpoints after epochs 1 and 2 are copied into
OUT/checkpoint.prev and OUT/checkpoint, one is damaged, and the CLI resumes. Resuming the same checkpoint
reseeds from (seed, epoch), so a valid resume is bit-identical to a direct resume from that checkpoint, and
starting over is bit-identical to a fresh run.
"""

from __future__ import annotations

import json
import shutil

import pytest

from hwclf.checkpoint import MANIFEST_FILE, OPTIMIZER_FILE, STATE_FILE, WEIGHTS_FILE, write_manifest
from hwclf.cli import main
from hwclf.config import TrialConfig
from hwclf.trial import run_trial

ARGS = dict(dataset="digits", arch="basic", blur=3, seed=0, epochs=3, batch_size=64, per_class=30, threads=2)
CLI = ["train", "--dataset", "digits", "--arch", "basic", "--blur", "3", "--seed", "0", "--epochs", "3",
       "--batch-size", "64", "--per-class", "30", "--threads", "2", "--resume"]


def numbers(result: dict):
    """What a run computed (times left out)."""
    return ([{k: v for k, v in h.items() if k not in ("epoch_time_s", "images_per_s")} for h in result["history"]],
            [t["accuracy"] for t in result["test"]], [t["loss"] for t in result["test"]])


@pytest.fixture(scope="module")
def ref(digits, tmp_path_factory):
    """Checkpoints after epochs 1 and 2 of a reference run; the results of a fresh run and of resuming each."""
    root = tmp_path_factory.mktemp("ref")

    def keep(metrics, ckpt):
        if "done_training" not in metrics and metrics["epoch"] < 3:
            shutil.copytree(ckpt, root / f"after-{metrics['epoch']}")

    fresh = run_trial(TrialConfig(**ARGS), digits, report=keep)
    from_1 = run_trial(TrialConfig(**ARGS), digits, resume_from=root / "after-1")
    assert from_1["resumed_from_epoch"] == 1
    other = root / "resnet"  # a checkpoint of another architecture, same everything else
    run_trial(TrialConfig(**{**ARGS, "arch": "resnet", "epochs": 1}), digits,
              report=lambda m, c: None if "done_training" in m else shutil.copytree(c, other))
    return {"root": root, "fresh": numbers(fresh), "from_1": numbers(from_1)}


def resume(ref, tmp_path, capsys, damage, prev=True, latest="after-2"):
    """OUT/checkpoint = `latest` (damaged by `damage`), OUT/checkpoint.prev = after-1; run the CLI."""
    out = tmp_path / "out"
    shutil.copytree(ref["root"] / latest, out / "checkpoint")
    if prev:
        shutil.copytree(ref["root"] / "after-1", out / "checkpoint.prev")
    damage(out / "checkpoint")
    capsys.readouterr()
    rc = main(CLI + ["--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("hwclf: warning:")]
    result = json.loads((out / "evaluation.json").read_text())
    return result, warnings, out


def truncate(name, keep=0.5):
    def damage(ckpt):
        p = ckpt / name
        p.write_bytes(p.read_bytes()[: int(p.stat().st_size * keep)])
    return damage


def test_truncated_weights_fall_back_to_the_previous_checkpoint(ref, tmp_path, capsys):
    result, warnings, out = resume(ref, tmp_path, capsys, truncate(WEIGHTS_FILE))
    assert len(warnings) == 1, warnings
    assert f"{out / 'checkpoint' / WEIGHTS_FILE}: " in warnings[0] and "(truncated)" in warnings[0]
    assert "resuming from" in warnings[0] and "checkpoint.prev (epoch 1)" in warnings[0]
    assert result["resumed_from_epoch"] == 1 and numbers(result) == ref["from_1"]


def test_truncated_state_falls_back(ref, tmp_path, capsys):
    result, warnings, out = resume(ref, tmp_path, capsys, truncate(STATE_FILE, 0.3))
    assert len(warnings) == 1 and f"{out / 'checkpoint' / STATE_FILE}: " in warnings[0], warnings
    assert result["resumed_from_epoch"] == 1 and numbers(result) == ref["from_1"]


def test_invalid_state_json_without_manifest_is_caught_by_parsing(ref, tmp_path, capsys):
    def damage(ckpt):
        (ckpt / MANIFEST_FILE).unlink()
        (ckpt / STATE_FILE).write_text('{"epoch": 2, "hist')

    result, warnings, out = resume(ref, tmp_path, capsys, damage)
    assert len(warnings) == 1 and f"{out / 'checkpoint' / STATE_FILE}: not valid JSON" in warnings[0], warnings
    assert result["resumed_from_epoch"] == 1 and numbers(result) == ref["from_1"]


def test_missing_optimizer_file_falls_back(ref, tmp_path, capsys):
    result, warnings, out = resume(ref, tmp_path, capsys, lambda ckpt: (ckpt / OPTIMIZER_FILE).unlink())
    assert len(warnings) == 1 and f"{out / 'checkpoint' / OPTIMIZER_FILE}: missing" in warnings[0], warnings
    assert result["resumed_from_epoch"] == 1 and numbers(result) == ref["from_1"]


def test_a_changed_byte_is_a_checksum_mismatch(ref, tmp_path, capsys):
    def flip(ckpt):
        p = ckpt / WEIGHTS_FILE
        b = bytearray(p.read_bytes())
        b[len(b) // 2] ^= 0xFF  # same size: only the checksum can tell
        p.write_bytes(bytes(b))

    result, warnings, out = resume(ref, tmp_path, capsys, flip)
    assert len(warnings) == 1 and "sha256 differs from the manifest" in warnings[0], warnings
    assert result["resumed_from_epoch"] == 1 and numbers(result) == ref["from_1"]


def test_checkpoint_of_another_architecture_starts_over(ref, tmp_path, capsys):
    result, warnings, out = resume(ref, tmp_path, capsys, lambda ckpt: None, prev=False, latest="resnet")
    assert len(warnings) == 1 and "written by another trial: arch='resnet' (this trial: 'basic')" in warnings[0]
    assert warnings[0].endswith("starting the trial over")
    assert result["resumed_from_epoch"] == 0 and numbers(result) == ref["fresh"]


def test_old_checkpoint_of_another_architecture_fails_to_load_and_starts_over(ref, tmp_path, capsys):
    result, warnings, out = resume(ref, tmp_path, capsys, lambda ckpt: (ckpt / MANIFEST_FILE).unlink(),
                                   prev=False, latest="resnet")
    assert len(warnings) == 1 and "does not load into basic" in warnings[0], warnings
    # the failed load touched the model; the trial is nonetheless exactly a fresh one
    assert result["resumed_from_epoch"] == 0 and numbers(result) == ref["fresh"]


def test_checkpoint_of_another_config_starts_over(ref, tmp_path, capsys):
    def other_seed(ckpt):
        manifest = json.loads((ckpt / MANIFEST_FILE).read_text())
        write_manifest(ckpt, {**manifest["identity"], "learning_rate": 0.01})

    result, warnings, out = resume(ref, tmp_path, capsys, other_seed, prev=False)
    assert len(warnings) == 1 and "learning_rate=0.01 (this trial: 0.001)" in warnings[0], warnings
    assert result["resumed_from_epoch"] == 0 and numbers(result) == ref["fresh"]


def test_both_damaged_is_one_line_then_a_fresh_run(ref, tmp_path, capsys):
    def both(ckpt):
        truncate(WEIGHTS_FILE)(ckpt)
        truncate(STATE_FILE)(ckpt.parent / "checkpoint.prev")

    result, warnings, out = resume(ref, tmp_path, capsys, both)
    assert len(warnings) == 1, warnings
    assert str(out / "checkpoint" / WEIGHTS_FILE) in warnings[0]
    assert str(out / "checkpoint.prev" / STATE_FILE) in warnings[0]
    assert result["resumed_from_epoch"] == 0 and numbers(result) == ref["fresh"]


def test_old_checkpoint_without_manifest_resumes_with_a_note(ref, tmp_path, capsys):
    result, warnings, out = resume(ref, tmp_path, capsys, lambda ckpt: (ckpt / MANIFEST_FILE).unlink(),
                                   prev=False, latest="after-1")
    assert len(warnings) == 1 and f"has no {MANIFEST_FILE}" in warnings[0] and "not by checksum" in warnings[0]
    assert result["resumed_from_epoch"] == 1 and numbers(result) == ref["from_1"]


def test_good_checkpoint_resumes_silently_and_the_cli_keeps_two(ref, tmp_path, capsys):
    result, warnings, out = resume(ref, tmp_path, capsys, lambda ckpt: None, latest="after-1", prev=False)
    assert warnings == [] and result["resumed_from_epoch"] == 1 and numbers(result) == ref["from_1"]
    latest = json.loads((out / "checkpoint" / STATE_FILE).read_text())
    previous = json.loads((out / "checkpoint.prev" / STATE_FILE).read_text())
    assert latest["epoch"] == previous["epoch"] == 3  # the final checkpoint and the last epoch's
    assert (out / "checkpoint" / "evaluation.json").is_file() and (out / "checkpoint" / MANIFEST_FILE).is_file()
    manifest = json.loads((out / "checkpoint" / MANIFEST_FILE).read_text())
    assert "evaluation.json" in manifest["files"]  # sealed with the rest


def test_mixture_trial_resumes_bit_identically_and_is_sealed(digits, tmp_path):
    cfg = TrialConfig(**{**ARGS, "blur": "mix:0/3/6", "lr_schedule": "cosine", "warmup_fraction": 0.2,
                         "learning_rate": 3e-3})

    def keep(metrics, ckpt):
        if metrics.get("epoch") == 2 and "done_training" not in metrics:
            shutil.copytree(ckpt, tmp_path / "ck")

    full = run_trial(cfg, digits, report=keep)
    assert json.loads((tmp_path / "ck" / MANIFEST_FILE).read_text())["identity"]["blur"] == "mix:0/3/6"
    resumed = run_trial(cfg, digits, resume_from=[tmp_path / "ck"])
    assert resumed["resumed_from_epoch"] == 2 and numbers(resumed) == numbers(full)


def test_ray_retries_find_the_older_checkpoints_beside_the_latest(tmp_path):
    from ray import tune

    from sweep.trainable import older_checkpoints

    for i in (0, 1, 2, 10):
        (tmp_path / f"checkpoint_{i:06d}").mkdir()
    (tmp_path / "checkpoint_tmp_x").mkdir()
    latest = tune.Checkpoint.from_directory(str(tmp_path / "checkpoint_000002"))
    assert [c.path for c in older_checkpoints(latest)] == [str(tmp_path / "checkpoint_000001")]
    assert [c.path for c in older_checkpoints(latest, keep=5)] == [str(tmp_path / f"checkpoint_00000{i}")
                                                                   for i in (1, 0)]
    assert older_checkpoints(tune.Checkpoint.from_directory(str(tmp_path / "checkpoint_tmp_x"))) == []


@pytest.mark.slow
def test_sweep_resume_over_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path):
    """A trial fails after epoch 2 (no retries); its latest checkpoint is then cut short; `--resume` warns,
    continues from epoch 1's checkpoint and finishes."""
    from test_sweep import run_driver, tiny, trial_dirs, evaluations

    args = tiny(tmp_path, "damaged", "--blur", "0", "--seeds", "0", "--epochs", "3", "--max-failures", "0",
                "--no-report")
    first = run_driver(args, env={"HWCLF_FAULT_INJECT": f"2:{tmp_path / 'markers'}"})
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    (trial,) = trial_dirs(tmp_path / "damaged")
    checkpoints = sorted(trial.glob("checkpoint_*"))
    assert [json.loads((c / STATE_FILE).read_text())["epoch"] for c in checkpoints] == [1, 2]
    weights = checkpoints[-1] / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])

    resumed = run_driver(args + ["--resume"], env={"HWCLF_FAULT_INJECT": f"2:{tmp_path / 'markers'}"})
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-4000:]
    assert "Traceback" not in out
    warnings = [line for line in out.splitlines() if "hwclf: warning:" in line]
    assert len(warnings) == 1 and f"{weights}: 1000 bytes" in warnings[0], warnings
    assert f"resuming from {checkpoints[0]} (epoch 1)" in warnings[0]
    (evaluation,) = evaluations(tmp_path / "damaged").values()
    assert evaluation["resumed_from_epoch"] == 1 and [h["epoch"] for h in evaluation["history"]] == [1, 2, 3]
