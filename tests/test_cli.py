"""The `hwclf` command line: what a user sees, including one-line errors for their mistakes."""

from __future__ import annotations

import json

import pytest

from hwclf.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, message", [
    (["data", "verify", "--dataset", "mnist"], "dataset: unknown value 'mnist'; allowed: digits, emnist-letters, femnist-letters"),
    (["data", "preview", "--blur", "0,-5"], "--blur: '-5' is negative"),
    (["data", "preview", "--blur", "0,2.5"], "--blur: '2.5' is not a whole number"),
    (["data", "preview", "--blur", "a,b"], "--blur: 'a' is not a number"),
    (["data", "preview", "--out", "/proc/nope/x.png"], "--out /proc/nope/x.png: cannot"),
    (["data", "verify", "--dataset", "femnist-letters", "--data-dir", "/no/such/dir"], "--data-dir /no/such/dir: no such directory"),
    (["train", "--arch", "vgg"], "arch: unknown value 'vgg'; allowed: basic, basic_se, resnet, resnet_se, mobilenet, mobilenet_se"),
    (["train", "--test-blur", "0,x"], "--test-blur: 'x' is not a number"),
    (["report", "/no/such/experiment"], "/no/such/experiment"),
])
def test_user_mistakes_are_one_line_with_exit_code_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("hwclf: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["train", "--batch-size", "-1"], "--batch-size must be >= 1"),
    (["frobnicate"], "invalid choice"),
])
def test_argument_errors_exit_2_with_usage(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_data_verify_digits(capsys):
    code, out, _ = run(capsys, "data", "verify")
    assert code == 0
    assert "train 1,437  test 360" in out and "fingerprint  sha256:" in out


def test_preview_writes_a_png(capsys, tmp_path):
    code, out, _ = run(capsys, "data", "preview", "--blur", "0,3", "--out", str(tmp_path / "p.png"))
    assert code == 0 and (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_writes_metrics_json_and_resumes(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "train", "--arch", "basic", "--blur", "3", "--epochs", "1", "--out", str(out),
                          "--per-class", "40")
    assert code == 0 and f"wrote {out / 'evaluation.json'}" in stdout
    first = json.loads((out / "evaluation.json").read_text())
    assert [t["test_blur"] for t in first["test"]] == [0, 3]
    assert (out / "checkpoint" / "state.json").is_file()
    code, _, _ = run(capsys, "train", "--arch", "basic", "--blur", "3", "--epochs", "2", "--out", str(out),
                     "--per-class", "40", "--resume")
    second = json.loads((out / "evaluation.json").read_text())
    assert code == 0 and second["resumed_from_epoch"] == 1 and len(second["history"]) == 2


def test_models_table(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "| `resnet_se` |" in out and "| `basic` | 1,440,762 |" in out


def test_sweep_help_is_the_drivers(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--help"])
    assert e.value.code == 0 and "--preset" in capsys.readouterr().out
