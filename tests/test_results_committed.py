"""The committed studies in results/: tables consistent with each other and with the committed config.

CI does not rerun the studies (hours of CPU); it checks that what is committed hangs together: every
number in summary.csv and matrix.csv is the aggregate of trials.csv, the grid is the config's grid, the
report names the dataset fingerprint of the run, and the README gives the command that reproduces it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

RESULTS = Path(__file__).resolve().parents[1] / "results"
REPORTED = sorted(p.parent.parent for p in RESULTS.glob("*/report/trials.csv"))
# one sweep (its sweep.yaml beside the report), or a study run in parts from a preset and merged from the parts'
# records (records/<part>/, each with the sweep.yaml and hwclf-sweep.json of its run)
STUDIES = [d for d in REPORTED if (d / "sweep.yaml").is_file()]
MERGED = [d for d in REPORTED if not (d / "sweep.yaml").is_file() and any((d / "records").glob("*/sweep.yaml"))]


def test_there_are_committed_studies():
    assert {p.name for p in STUDIES} >= {"femnist-study1"}
    assert set(REPORTED) == set(STUDIES) | set(MERGED), "a report without the config(s) it ran with"


@pytest.fixture(params=STUDIES, ids=[p.name for p in STUDIES])
def study(request):
    d = request.param
    from hwclf.config import SweepConfig

    cfg = SweepConfig.from_yaml(d / "sweep.yaml")
    sweep = json.loads((d / "hwclf-sweep.json").read_text())
    trials = _canonical(pd.read_csv(d / "report" / "trials.csv"))
    return d, cfg, sweep, trials


def _canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Train blur as the config holds it (5, or "mix:0/5/10" for a mixture), whatever dtype the CSV gave."""
    from hwclf.report.load import blur_value

    return df.assign(train_blur=df["train_blur"].map(blur_value))


def _assert_config_is_the_recorded_one(cfg, sweep: dict) -> None:
    recorded, current = sweep["config"], json.loads(json.dumps(cfg.to_dict()))
    # Keys added to the config after a study ran take their defaults, which reproduce that study:
    # precision float32 (the only precision then), reuse_actors (results bit-identical either way, tested),
    # the constant learning rate without warm-up (the only schedule then), no row with its own epochs
    added = set(current) - set(recorded)
    assert added <= {"precision", "reuse_actors", "lr_schedule", "warmup_fraction", "epochs_by_train_blur"}
    assert {k: current[k] for k in added} == {k: v for k, v in {"precision": "float32", "lr_schedule": "constant",
                                               "warmup_fraction": 0.0, "reuse_actors": current["reuse_actors"],
                                               "epochs_by_train_blur": {}}.items()
                                               if k in added}
    assert {k: current[k] for k in recorded} == recorded, "sweep.yaml must be the config the sweep ran with"


def test_config_readme_and_fingerprint(study):
    d, cfg, sweep, _ = study
    assert cfg.name == d.name
    _assert_config_is_the_recorded_one(cfg, sweep)
    readme = (d / "README.md").read_text()
    assert f"python sweep/run.py --config results/{d.name}/sweep.yaml" in readme
    fingerprint = sweep["dataset"]["fingerprint"]
    assert fingerprint in (d / "report" / "report.md").read_text()
    assert sweep["finished_at"] and sweep["trials_complete"] == len(cfg.grid())
    if cfg.dataset == "femnist-letters":
        assert "FEMNIST" in readme and "not EMNIST" in readme


def test_trials_cover_the_grid_at_every_test_level(study):
    _, cfg, _, trials = study
    complete = trials[trials["status"] == "complete"]
    cells = {(r.arch, r.train_blur, int(r.seed)) for r in complete.itertuples()}
    assert cells == {(c["arch"], c["blur"], c["seed"]) for c in cfg.grid()}
    for _, g in complete.groupby(["arch", "train_blur", "seed"]):
        assert sorted(g["test_blur"].astype(int)) == sorted(cfg.test_blur)
    assert (complete["epochs"] == cfg.epochs).all()
    assert complete["accuracy"].between(0, 1).all() and complete["balanced_accuracy"].between(0, 1).all()


