"""The report: numbers, sentences, partial results and errors, on hand-built experiments with known numbers
(see test_report_fakes.make_known for the values)."""

from __future__ import annotations

import html
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from hwclf.errors import UserError
from hwclf.report import load_experiment, tidy_table, write_report
from hwclf.report import conclude as C
from hwclf.report.stats import EXCEEDS, NOT_DISTINGUISHABLE, TOO_FEW, describe, holm, paired
from hwclf.report.tables import TIDY_COLUMNS
from test_report_fakes import level, make_known, write_sweep, write_trial

T975_2 = 4.302652729911275  # t_{0.975, 2}


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    exp = make_known(tmp_path_factory.mktemp("known") / "study")
    html = write_report(str(exp), quiet=True)
    return exp, html.parent


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    exp = make_known(tmp_path_factory.mktemp("partial") / "study", fail={("basic", 5, 2)},
                     skip={("resnet", 5, 1)}, incomplete={("mobilenet", 5, 0)})
    html = write_report(str(exp), quiet=True)
    return exp, html.parent


def _conclusions(out) -> list:
    md = (out / "report.md").read_text()
    body = md.split("## Conclusions", 1)[1].split("## Tables", 1)[0]
    return [html.unescape(line[2:]) for line in body.splitlines() if line.startswith("- ")]  # md writes < as &lt;


# --- stats -------------------------------------------------------------------------------------------------

def test_describe_uses_the_t_distribution():
    d = describe([0.80, 0.82, 0.84])
    assert d.n == 3 and d.mean == pytest.approx(0.82) and d.std == pytest.approx(0.02)
    assert d.half == pytest.approx(T975_2 * 0.02 / math.sqrt(3))
    assert (d.ci_low, d.ci_high) == pytest.approx((0.82 - d.half, 0.82 + d.half))


def test_one_value_has_no_std_or_ci_and_nan_is_left_out():
    d = describe([0.9, float("nan")])
    assert d.n == 1 and d.mean == 0.9 and math.isnan(d.std) and math.isnan(d.half) and math.isnan(d.ci_low)
    assert describe([]).n == 0 and math.isnan(describe([]).mean)


def test_paired_verdicts():
    better = paired([0.85, 0.86, 0.87], [0.80, 0.80, 0.81])
    assert better.verdict == EXCEEDS and better.n == 3
    assert better.diff_mean == pytest.approx(0.17 / 3)
    assert better.p == pytest.approx(st.ttest_rel([0.85, 0.86, 0.87], [0.80, 0.80, 0.81]).pvalue)
    same = paired([0.90, 0.93, 0.91], [0.91, 0.91, 0.91])
    assert same.verdict == NOT_DISTINGUISHABLE and same.p == pytest.approx(0.742, abs=5e-4)
    assert paired([0.9, 0.8], [0.1, 0.2]).verdict == TOO_FEW
    assert paired([0.9, 0.8, 0.7], [0.8, 0.7, 0.6]).verdict == EXCEEDS  # constant lead: p = 0, not NaN
    assert paired([0.5, 0.6, 0.7], [0.5, 0.6, 0.7]).p == 1.0


def test_holm_steps_down_and_keeps_order():
    # by hand: sorted 0.003, 0.048, 0.5, 0.9 (m = 4) -> 4*0.003, 3*0.048, min(1, 2*0.5), max(1, 1*0.9)
    adj = holm([0.048, 0.003, 0.5, 0.9, float("nan")])
    assert adj[:4] == pytest.approx([0.144, 0.012, 1.0, 1.0]) and math.isnan(adj[4])
    assert holm([0.01, 0.04]) == pytest.approx([0.02, 0.04])  # the larger one is not inflated past itself


# --- tables ------------------------------------------------------------------------------------------------

def test_tidy_table_one_row_per_trial_and_test_level(known):
    exp, out = known
    df = pd.read_csv(out / "trials.csv")
    assert list(df.columns) == TIDY_COLUMNS
    assert len(df) == 18 * 3 and (df["status"] == "complete").all()
    row = df[(df.arch == "basic") & (df.train_blur == 0) & (df.seed == 1) & (df.test_blur == 10)].iloc[0]
    assert row.accuracy == 0.35 and row.loss == pytest.approx(0.65) and row.epochs == 3 and row.evaluated_epoch == 3
    assert row.wall_time_s == 140.2 and row.train_time_s == 123.4 and row.trial.startswith("basic-b0-s1-")
    pq = pd.read_parquet(out / "trials.parquet")
    assert list(pq.columns) == TIDY_COLUMNS and len(pq) == len(df)
    # usable on its own
    assert tidy_table(load_experiment(exp)).shape == df.shape


