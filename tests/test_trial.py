"""One trial without Ray: every architecture learns, same seed same numbers, resume continues, real data."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from hwclf.config import TrialConfig
from hwclf.models import MODELS
from hwclf.trial import evaluate, run_trial


def quick(arch="basic", **kw) -> TrialConfig:
    base = dict(dataset="digits", arch=arch, blur=3, seed=0, epochs=2, batch_size=64, test_blur=(0, 3, 6))
    base.update(kw)
    return TrialConfig(**base)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_every_architecture_learns_digits(arch, digits):
    reports = []
    result = run_trial(quick(arch, epochs=3), digits, report=lambda m, c: reports.append(m))
    assert [r["epoch"] for r in reports[:-1]] == [1, 2, 3] and reports[-1]["done_training"]
    clean = result["test"][0]
    # chance is 0.10; three short epochs on 1,293 images: basic reaches ~0.9, mobilenet (BN, depthwise) ~0.2
    assert clean["test_blur"] == 0 and clean["accuracy"] > 0.15, f"{arch}: {clean['accuracy']:.2f} (chance 0.10)"
    assert [t["test_blur"] for t in result["test"]] == [0, 3, 6]
    assert result["model"]["params"] > 0 and result["model"]["train_flops_per_image"] > 0


def test_same_seed_same_numbers_other_seed_other_numbers(digits):
    a = run_trial(quick(), digits)
    b = run_trial(quick(), digits)
    c = run_trial(quick(seed=1), digits)
    strip = lambda r: ([{k: v for k, v in h.items() if k not in ("epoch_time_s", "images_per_s")}  # noqa: E731
                        for h in r["history"]], r["test"])
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_mixed_bfloat16_learns_and_does_not_leak_into_the_next_trial(digits):
    """bf16 compute is a per-trial choice: a float32 trial run after a bf16 one in the same process (a
    reused worker) gives exactly what it gives alone, and the probabilities stay float32."""
    import keras

    strip = lambda r: ([{k: v for k, v in h.items() if k not in ("epoch_time_s", "images_per_s")}  # noqa: E731
                        for h in r["history"]], r["test"])
    alone = run_trial(quick(), digits)
    bf16 = run_trial(quick(precision="mixed_bfloat16"), digits)
    assert bf16["config"]["precision"] == "mixed_bfloat16" and bf16["test"][0]["accuracy"] > 0.5
    assert strip(bf16) != strip(alone)  # it really computed in bf16
    after = run_trial(quick(), digits)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert strip(after) == strip(alone)


def test_resume_continues_from_the_next_epoch(digits, tmp_path):
    saved = {}

    def keep(metrics, ckpt):
        if "done_training" not in metrics:
            shutil.copytree(ckpt, tmp_path / f"after-{metrics['epoch']}")
            saved[metrics["epoch"]] = metrics

    full = run_trial(quick(epochs=3), digits, report=keep)
    reports = []
    resumed = run_trial(quick(epochs=3), digits, report=lambda m, c: reports.append(m),
                        resume_from=tmp_path / "after-1")
    assert [r["epoch"] for r in reports if "done_training" not in r] == [2, 3]  # epoch 1 not re-run
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs_run"] == 2
    assert len(resumed["history"]) == 3 and resumed["history"][0] == full["history"][0]
    # Adam's state came back: epoch 2 after resume is close to the uninterrupted epoch 2
    assert abs(resumed["history"][1]["loss"] - full["history"][1]["loss"]) < 0.25 * full["history"][1]["loss"]
    # and the restored weights are not a fresh model: its first resumed epoch beats a fresh first epoch
    assert resumed["history"][1]["loss"] < full["history"][0]["loss"]


def test_resume_after_the_last_epoch_only_evaluates(digits, tmp_path):
    def keep(metrics, ckpt):
        if metrics.get("epoch") == 2 and "done_training" not in metrics:
            shutil.copytree(ckpt, tmp_path / "last")

    run_trial(quick(), digits, report=keep)
    again = run_trial(quick(), digits, resume_from=tmp_path / "last")
    assert again["epochs_run"] == 0 and again["evaluated_epoch"] == 2 and len(again["history"]) == 2


def test_best_weights_are_evaluated_when_asked(digits, tmp_path):
    result = run_trial(quick(epochs=3, eval_weights="best"), digits)
    val = [h["val_accuracy"] for h in result["history"]]
    assert result["evaluated_weights"] == "best"
    assert result["evaluated_epoch"] == int(np.argmax(val)) + 1


def test_final_checkpoint_holds_the_evaluation(digits):
    final = {}

    def grab(metrics, ckpt):
        if metrics.get("done_training"):
            final.update(json.loads((ckpt / "evaluation.json").read_text()))
            final["_metrics"] = metrics

    result = run_trial(quick(epochs=1), digits, report=grab)
    assert final["test"] == json.loads(json.dumps(result["test"]))
    assert final["_metrics"]["test_accuracy_b3"] == result["test"][1]["accuracy"]


class _FixedModel:
    def __init__(self, probs):
        self.probs = np.asarray(probs, dtype=np.float32)

    def predict(self, x, batch_size=None, verbose=0):
        return self.probs


def test_evaluate_counts_exactly():
    # 3 classes; true labels 0,0,1,2 ; predictions 0,1,1,1
    probs = [[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.7, 0.2], [0.2, 0.5, 0.3]]
    y = np.array([0, 0, 1, 2])
    out = evaluate(_FixedModel(probs), np.zeros((4, 28, 28, 1)), y, 3, writers=np.array(["w1", "w1", "w2", "w2"]))
    assert out["accuracy"] == 0.5
    assert out["per_class_accuracy"] == [0.5, 1.0, 0.0]
    assert out["balanced_accuracy"] == pytest.approx(0.5)
    assert out["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert out["loss"] == pytest.approx(-np.mean(np.log([0.8, 0.3, 0.7, 0.3])), rel=1e-6)
    assert out["per_writer"] == {"w1": [1, 2], "w2": [1, 2]}


def test_class_absent_from_test_is_not_counted_in_balanced_accuracy():
    out = evaluate(_FixedModel([[0.9, 0.1, 0.0]] * 2), np.zeros((2, 28, 28, 1)), np.array([0, 0]), 3)
    assert out["per_class_accuracy"] == [1.0, None, None] and out["balanced_accuracy"] == 1.0


@pytest.mark.slow
@pytest.mark.realdata
def test_basic_on_real_letters_one_epoch(femnist_dir):
    """The reference CNN on real handwriting (femnist-letters, not EMNIST), one epoch on all of train.

    The issue asks for >= 85% on EMNIST-letters after one epoch; EMNIST is not available here.
    femnist-letters' letters are smaller and thinner and it has 7x fewer images: measured here, seed 0,
    one epoch gives 67.2% clean test accuracy (15.9% at k=5), so the floor is 60%.
    """
    from hwclf.data import load_dataset

    data = load_dataset("femnist-letters", femnist_dir)
    cfg = TrialConfig(dataset="femnist-letters", arch="basic", blur=0, seed=0, epochs=1, test_blur=(0, 5))
    result = run_trial(cfg, data)
    clean, blurred = result["test"]
    assert clean["accuracy"] > 0.60, clean["accuracy"]
    assert blurred["accuracy"] < clean["accuracy"]  # blur hurts a model trained on clean letters
    writers = clean["per_writer"]
    assert len(writers) == 137 and sum(t for _, t in writers.values()) == 5034


def test_on_jax_trials_share_a_gpu_instead_of_preallocating_it(monkeypatch):
    """JAX takes 75% of a GPU at its first op unless told otherwise: with several trials per GPU
    (gpus_per_trial < 1) the second trial would run out of memory. TF's equivalent is memory growth."""
    import keras

    from hwclf.trial import configure_backend

    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    configure_backend(1)
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
