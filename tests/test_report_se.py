"""The "What the Squeeze-and-Excitation block changes" section: each SE twin against its plain net, paired over
seeds, Holm within the family, near-chance settings left untested. Fake sweeps with known numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from hwclf.report import write_report
from hwclf.report.stats import holm
from test_report_fakes import level, write_sweep, write_trial

MIX = "mix:0/5/10"
TRAIN = [0, 5, MIX]
TEST = [0, 5, 10]
SEEDS = [0, 1, 2]
# 3 classes: chance 33.3 %, "near chance" below 40 % (a tenth of the way from chance to 100 %)
PLAIN = {  # (train blur, test blur) -> [seed 0, 1, 2]
    (0, 0): [0.80, 0.82, 0.84], (0, 5): [0.50, 0.56, 0.52], (0, 10): [0.34, 0.36, 0.35],
    (5, 0): [0.60, 0.62, 0.61], (5, 5): [0.78, 0.80, 0.79], (5, 10): [0.50, 0.52, 0.51],
    (MIX, 0): [0.79, 0.80, 0.81], (MIX, 5): [0.77, 0.78, 0.76], (MIX, 10): [0.70, 0.71, 0.72],
}
# the twin: far ahead at matched 5 (+5.3, tight), a little behind on the mixture at 10, near chance where the plain
# net is, otherwise the same give or take noise
TWIN = dict(PLAIN)
TWIN.update({(5, 5): [0.83, 0.86, 0.84], (MIX, 10): [0.68, 0.70, 0.70], (0, 0): [0.81, 0.81, 0.85],
             (0, 10): [0.36, 0.35, 0.37], (0, 5): [0.51, 0.55, 0.53]})


def make_study(exp, *, archs=("basic", "basic_se"), seeds=SEEDS, twin_seeds=None):
    write_sweep(exp, archs=list(archs), train_blur=TRAIN, seeds=list(seeds), test_blur=TEST)
    for a in archs:
        table = TWIN if a.endswith("_se") else PLAIN
        for b in TRAIN:
            for s in (twin_seeds if a.endswith("_se") and twin_seeds is not None else seeds):
                write_trial(exp, a, b, s, [level(k, table[(b, k)][s]) for k in TEST], test_blur=TEST)
    return exp


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    exp = make_study(tmp_path_factory.mktemp("se") / "study")
    return write_report(str(exp), quiet=True).parent


def test_each_setting_is_the_twin_minus_the_plain_net_paired_over_seeds(report):
    se = pd.read_csv(report / "se.csv")
    # matched 0 and 5, clean-trained at 5 and 10, the mixture at 0, 5 and 10 (its range): 7 settings
    assert len(se) == 7 and set(se["twin"]) == {"basic_se"} and set(se["plain"]) == {"basic"}
    row = se[(se["setting"] == "matched") & (se["train_blur"] == "5")].iloc[0]
    a, b = TWIN[(5, 5)], PLAIN[(5, 5)]
    assert row["diff"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert row["p"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert row["verdict"] == "exceeds" and row["n"] == 3


def test_a_setting_where_both_are_near_chance_is_shown_but_not_tested(report):
    se = pd.read_csv(report / "se.csv")
    row = se[(se["setting"] == "clean-trained") & (se["test_blur"] == 10)].iloc[0]
    assert row["verdict"] == "near chance" and np.isnan(row["p"]) and np.isnan(row["p_holm"])
    tested = se[se["p"].notna()]
    assert len(tested) == 6  # Holm's family leaves the guessers out
    assert list(tested["p_holm"]) == pytest.approx(holm(list(tested["p"])))


def test_the_section_says_where_the_twin_is_ahead_and_what_holm_keeps(report):
    md = (report / "report.md").read_text()
    assert "### What the Squeeze-and-Excitation block changes" in md
    se = pd.read_csv(report / "se.csv").set_index(["setting", "test_blur"])
    p5, h5 = se.loc[("matched", 5), "p"], se.loc[("matched", 5), "p_holm"]
    assert h5 < 0.05  # the +5.3 lead survives the correction
    assert (f"basic_se against basic (the same net with SE blocks, trained the same way), paired over seeds: ahead "
            f"when trained and tested at blur 5 (+5.3 points, 95% CI [") in md
    assert f"p = {p5:.3f})" in md or "p < 0.001)" in md
    assert "not tested in the 1 settings where both are near chance" not in md  # one setting: singular wording
    assert "not tested when both are near chance (trained clean, tested at blur 10)" in md
    assert "Holm's correction over the 6 tests of this family keeps trained and tested at blur 5 (adjusted" in md
    assert (report / "se.png").stat().st_size > 10_000


def test_without_a_twin_on_the_grid_there_is_no_section(tmp_path):
    exp = make_study(tmp_path / "study", archs=("basic", "resnet"))
    out = write_report(str(exp), quiet=True).parent
    assert not (out / "se.csv").exists() and not (out / "se.png").exists()
    assert "Squeeze-and-Excitation block changes" not in (out / "report.md").read_text()


def test_two_seeds_give_a_difference_but_no_verdict(tmp_path):
    exp = make_study(tmp_path / "study", seeds=[0, 1])
    out = write_report(str(exp), quiet=True).parent
    se = pd.read_csv(out / "se.csv")
    assert set(se.loc[se["verdict"] != "near chance", "verdict"]) == {"too_few"}
    assert se["p"].isna().all()
    md = (out / "report.md").read_text()
    assert "too few paired seeds to tell in 6 settings (at least 3 needed)" in md
    assert "Holm's correction over" not in md.split("### What the Squeeze")[1].split("###")[0]


def test_while_the_twin_has_fewer_seeds_both_means_are_over_the_seeds_both_have(tmp_path):
    exp = make_study(tmp_path / "study", twin_seeds=[0])  # the plain net has seeds 0-2, the twin only seed 0
    out = write_report(str(exp), quiet=True).parent
    se = pd.read_csv(out / "se.csv")
    row = se[(se["setting"] == "matched") & (se["test_blur"] == 5)].iloc[0]
    assert row["n"] == 1 and row["verdict"] == "too_few"
    assert row["plain_mean"] == pytest.approx(PLAIN[(5, 5)][0]) and row["twin_mean"] == pytest.approx(TWIN[(5, 5)][0])
    assert row["twin_mean"] - row["plain_mean"] == pytest.approx(row["diff"])
    md = (out / "report.md").read_text()
    assert "| basic_se vs basic | trained and tested at blur 5 | 1 | 78.0 | 83.0 | +5.0 (n=1: no CI) | n=1: no test |" in md