def test_summary_mean_std_and_t_ci(known):
    _, out = known
    s = pd.read_csv(out / "summary.csv")
    r = s[(s.arch == "basic") & (s.train_blur == 0)].iloc[0]
    assert (r.n, r.expected) == (3, 3) and r.n_label == "3/3"
    assert r.clean_accuracy_mean == pytest.approx(0.82) and r.clean_accuracy_std == pytest.approx(0.02)
    assert r.clean_accuracy_ci95 == pytest.approx(T975_2 * 0.02 / math.sqrt(3))
    assert r.clean_accuracy_ci_low == pytest.approx(0.82 - T975_2 * 0.02 / math.sqrt(3))
    m = s[(s.arch == "basic") & (s.train_blur == 5)].iloc[0]
    assert m.matched_accuracy_mean == pytest.approx(0.72) and m.matched_loss_mean == pytest.approx(0.28)
    assert m.clean_balanced_accuracy_mean == pytest.approx(0.80)
    md = (out / "summary.md").read_text()
    assert "| basic | 0 | 3/3 | 82.0 ± 2.0 % [77.0, 87.0] |" in md


def test_matrix(known):
    _, out = known
    m = pd.read_csv(out / "matrix.csv")
    assert len(m) == 3 * 2 * 3
    r = m[(m.arch == "basic") & (m.train_blur == 0) & (m.test_blur == 10)].iloc[0]
    assert (r.n, r["mean"], r["std"]) == (3, pytest.approx(0.35), pytest.approx(0.05))
    assert r.ci95 == pytest.approx(T975_2 * 0.05 / math.sqrt(3))


def test_per_letter_letters_hurt_and_confusions(known):
    _, out = known
    pl = pd.read_csv(out / "per_letter.csv")
    b = pl[(pl.arch == "basic") & (pl.train_blur == 0) & (pl.test_blur == 5) & (pl["class"] == "B")].iloc[0]
    assert b.accuracy == pytest.approx(0.52) and b.n == 3
    hurt = pd.read_csv(out / "letters_hurt.csv")
    top = hurt[(hurt.arch == "(all)") & (hurt.test_blur == 5)].sort_values("rank")
    assert list(top["class"]) == ["B", "A", "C"]
    assert top.iloc[0]["drop"] == pytest.approx((0.82 + 0.91333333 + 0.91) / 3 - (0.62 + 0.71 + 0.66) / 3 + 0.1)
    conf = pd.read_csv(out / "confusions.csv")
    top = conf[(conf.arch == "(all)") & (conf.test_blur == 5)].sort_values("rank")
    assert list(zip(top["true"], top["predicted"], top["count"])) == [("B", "C", 393), ("A", "B", 258), ("C", "A", 258)]


def test_writers_table(known):
    _, out = known
    w = pd.read_csv(out / "writers.csv")
    r = w[(w.arch == "resnet") & (w.train_blur == 0) & (w.test_blur == 0)].iloc[0]
    # w4 (3 images) is below the 5-image minimum; w1..w3: 0.9, 0.8, 0.5 with seeds pooled
    assert (r.n_writers, r.n_seeds, r.min_images) == (3, 3, 5)
    assert r["mean"] == pytest.approx(2.2 / 3)
    assert (r.q25, r.q50, r.q75) == (pytest.approx(0.65), pytest.approx(0.8), pytest.approx(0.85))


def test_recovery_table(known):
    _, out = known
    r = pd.read_csv(out / "recovery.csv").set_index("arch")
    assert r.loc["basic", "gain"] == pytest.approx(0.10) and r.loc["basic", "loss"] == pytest.approx(0.20)
    assert r.loc["basic", "fraction"] == pytest.approx(0.5)
    assert r.loc["resnet", "fraction"] == pytest.approx(0.15 / (0.91333333 - 0.71))


# --- conclusions -------------------------------------------------------------------------------------------