def _ci_half(values: np.ndarray) -> float:
    n = len(values)
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def test_summary_and_matrix_are_aggregates_of_the_trials(study):
    d, cfg, _, trials = study
    _assert_aggregates(d, cfg, trials)


def _assert_aggregates(d: Path, cfg, trials: pd.DataFrame) -> None:
    complete = trials[trials["status"] == "complete"]
    summary = _canonical(pd.read_csv(d / "report" / "summary.csv"))
    matrix = _canonical(pd.read_csv(d / "report" / "matrix.csv"))
    assert len(summary) == len(cfg.archs) * len(cfg.train_blur)
    for row in summary.itertuples():
        sub = complete[(complete["arch"] == row.arch) & (complete["train_blur"] == row.train_blur)]
        clean = sub.loc[sub["test_blur"] == 0, "accuracy"].to_numpy()
        matched = sub.loc[sub["test_blur"] == row.train_blur, "accuracy"].to_numpy()
        assert row.n == len(clean) == len(cfg.seeds)
        assert row.clean_accuracy_mean == pytest.approx(clean.mean(), abs=1e-9)
        assert row.clean_accuracy_std == pytest.approx(clean.std(ddof=1), abs=1e-9)
        assert row.clean_accuracy_ci95 == pytest.approx(_ci_half(clean), abs=1e-9)
        if len(matched):  # a mixture has no single train blur, so no matched value
            assert row.matched_accuracy_mean == pytest.approx(matched.mean(), abs=1e-9)
        else:
            assert np.isnan(row.matched_accuracy_mean)
    assert len(matrix) == len(cfg.archs) * len(cfg.train_blur) * len(cfg.test_blur)
    for row in matrix.itertuples():
        vals = complete[(complete["arch"] == row.arch) & (complete["train_blur"] == row.train_blur)
                        & (complete["test_blur"] == row.test_blur)]["accuracy"].to_numpy()
        assert row.n == len(vals) and row.mean == pytest.approx(vals.mean(), abs=1e-9)


def test_report_files_are_there_and_small(study):
    _assert_report_files(study[0])


def _assert_report_files(d: Path) -> None:
    for name in ("report.md", "report.html", "summary.csv", "summary.md", "matrix.csv", "accuracy_vs_blur.png",
                 "heatmaps.png", "learning_curves.png", "samples.png"):
        assert (d / "report" / name).is_file(), name
    # What is committed (raw Tune directories beside it are git-ignored and may exist locally)
    committed = [*(d / "report").rglob("*"), *(d / n for n in ("README.md", "sweep.yaml", "hwclf-sweep.json")),
                 *d.glob("investigat*"), *(d / "records").glob("*/*")]
    total = sum(p.stat().st_size for p in committed if p.is_file() and p.suffix != ".parquet")
    assert total < 8 * 2**20, f"{d.name}: {total / 2**20:.1f} MiB committed; keep results small"


@pytest.mark.realdata
def test_committed_fingerprint_is_the_data_here(study, femnist_dir):
    _, cfg, sweep, _ = study
    if cfg.dataset != "femnist-letters":
        pytest.skip("not a femnist-letters study")
    from hwclf.data import load_dataset

    assert load_dataset("femnist-letters", femnist_dir).fingerprint == sweep["dataset"]["fingerprint"]


def test_no_committed_accuracy_interval_leaves_0_1(study):
    """Every accuracy interval a committed study shows (summary and matrix) lies within [0, 1]."""
    _assert_intervals_within_0_1(study[0])


