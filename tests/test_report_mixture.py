"""Blur mixtures on the train-blur axis in the report: parsing, tables, the "Is one robust model enough?" section,
and the words for the classes (letters, digits). Fake sweeps with known numbers (test_report_fakes)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from hwclf.report import load_experiment, write_report
from hwclf.report import robust as R
from hwclf.report.stats import describe
from test_report_fakes import level, write_sweep, write_trial

MIX = "mix:0/5/10"
TRAIN = [0, 5, 10, MIX]
TEST = [0, 3, 5, 7, 10, 20]
SEEDS = [0, 1, 2]
# basic: explicit accuracies, test blur -> [seed 0, 1, 2]
BASIC = {
    0: {0: [0.80, 0.82, 0.83], 5: [0.50, 0.52, 0.55]},
    5: {5: [0.77, 0.79, 0.80]},
    10: {10: [0.61, 0.60, 0.66]},
    MIX: {0: [0.80, 0.81, 0.83], 3: [0.78, 0.79, 0.80], 5: [0.74, 0.75, 0.77], 7: [0.70, 0.71, 0.73],
          10: [0.60, 0.62, 0.63], 20: [0.30, 0.33, 0.31]},
}


def acc(arch, b, k, s) -> float:
    if arch == "basic" and k in BASIC.get(b, {}):
        return BASIC[b][k][s]
    centre = 5 if b == MIX else b
    return round(max(0.05, 0.85 - 0.03 * abs(k - centre) - 0.002 * k + 0.01 * s), 4)


def make_mixture(exp, *, dataset="femnist-letters", classes=("A", "B", "C"), archs=("basic", "resnet")):
    write_sweep(exp, archs=list(archs), train_blur=TRAIN, seeds=SEEDS, test_blur=TEST, dataset=dataset,
                classes=classes)
    for a in archs:
        for b in TRAIN:
            for s in SEEDS:
                write_trial(exp, a, b, s, [level(k, acc(a, b, k, s), classes=classes) for k in TEST],
                            test_blur=TEST, dataset=dataset, classes=classes)
    return exp


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    exp = make_mixture(tmp_path_factory.mktemp("mix") / "study")
    return exp, write_report(str(exp), quiet=True).parent


def test_mixture_trial_directories_parse_without_params(tmp_path):
    exp = make_mixture(tmp_path / "study", archs=("basic_se",))
    for d in exp.glob("*-bmix0_5_10-*"):
        (d / "params.json").unlink()
        for ev in d.glob("checkpoint_*/evaluation.json"):
            ev.unlink()  # the cell must now come from the directory name alone
    (exp / "hwclf-sweep.json").unlink()
    e = load_experiment(str(exp))
    assert e.train_blurs == [0, 5, 10, MIX]  # the mixture after the plain levels
    assert {t.cell for t in e.trials if t.train_blur == MIX} == {("basic_se", MIX, s) for s in SEEDS}


def test_tables_show_the_canonical_mixture_and_no_matched_value(mixed):
    _, out = mixed
    trials = pd.read_csv(out / "trials.csv")
    assert list(dict.fromkeys(trials["train_blur"])) == ["0", "5", "10", MIX]
    summary = pd.read_csv(out / "summary.csv")
    row = summary[(summary["arch"] == "basic") & (summary["train_blur"] == MIX)].iloc[0]
    assert np.isnan(row["matched_accuracy_mean"]) and np.isnan(row["matched_loss_mean"])
    assert row["clean_accuracy_mean"] == pytest.approx(np.mean(BASIC[MIX][0]))
    matrix = pd.read_csv(out / "matrix.csv")
    m = matrix[(matrix["arch"] == "basic") & (matrix["train_blur"] == MIX) & (matrix["test_blur"] == 7)].iloc[0]
    assert m["mean"] == pytest.approx(np.mean(BASIC[MIX][7])) and m["n"] == 3
    parquet = pd.read_parquet(out / "trials.parquet")
    assert MIX in set(parquet["train_blur"]) and "5" in set(parquet["train_blur"])
    md = (out / "report.md").read_text()
    assert "| basic | mix 0/5/10 | 3/3 |" in md  # summary row, label for people
    assert "matched value, —" in md


def test_robust_table_numbers_and_where_each_level_lies(mixed):
    _, out = mixed
    rob = pd.read_csv(out / "robust.csv")
    b = rob[rob["arch"] == "basic"].set_index("test_blur")
    assert dict(b["where"]) == {0: "inside", 3: "between", 5: "inside", 7: "between", 10: "inside", 20: "beyond"}
    d = describe(BASIC[MIX][5])
    assert (b.loc[5, "mixture_mean"], b.loc[5, "mixture_ci_low"], b.loc[5, "mixture_ci_high"]) == pytest.approx(
        (d.mean, d.ci_low, d.ci_high))
    assert b.loc[5, "matched_mean"] == pytest.approx(np.mean(BASIC[5][5]))
    assert b.loc[5, "vs_matched_p"] == pytest.approx(st.ttest_rel(BASIC[MIX][5], BASIC[5][5]).pvalue)
    assert b.loc[5, "vs_matched_verdict"] == "exceeds"
    assert b.loc[5, "vs_clean_p"] == pytest.approx(st.ttest_rel(BASIC[MIX][5], BASIC[0][5]).pvalue)
    for k in (3, 7, 20):  # no model trained there
        assert b.loc[k, "matched_n"] == 0 and np.isnan(b.loc[k, "vs_matched_p"])
    assert b.loc[0, "vs_matched_verdict"] == b.loc[10, "vs_matched_verdict"] == "not_distinguishable"
    assert R.where(2, (5, 10)) == "below"


def _conclusions(out) -> list:
    body = (out / "report.md").read_text().split("## Conclusions", 1)[1].split("## Tables", 1)[0]
    return [line[2:] for line in body.splitlines() if line.startswith("- ")]


def test_robust_conclusion_says_where_the_mixture_is_within_the_seed_spread(mixed):
    _, out = mixed
    (text,) = [c for c in _conclusions(out) if c.startswith("basic, one model trained on mix 0/5/10")]
    assert text.startswith("basic, one model trained on mix 0/5/10 against the model trained at each test blur: "
                           "within the seed spread of it at test blur 0 and 10; below it at 5; no model trained at "
                           "3, 7 and 20 to compare with. basic, mix 0/5/10: ")
    p5 = st.ttest_rel(BASIC[MIX][5], BASIC[5][5]).pvalue
    assert R.ITEM_DIFF.format(k=5, where="trained on", diff="3.3", side="below", mix="75.3", matched="78.7",
                              p=f"p = {p5:.3f}") in text
    d7 = describe(BASIC[MIX][7])
    clean7 = R.ITEM_NONE_CLEAN.format(clean=f"{100 * np.mean([acc('basic', 0, 7, s) for s in SEEDS]):.1f}")
    assert R.ITEM_NONE.format(k=7, where="not trained on, between its levels", mix="71.3",
                              ci=f"95% CI [{100 * d7.ci_low:.1f}, {100 * d7.ci_high:.1f}]", clean=clean7) in text
    assert "at k=20 (not trained on, beyond its largest level)" in text
    md = (out / "report.md").read_text()
    assert "### Is one robust model enough?" in md and "| basic | mix 0/5/10 | 7 | between its levels (interpolation) |" in md


def test_mixture_sorts_after_plain_levels_in_figures_and_heatmaps(mixed):
    _, out = mixed
    for name in ("robust.png", "heatmaps.png", "accuracy_vs_blur.png", "learning_curves.png"):
        assert (out / name).stat().st_size > 10_000, name


def test_no_robust_section_without_a_mixture(tmp_path, fast_figures):
    from test_report_fakes import make_known

    out = write_report(str(make_known(tmp_path / "study")), quiet=True).parent
    assert not (out / "robust.csv").exists() and not (out / "robust.png").exists()
    assert "Is one robust model enough?" not in (out / "report.md").read_text()


def test_digits_report_speaks_of_digits_not_letters(tmp_path, fast_figures):
    exp = make_mixture(tmp_path / "digits-study", dataset="digits", classes=("0", "1", "2"), archs=("basic",))
    # clean-trained models lose accuracy on blurred tests: the per-class sections have something to say
    md = (write_report(str(exp), quiet=True).parent / "report.md").read_text()
    assert "### Digits hurt most by blur" in md and "the digits that lose most" in md
    words = re.sub(r"per_letter\.(png|csv)|letters_hurt\.csv", "", md)  # file names stay as documented
    assert "letter" not in words.lower()


def test_robust_table_accuracy_intervals_stay_in_0_1(tmp_path, fast_figures):
    """A clean model near chance at a strong blur has a t-interval reaching below 0: the table cuts it."""
    from hwclf.report.robust import _stats

    near_zero = _stats("clean", [0.21, 0.02])  # two seeds, as a clean model at k=5 on femnist-letters
    assert near_zero["clean_ci_low"] == 0.0 and near_zero["clean_ci_high"] <= 1.0
    near_one = _stats("mixture", [0.999, 0.95])
    assert near_one["mixture_ci_high"] == 1.0