EXPECTED = [
    "Trained and tested at blur 0: best is resnet with 91.3 % (95% CI [87.5, 95.1], n=3); not distinguishable from "
    "mobilenet (p = 0.742; difference +0.3 points, 95% CI [−3.5, +4.1], paired over 3 seeds).",
    "Trained and tested at blur 5: best is resnet with 86.0 % (95% CI [83.5, 88.5], n=3); its lead over mobilenet "
    "(+5.7 points, 95% CI [+4.2, +7.1], paired over 3 seeds) exceeds the seed spread (paired t-test, p = 0.003).",
    "Trained clean, tested at blur 5: best is resnet with 71.0 % (95% CI [68.5, 73.5], n=3); its lead over mobilenet "
    "(+5.0 points, 95% CI [+2.5, +7.5], paired over 3 seeds) exceeds the seed spread (paired t-test, p = 0.013).",
    "Trained clean, tested at blur 10: best is resnet with 55.0 % (95% CI [42.6, 67.4], n=3); not distinguishable "
    "from mobilenet (p = 0.077; difference +9.0 points, 95% CI [−2.4, +20.4], paired over 3 seeds).",
    "basic: training at the test blur instead of clean recovers +10.0 points at blur 5 (50 % of the 20.0-point loss "
    "of the clean-trained model).",
    "resnet: training at the test blur instead of clean recovers +15.0 points at blur 5 (74 % of the 20.3-point loss "
    "of the clean-trained model).",
    "mobilenet: training at the test blur instead of clean recovers +14.3 points at blur 5 (57 % of the 25.0-point "
    "loss of the clean-trained model).",
    "basic: on clean images, models trained with blur score 80.0 % (train blur 5, −2.0 points), against 82.0 % for "
    "the clean-trained model.",
    "basic: the best train blur for each test blur is test 0 → train 0 (82.0 %), test 5 → train 5 (72.0 %), "
    "test 10 → train 5 (52.0 %).",
    "basic: below half of clean accuracy (41.0 %): first at test blur 10, where the clean-trained model scores "
    "35.0 %.",
    "resnet: below half of clean accuracy (45.7 %): never within the tested range (the clean-trained model still "
    "scores 55.0 % at test blur 10).",
    "At test blur 5, the letters that lose most (clean-trained models, all architectures pooled) are B (−31.8 "
    "points), A (−16.8 points) and C (−16.8 points); the most frequent confusions are B→C (393), A→B (258) and "
    "C→A (258).",
    "Writer spread (resnet trained clean, writers with ≥ 5 test images): the middle half of writers scores "
    "65.0–85.0 % on clean images (IQR 20.0 points) and 30.0–45.0 % at test blur 10 (IQR 15.0 points).",
    "Multiple comparisons: 4 of the settings above were tested against their runner-up; if no architecture "
    "differed in any of them, 0.2 of the 4 tests would still pass p < 0.05 on average. Holm's correction for the 4 "
    "tests keeps the lead of resnet "
    "over mobilenet when trained and tested at blur 5 (adjusted p = 0.014) and the lead of resnet over mobilenet "
    "when trained clean, tested at blur 5 (adjusted p = 0.039).",
]


@pytest.mark.parametrize("sentence", EXPECTED, ids=range(len(EXPECTED)))
def test_conclusion_sentences(known, sentence):
    assert sentence in _conclusions(known[1])


def test_sentences_come_from_the_templates(known):
    """The literal sentences above are the templates filled in (so editing a template breaks this test)."""
    assert EXPECTED[1] == C.BEST.format(
        setting=C.SETTING_MATCHED.format(k=5), best="resnet",
        value=C.VALUE.format(mean="86.0", ci="[83.5, 88.5]", n=3),
        verdict=C.VERDICT_EXCEEDS.format(runner="mobilenet", diff="+5.7", ci="[+4.2, +7.1]", n=3, p="p = 0.003"))
    assert EXPECTED[10] == C.HALF_NEVER.format(arch="resnet", half="45.7", acc="55.0", k=10)
    assert EXPECTED[9] == C.HALF_AT.format(arch="basic", half="41.0", k=10, acc="35.0")
    # the CI printed in the sentence is the t-based one computed independently here
    a = np.array([0.85, 0.86, 0.87])
    half = st.t.ppf(0.975, 2) * a.std(ddof=1) / math.sqrt(3)
    assert f"[{100 * (a.mean() - half):.1f}, {100 * (a.mean() + half):.1f}]" == "[83.5, 88.5]"