def _assert_intervals_within_0_1(d: Path) -> None:
    summary = pd.read_csv(d / "report" / "summary.csv")
    matrix = pd.read_csv(d / "report" / "matrix.csv")
    bounds = [summary[c] for c in summary.columns if "accuracy_ci_" in c] + [matrix["ci_low"], matrix["ci_high"]]
    for col in bounds:
        values = col.dropna()
        assert values.between(0, 1).all(), f"{d.name}: {col.name} leaves [0, 1]: {values[~values.between(0, 1)]}"


# --- a study run in parts from a preset (results/femnist-blur) --------------------------------------------

@pytest.fixture(params=MERGED, ids=[p.name for p in MERGED])
def merged(request):
    """(study dir, the preset it ran, [(part dir, part config, its hwclf-sweep.json)], trials of the report)."""
    from hwclf.config import SweepConfig
    from sweep.run import config_dir

    d = request.param
    preset = SweepConfig.from_yaml(config_dir() / f"{d.name}.yaml")
    parts = [(p, SweepConfig.from_yaml(p / "sweep.yaml"), json.loads((p / "hwclf-sweep.json").read_text()))
             for p in sorted((d / "records").glob("*/")) if (p / "sweep.yaml").is_file()]
    return d, preset, parts, _canonical(pd.read_csv(d / "report" / "trials.csv"))


# keys a part sets on the command line (what it runs, and where the data is); the recipe is the preset's
PART_KEYS = {"name", "archs", "seeds", "train_blur", "data_dir", "description", "epochs_by_train_blur"}


def test_every_part_ran_the_preset_recipe_and_the_readme_says_how(merged):
    d, preset, parts, trials = merged
    readme = (d / "README.md").read_text()
    report = (d / "report" / "report.md").read_text()
    want = json.loads(json.dumps(preset.to_dict()))
    for p, cfg, sweep in parts:
        assert cfg.name.startswith(f"{d.name}-"), p
        _assert_config_is_the_recorded_one(cfg, sweep)
        got = json.loads(json.dumps(cfg.to_dict()))
        assert {k: got[k] for k in want if k not in PART_KEYS} == {k: want[k] for k in want if k not in PART_KEYS}, p
        assert sweep["finished_at"] and sweep["trials_complete"] == len(cfg.grid()), p
        assert sweep["dataset"]["fingerprint"] in report
        assert f"--name {cfg.name}" in readme, f"the README must give the command of part {cfg.name}"
        if got["epochs_by_train_blur"] != want["epochs_by_train_blur"]:
            # a part run before the preset gave rows their own budget: those rows must have left its records
            own = {str(k) for k in want["epochs_by_train_blur"]}
            kept = trials[trials["trial"].isin(_part_trials(p)) & trials["train_blur"].astype(str).isin(own)]
            assert kept.empty, f"{p}: rows {sorted(own)} trained for the old budget are still in the study"
    if preset.dataset == "femnist-letters":
        assert "FEMNIST" in readme and "not EMNIST" in readme


def _part_trials(part: Path) -> set:
    import gzip

    with gzip.open(part / "hwclf-records.jsonl.gz", "rt") as f:
        return {json.loads(line).get("trial") for line in f} - {None}


def test_merged_trials_cover_the_preset_grid_with_each_rows_budget(merged):
    d, preset, _, trials = merged
    complete = trials[trials["status"] == "complete"]
    cells = {(r.arch, r.train_blur, int(r.seed)) for r in complete.itertuples()}
    assert cells == {(c["arch"], c["blur"], c["seed"]) for c in preset.grid()}
    for (arch, b, seed), g in complete.groupby(["arch", "train_blur", "seed"]):
        assert sorted(g["test_blur"].astype(int)) == sorted(preset.test_blur)
        assert (g["epochs"] == dict(preset.epochs_by_train_blur).get(b, preset.epochs)).all(), (arch, b, seed)
    _assert_aggregates(d, preset, trials)
    _assert_report_files(d)
    _assert_intervals_within_0_1(d)