def test_a_lone_lead_among_many_tests_is_called_a_hint():
    """The femnist-blur case: one p = 0.048 among 12 settings does not survive Holm's correction."""
    lead = paired([0.860, 0.858, 0.860], [0.850, 0.853, 0.848])
    assert lead.verdict == EXCEEDS and 0.01 < lead.p < 0.05
    same = paired([0.90, 0.93, 0.91], [0.91, 0.91, 0.91])
    tests = [C.LeadTest("Trained and tested at blur 20", "resnet_se", "resnet", lead)] + [
        C.LeadTest(f"Trained clean, tested at blur {k}", "basic", "basic_se", same) for k in (3, 5, 7, 10, 15, 20, 30)]
    text = C.multiple_sentence(tests)
    assert text == C.MULTIPLE.format(n=8, alpha=0.05, expected="0.4", kept=C.MULTIPLE_NONE_ONE.format(
        alpha=0.05, p=f"p = {min(1.0, 8 * lead.p):.3f}"))
    assert "read it as a hint, not a finding" in text
    assert C.multiple_sentence(tests[:1]) is None  # one test: nothing to correct for
    assert C.multiple_sentence(tests[1:]) is None  # no lead: nothing to correct


def test_no_architecture_is_ranked_where_all_of_them_guess(tmp_path, fast_figures):
    """3 classes: chance 33.3 %, a tenth of the way to 100 % is 40.0 %. At blur 10 every model is below it, so
    the setting gets no "best" and no test (nor a place in Holm's family); at blur 5 the 41 % model is ranked."""
    exp = tmp_path / "guess"
    write_sweep(exp, archs=["basic", "resnet"], train_blur=[0], seeds=[0, 1, 2], test_blur=[0, 5, 10])
    for s in range(3):
        write_trial(exp, "basic", 0, s, [level(0, 0.90 + s / 100), level(5, 0.37), level(10, 0.36)])
        write_trial(exp, "resnet", 0, s, [level(0, 0.92 + s / 100), level(5, 0.41 + s / 100), level(10, 0.39)])
    cs = _conclusions(write_report(str(exp), quiet=True).parent)
    near = [c for c in cs if c.startswith("Trained clean, tested at blur 10")]
    assert near == [C.NEAR_CHANCE.format(setting="Trained clean, tested at blur 10", best="resnet",
                                         value="39.0 % (95% CI [39.0, 39.0], n=3)", chance="33.3", n_classes=3)]
    assert any(c.startswith("Trained clean, tested at blur 5: best is resnet with 42.0 %") for c in cs)
    assert any(c.startswith("Multiple comparisons: 2 of the settings above were tested") for c in cs)


def test_complete_study_has_no_partial_sentence(known):
    assert not any(s.startswith("Partial results") for s in _conclusions(known[1]))
    assert "All 18 trials of the grid completed." in (known[1] / "report.md").read_text()


# --- partial results ---------------------------------------------------------------------------------------

def test_failed_incomplete_and_missing_cells_are_kept(partial):
    exp, out = partial
    df = pd.read_csv(out / "trials.csv")
    assert len(df) == 18 * 3  # nothing dropped
    def status(a, b, s):
        return set(df[(df.arch == a) & (df.train_blur == b) & (df.seed == s)]["status"])
    assert status("basic", 5, 2) == {"failed"} and status("resnet", 5, 1) == {"missing"}
    assert status("mobilenet", 5, 0) == {"incomplete"}
    bad = df[df.status != "complete"]
    assert bad[["accuracy", "balanced_accuracy", "loss"]].isna().all().all() and len(bad) == 9
    assert bad[bad.status == "missing"]["trial"].isna().all()
    assert (bad[bad.status == "failed"]["trial"].str.startswith("basic-b5-s2-")).all()
    assert bad[bad.status == "incomplete"]["epochs"].iloc[0] == 2  # result.json reached epoch 2 of 3


def test_partial_summary_cells_say_n_of_expected(partial):
    _, out = partial
    s = pd.read_csv(out / "summary.csv")
    for arch in ("basic", "resnet", "mobilenet"):
        r = s[(s.arch == arch) & (s.train_blur == 5)].iloc[0]
        assert (r.n, r.expected, bool(r.partial), r.n_label) == (2, 3, True, "2/3 ⚠")
    assert s[s.train_blur == 0]["n_label"].eq("3/3").all()
    r = s[(s.arch == "basic") & (s.train_blur == 5)].iloc[0]
    assert r.matched_accuracy_mean == pytest.approx(0.71)  # seeds 0 and 1 only
    assert r.matched_accuracy_ci95 == pytest.approx(st.t.ppf(0.975, 1) * np.std([0.70, 0.72], ddof=1) / math.sqrt(2))
    assert "| basic | 5 | 2/3 ⚠ |" in (out / "summary.md").read_text()


def test_partial_report_lists_the_trials_and_the_affected_conclusions(partial):
    _, out = partial
    md = (out / "report.md").read_text()
    missing = md.split("## Missing and failed trials", 1)[1]
    assert "| basic | 5 | 2 | failed | basic-b5-s2-" in missing and "ValueError: loss became NaN at epoch 2" in missing
    assert "| resnet | 5 | 1 | missing | — | no trial directory |" in missing
    assert "| mobilenet | 5 | 0 | incomplete | mobilenet-b5-s0-" in missing and "stopped after epoch 2" in missing
    assert "basic trained at blur 5 (n=2/3)" in missing
    cs = _conclusions(out)
    partial_sentence = [c for c in cs if c.startswith("Partial results")]
    assert partial_sentence == [
        "Partial results: basic trained at blur 5 (n=2/3), resnet trained at blur 5 (n=2/3) and mobilenet trained at "
        "blur 5 (n=2/3) have fewer complete seeds than planned; these conclusions rest on fewer seeds: best when "
        "trained and tested at blur 5, multiple comparisons, recovery for basic, recovery for resnet, recovery for "
        "mobilenet, clean-image "
        "cost for basic, best train blur for basic, clean-image cost for resnet, best train blur for resnet, "
        "clean-image cost for mobilenet and best train blur for mobilenet."]
    # resnet and mobilenet at blur 5 share only seed 2: no verdict, and the sentence is flagged
    assert ("Trained and tested at blur 5: best is resnet with 86.0 % (95% CI [73.3, 98.7], n=2); too few seeds to "
            "tell whether it beats mobilenet (paired seeds: 1, at least 3 needed; difference +6.0 points). ⚠") in cs
    # clean-trained comparisons use complete cells only: not flagged
    assert any(c.startswith("Trained clean, tested at blur 5") and not c.endswith("⚠") for c in cs)


def test_single_seed_says_ci_undefined(tmp_path):
    exp = make_known(tmp_path / "one", seeds=(0,))
    out = write_report(str(exp), quiet=True).parent
    md = (out / "summary.md").read_text()
    assert "| basic | 0 | 1/1 | 80.0 % (n=1: std and CI undefined) |" in md
    cs = _conclusions(out)
    assert ("Trained and tested at blur 0: best is mobilenet with 91.0 % (n=1: CI undefined); too few seeds to tell "
            "whether it beats resnet (paired seeds: 1, at least 3 needed; difference +1.0 points).") in cs
    s = pd.read_csv(out / "summary.csv")
    assert s["clean_accuracy_ci95"].isna().all() and s["clean_accuracy_std"].isna().all()


# --- inputs and errors -------------------------------------------------------------------------------------

def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def test_missing_directory(tmp_path):
    with pytest.raises(UserError) as e:
        write_report(str(tmp_path / "nope"))
    msg = _one_line(e)
    assert str(tmp_path / "nope") in msg and "no such directory" in msg


def test_foreign_directory(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError) as e:
        load_experiment(tmp_path)
    msg = _one_line(e)
    assert str(tmp_path) in msg and "not an hwclf experiment" in msg and "hwclf-sweep.json" in msg


def test_storage_directory_names_the_experiments(tmp_path):
    make_known(tmp_path / "study")
    with pytest.raises(UserError) as e:
        load_experiment(tmp_path)
    assert "it holds experiments: study" in _one_line(e)


def test_no_complete_trial(tmp_path):
    exp = tmp_path / "study"
    write_sweep(exp, archs=["basic"], train_blur=[0], seeds=[0, 1], test_blur=[0])
    write_trial(exp, "basic", 0, 0, status="failed")
    with pytest.raises(UserError) as e:
        write_report(str(exp))
    msg = _one_line(e)
    assert str(exp) in msg and "no complete trial" in msg and "1 failed, 1 missing" in msg
    assert not (exp / "report").exists()


def test_file_instead_of_directory(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("{}")
    with pytest.raises(UserError) as e:
        load_experiment(f)
    assert "is a file" in _one_line(e)


def test_without_sweep_file_the_grid_is_inferred_and_said(tmp_path, fast_figures):
    exp = make_known(tmp_path / "study", sweep=False, skip={("basic", 5, 2)})
    loaded = load_experiment(exp)
    assert loaded.grid_inferred and len(loaded.grid) == 18 and loaded.statuses[("basic", 5, 2)] == "missing"
    assert loaded.test_blurs == [0, 5, 10] and loaded.classes == ["A", "B", "C"]
    out = write_report(str(exp), quiet=True).parent
    md = (out / "report.md").read_text()
    assert "hwclf-sweep.json is missing: the grid was inferred from the trial directories" in md
    assert "| basic | 5 | 2/3 ⚠ |" in (out / "summary.md").read_text()
    assert "no sweep config: trial config of" in md


def test_uri_experiment_writes_to_the_current_directory(tmp_path, monkeypatch, fast_figures):
    exp = make_known(tmp_path / "study", writers=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    html = write_report(exp.as_uri(), quiet=True)
    assert html == work / "study-report" / "report.html" and html.exists()
    assert not (exp / "report").exists()
    assert not (html.parent / "writers.csv").exists()  # no writer ids: no writer table


def test_out_and_regeneration_are_atomic(tmp_path, monkeypatch, fast_figures):
    exp = make_known(tmp_path / "study")
    out = tmp_path / "out"
    html = write_report(str(exp), str(out), quiet=True)
    first = html.read_text()
    (out / "writers.png").unlink()
    html2 = write_report(str(exp), str(out), quiet=True)  # over an old report
    assert html2 == html and (out / "writers.png").exists()

    from hwclf.report import figures

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "heatmaps_figure", boom)
    with pytest.raises(KeyboardInterrupt):
        write_report(str(exp), str(out), quiet=True)
    assert html.read_text()[:200] == first[:200] and html.read_text().endswith("</html>\n")
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_stale_optional_outputs_are_removed(tmp_path, fast_figures):
    exp = make_known(tmp_path / "study", writers=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "writers.png").write_bytes(b"old")
    (out / "writers.csv").write_text("old")
    (out / "mine.txt").write_text("keep")
    write_report(str(exp), str(out), quiet=True)
    assert not (out / "writers.png").exists() and not (out / "writers.csv").exists()
    assert (out / "mine.txt").read_text() == "keep"


def test_duplicate_trial_dirs_prefer_the_complete_one(tmp_path):
    exp = make_known(tmp_path / "study")
    write_trial(exp, "basic", 0, 0, status="failed", trial_id="zzz_00009")
    loaded = load_experiment(exp)
    rec = next(t for t in loaded.trials if t.cell == ("basic", 0, 0))
    assert rec.status == "complete" and any("zzz_00009" in n for n in loaded.notes)
    assert [t.trial for t in loaded.unused_trials] == ["basic-b0-s0-zzz_00009"]


def test_progress_is_a_few_lines_on_stderr(tmp_path, capsys, fast_figures):
    exp = make_known(tmp_path / "study", writers=False)
    write_report(str(exp), str(tmp_path / "out"))
    cap = capsys.readouterr()
    assert cap.out == "" and 1 <= len(cap.err.splitlines()) <= 5


def test_report_never_imports_ray():
    import subprocess
    import sys

    code = ("import sys, hwclf.report, hwclf.report.figures, hwclf.report.document; "
            "assert not any(m == 'ray' or m.startswith('ray.') for m in sys.modules), 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


def test_copied_samples_png(known, tmp_path, fast_figures):
    exp, out = known
    assert not (out / "samples.png").exists()  # the known study has none
    shutil.copy(out / "heatmaps.png", exp / "samples.png")
    try:
        out2 = write_report(str(exp), str(tmp_path / "o"), quiet=True).parent
        assert (out2 / "samples.png").read_bytes() == (exp / "samples.png").read_bytes()
        md = (out2 / "report.md").read_text()
        assert md.index("samples.png") < md.index("accuracy_vs_blur.png")
    finally:
        (exp / "samples.png").unlink()


def test_lean_trials_without_per_class_writers_or_history(tmp_path):
    """Older or minimal evaluation.json files (no per-class data, confusion, writers or history) and a grid with
    no clean-trained model still give a report: the parts that need the missing data are simply left out."""
    exp = tmp_path / "lean"
    write_sweep(exp, archs=["basic", "resnet"], train_blur=[5, 10], seeds=[0, 1, 2], test_blur=[0, 5, 10])
    for a, bonus in (("basic", 0.0), ("resnet", 0.05)):
        for b in (5, 10):
            for s in range(3):
                tests = [{"test_blur": k, "accuracy": 0.7 + bonus - 0.01 * k + 0.01 * s, "balanced_accuracy": 0.7,
                          "loss": 0.5, "per_class_accuracy": None, "confusion": None, "per_writer": None}
                         for k in (0, 5, 10)]
                write_trial(exp, a, b, s, tests, hist=[])
    out = write_report(str(exp), quiet=True).parent
    names = {p.name for p in out.iterdir()}
    assert {"accuracy_vs_blur.png", "heatmaps.png", "report.html"} <= names
    assert not {"per_letter.png", "writers.png", "writers.csv", "learning_curves.png"} & names
    cs = _conclusions(out)
    assert any(c.startswith("Trained and tested at blur 10: best is resnet") for c in cs)
    assert not any(c.startswith("Trained clean") for c in cs)
    assert pd.read_csv(out / "trials.csv")["epochs"].isna().all()


def test_best_arch_ignores_levels_some_arch_lacks(tmp_path):
    """mobilenet has no model trained at blur 5 (its hardest level): averaging over what each arch has would
    crown it; comparing on the levels every arch has (blur 0) picks resnet."""
    from hwclf.report import compute

    exp = make_known(tmp_path / "study", skip={("mobilenet", 5, s) for s in range(3)})
    assert compute(load_experiment(exp)).best_arch == "resnet"


def test_reference_numbers_from_the_config_are_shown_beside_ours(tmp_path, fast_figures):
    ref = {"label": "original notebook (EMNIST)", "arch": "basic", "train_blur": 0,
           "accuracy": {"0": 0.9, "5": 0.7, "7": 0.5}}  # JSON keys are strings; 7 was not run here
    exp = make_known(tmp_path / "study", extra={"reference": ref})
    out = write_report(str(exp), quiet=True).parent
    table = pd.read_csv(out / "reference.csv")
    assert list(table["test_blur"]) == [0, 5, 7]
    row0 = table.iloc[0]
    assert row0["mean"] == pytest.approx(0.82) and row0["difference"] == pytest.approx(0.82 - 0.9)
    assert table.iloc[2]["n"] == 0 and np.isnan(table.iloc[2]["mean"])
    md = (out / "report.md").read_text()
    assert "Reference comparison" in md and "Reference: original notebook (EMNIST)" in md
    assert "| 0 | 90.0 | 82.0 ± 2.0 [" in md and "−8.0" in md


def test_no_reference_no_section(known):
    _, out = known
    assert not (out / "reference.csv").exists() and "Reference comparison" not in (out / "report.md").read_text()


def test_a_heatmap_cell_on_fewer_seeds_than_planned_says_so():
    from hwclf.report.figures import heatmap_cell_label

    assert heatmap_cell_label(73.14, 3, 3) == "73.1"
    assert heatmap_cell_label(73.14, 1, 3) == "73.1\nn=1"  # one seed must not read like a mean of three
    assert heatmap_cell_label(float("nan"), 0, 3) == "—"


def test_a_mixture_never_shares_the_blur_levels_colour_scale():
    """Learning curves: a mixture row must not read as one more blur level (it sat beside k = 30 in green)."""
    from matplotlib.colors import to_rgba

    from hwclf.report.figures import train_blur_styles

    styles = train_blur_styles([0, 5, 10, 20, 30, "mix:0/5/10", "mix:0/20"])
    level_colours = {to_rgba(styles[b]["color"]) for b in (0, 5, 10, 20, 30)}
    assert len(level_colours) == 5 and all(styles[b]["linestyle"] == "-" for b in (0, 5, 10, 20, 30))
    for m in ("mix:0/5/10", "mix:0/20"):
        assert styles[m]["linestyle"] == "--" and to_rgba(styles[m]["color"]) not in level_colours
    assert to_rgba(styles["mix:0/5/10"]["color"]) != to_rgba(styles["mix:0/20"]["color"])


def test_heatmaps_of_a_partial_study_render(known):
    """The real figure code on a grid with a cell resting on one seed."""
    from hwclf.report import figures
    from hwclf.report.load import load_experiment
    from hwclf.report.tables import matrix_table

    exp = load_experiment(str(known[0]))
    matrix = matrix_table(exp)
    matrix.loc[matrix.index[0], "n"] = 1
    png = figures.heatmaps_figure(exp, matrix)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
