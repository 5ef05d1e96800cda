"""Portable records (hwclf export, <sweep>/records/) and merging sweeps into one study: the report from records
or from merged halves is the report of the raw whole; every bad input is one line naming the file, exit 2."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hwclf.cli import main
from hwclf.report import write_report
from hwclf.report.records import RECORDS_FILE, RECORDS_SCHEMA, encode
from hwclf.report.families import panel_layout
from hwclf.report.merge import merged_name
from test_report_fakes import KNOWN_ARCHS, make_known, make_realistic, write_sweep

TABLES = ("trials.csv", "summary.csv", "matrix.csv", "per_letter.csv", "letters_hurt.csv", "confusions.csv",
          "recovery.csv", "writers.csv")


def _conclusions(out) -> list:
    body = (out / "report.md").read_text().split("## Conclusions", 1)[1].split("## Tables", 1)[0]
    return [line for line in body.splitlines() if line.startswith("- ")]


def assert_same_report(a, b, tables=TABLES):
    for name in tables:
        pd.testing.assert_frame_equal(pd.read_csv(a / name), pd.read_csv(b / name), obj=name)
    assert _conclusions(a) == _conclusions(b) and _conclusions(a)


@pytest.fixture
def partial_sweep(tmp_path):
    """The known study with a failed, an incomplete and a missing trial."""
    return make_known(tmp_path / "study", fail={("basic", 5, 2)}, skip={("resnet", 5, 1)},
                      incomplete={("mobilenet", 5, 0)})


def test_report_from_records_equals_report_from_raw(partial_sweep, tmp_path, fast_figures):
    raw_out = write_report(str(partial_sweep), quiet=True).parent
    records = partial_sweep / "records"
    assert (records / RECORDS_FILE).is_file(), "hwclf report writes the records beside the report"
    only = tmp_path / "copy" / "records"  # records alone: no Ray state, no checkpoints, no trial directories
    shutil.copytree(records, only)
    rec_out = write_report(str(only), quiet=True).parent
    assert rec_out == only.parent / "report"
    assert_same_report(raw_out, rec_out)
    trials = pd.read_csv(rec_out / "trials.csv")
    assert set(trials["status"]) == {"complete", "failed", "incomplete", "missing"}
    # the sweep's config files copied beside the records (as a study's README keeps them) change nothing
    shutil.copy2(partial_sweep / "hwclf-sweep.json", only / "hwclf-sweep.json")
    (only / "sweep.yaml").write_text("name: study\n")
    beside_out = write_report(str(only), str(tmp_path / "beside"), quiet=True).parent
    assert_same_report(raw_out, beside_out)


def test_export_is_deterministic_small_and_complete(partial_sweep, tmp_path, capsys):
    assert main(["export", str(partial_sweep), "--out", str(tmp_path / "a")]) == 0
    assert "15 complete trials" in capsys.readouterr().out
    assert main(["export", str(partial_sweep), "--out", str(tmp_path / "b")]) == 0
    a, b = (tmp_path / d / RECORDS_FILE for d in "ab")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0
    lines = [json.loads(x) for x in gzip.decompress(a.read_bytes()).decode().splitlines()]
    head, trials = lines[0], lines[1:]
    assert head["schema"] == RECORDS_SCHEMA and head["sweep"]["dataset"]["fingerprint"].startswith("sha256:")
    assert head["trials"] == len(trials) == 15 + 2  # failed and incomplete keep their status, the missing one not
    done = [t for t in trials if t["status"] == "complete"]
    ev = done[0]["evaluation"]
    assert {"config", "history", "test"} <= set(ev)
    assert {"accuracy", "balanced_accuracy", "loss", "per_class_accuracy", "confusion", "per_writer"} <= set(ev["test"][0])
    text = json.dumps(lines)
    assert ".h5" not in text and "checkpoint_" not in text  # no weights, no pointers into the raw directory
    failed = [t for t in trials if t["status"] == "failed"]
    assert failed[0]["error"] == "ValueError: loss became NaN at epoch 2"


def _half(src, dst, archs):
    """A sweep of only ``archs``: its own sweep file and those archs' trial directories."""
    write_sweep(dst, archs=archs, train_blur=[0, 5], seeds=[0, 1, 2], test_blur=[0, 5, 10], has_writers=True)
    for d in src.iterdir():
        if d.is_dir() and d.name.split("-b")[0] in archs:
            shutil.copytree(d, dst / d.name)
    return dst


def test_two_halves_split_by_architecture_merge_into_the_whole(tmp_path, fast_figures):
    whole = make_known(tmp_path / "whole")
    whole_out = write_report(str(whole), quiet=True).parent
    a = _half(whole, tmp_path / "a", KNOWN_ARCHS[:2])
    b = _half(whole, tmp_path / "b", KNOWN_ARCHS[2:])
    merged = write_report([str(a), str(b)], str(tmp_path / "merged"), quiet=True).parent
    assert_same_report(whole_out, merged)
    # a raw half with the other half's records, and the same trial twice (identical records) merge the same
    write_report(str(b), quiet=True)
    again = write_report([str(a), str(b / "records"), str(b)], str(tmp_path / "again"), quiet=True).parent
    assert_same_report(whole_out, again)
    md = (again / "report.md").read_text()
    assert "Merged from 3 sources" in md
    # each source names the architectures it holds ("1 architectures" told nothing)
    assert "Experiment study merged from 3 parts; report written" in md
    assert f"| {a} | study | raw | basic and resnet | 12/12 |" in md
    assert f"| {b / 'records'} | study | records | mobilenet | 6/6 |" in md


def test_partial_sweeps_merge_with_their_gaps(tmp_path, fast_figures):
    whole = make_known(tmp_path / "whole", skip={("mobilenet", 5, 1)})
    a = _half(whole, tmp_path / "a", KNOWN_ARCHS[:2])
    b = _half(whole, tmp_path / "b", KNOWN_ARCHS[2:])
    out = write_report([str(a), str(b)], str(tmp_path / "merged"), quiet=True).parent
    summary = pd.read_csv(out / "summary.csv").set_index(["arch", "train_blur"])
    assert summary.loc[("mobilenet", 5), "n_label"] == "2/3 ⚠" and summary.loc[("basic", 5), "n"] == 3


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwclf: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("section, field, value, shown", [
    ("config", "batch_size", 64, "batch_size (128 vs 64)"),
    ("config", "lr_schedule", "cosine", "lr_schedule ('constant' vs 'cosine')"),
    ("config", "test_blur", [0, 5, 20], "test levels (0, 5, 10 vs 0, 5, 20)"),
    ("config", "blur_kind", "gaussian", "blur kind ('box' vs 'gaussian')"),
    ("dataset", "fingerprint", "sha256:" + "cd" * 32, "dataset fingerprint ('sha256:abab"),
])
def test_merge_refuses_another_dataset_or_recipe(tmp_path, capsys, section, field, value, shown):
    whole = make_known(tmp_path / "whole")
    a = _half(whole, tmp_path / "a", KNOWN_ARCHS[:2])
    b = _half(whole, tmp_path / "b", KNOWN_ARCHS[2:])
    doc = json.loads((b / "hwclf-sweep.json").read_text())
    doc[section][field] = value
    (b / "hwclf-sweep.json").write_text(json.dumps(doc))
    err = _error(capsys, ["report", str(a), str(b), "--out", str(tmp_path / "m")])
    assert f"merge: {a} and {b} differ in {shown}" in err


def _train_row_for(sweep: Path, row: int, epochs: int, archs=KNOWN_ARCHS) -> None:
    """As if the row's trials of `archs` had been configured for `epochs` (a row's own budget)."""
    for arch in archs:
        for path in [*sweep.glob(f"{arch}-b{row}-s*/params.json"),
                     *sweep.glob(f"{arch}-b{row}-s*/checkpoint_*/evaluation.json")]:
            doc = json.loads(path.read_text())
            (doc.get("config") or doc)["epochs"] = epochs
            path.write_text(json.dumps(doc))


def test_a_row_with_its_own_budget_merges_and_the_report_says_so(tmp_path, fast_figures):
    whole = make_known(tmp_path / "whole")
    _train_row_for(whole, 5, 6)
    a = _half(whole, tmp_path / "a", KNOWN_ARCHS[:2])
    b = _half(whole, tmp_path / "b", KNOWN_ARCHS[2:])
    out = write_report([str(a), str(b)], str(tmp_path / "merged"), quiet=True).parent
    md = (out / "report.md").read_text()
    assert "| epochs | 3 |" in md and "| epochs | 3 |\n| epochs_by_train_blur | train blur 5: 6 |" in md


def test_merge_refuses_one_row_trained_for_two_budgets(tmp_path, capsys):
    whole = make_known(tmp_path / "whole")
    a = _half(whole, tmp_path / "a", KNOWN_ARCHS[:2])
    b = _half(whole, tmp_path / "b", KNOWN_ARCHS[2:])
    _train_row_for(b, 5, 6)
    err = _error(capsys, ["report", str(a), str(b), "--out", str(tmp_path / "m")])
    assert f"merge: train blur 5 was trained for 3 epochs in {a} (" in err and f"and 6 in {b} (" in err
    assert "hwclf export SOURCE --out DIR --train-blur LEVELS" in err


def test_a_row_rerun_with_more_epochs_replaces_the_old_one(tmp_path, capsys, fast_figures):
    """The old row leaves the record set (export --train-blur); the rerun row merges in its place."""
    whole = make_known(tmp_path / "whole")
    assert main(["export", str(whole), "--out", str(tmp_path / "rec")]) == 0
    rerun = make_known(tmp_path / "rerun")
    _train_row_for(rerun, 5, 6)
    capsys.readouterr()
    err = _error(capsys, ["report", str(tmp_path / "rec"), str(rerun), "--out", str(tmp_path / "m")])
    assert "train blur 5 was trained for 3 epochs" in err
    assert main(["export", str(tmp_path / "rec"), "--out", str(tmp_path / "rows0"), "--train-blur", "0"]) == 0
    assert "complete trials" in capsys.readouterr().out
    rows5 = tmp_path / "rows5"
    assert main(["export", str(rerun), "--out", str(rows5), "--train-blur", "5"]) == 0
    out = write_report([str(tmp_path / "rows0"), str(rows5)], str(tmp_path / "merged"), quiet=True).parent
    trials = pd.read_csv(out / "trials.csv")
    assert sorted(set(trials["train_blur"])) == [0, 5] and (trials["status"] == "complete").all()
    md = (out / "report.md").read_text()
    assert f"A subset of {tmp_path / 'rec'}: its rows at train blur 5 (" in md and "were left out" in md
    # bad levels and a record set without --train-blur are one line
    err = _error(capsys, ["export", str(tmp_path / "rec"), "--out", str(tmp_path / "x"), "--train-blur", "7"])
    assert "--train-blur: 7 not in" in err and "its rows: 0, 5" in err
    err = _error(capsys, ["export", str(tmp_path / "rec"), "--train-blur", "0"])
    assert "give --out DIR" in err


def test_merge_refuses_one_trial_with_two_results(tmp_path, capsys):
    whole = make_known(tmp_path / "whole")
    a = _half(whole, tmp_path / "a", KNOWN_ARCHS[:2])
    b = _half(whole, tmp_path / "b", KNOWN_ARCHS[1:])  # resnet in both halves
    (ev,) = b.glob("resnet-b5-s1-*/checkpoint_*/evaluation.json")
    doc = json.loads(ev.read_text())
    doc["test"][0]["accuracy"] += 0.01
    ev.write_text(json.dumps(doc))
    err = _error(capsys, ["report", str(a), str(b), "--out", str(tmp_path / "m")])
    assert f"merge: resnet at train blur 5, seed 1 is in both {a} (" in err and "with different results" in err


def test_merging_needs_an_output_directory(tmp_path, capsys):
    whole = make_known(tmp_path / "whole")
    err = _error(capsys, ["report", str(whole), str(whole)])
    assert "--out" in err


def _records(tmp_path):
    exp = make_known(tmp_path / "study")
    assert main(["export", str(exp), "--out", str(tmp_path / "rec")]) == 0
    return tmp_path / "rec" / RECORDS_FILE


def test_truncated_records_file_is_one_line(tmp_path, capsys):
    f = _records(tmp_path)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    err = _error(capsys, ["report", str(f.parent), "--out", str(tmp_path / "out")])
    assert f"{f}: truncated or corrupt gzip" in err


def test_unknown_records_schema_is_one_line(tmp_path, capsys):
    f = _records(tmp_path)
    lines = [json.loads(x) for x in gzip.decompress(f.read_bytes()).decode().splitlines()]
    lines[0]["schema"] = "hwclf.records/2"
    f.write_bytes(encode(lines))
    capsys.readouterr()
    err = _error(capsys, ["report", str(f), "--out", str(tmp_path / "out")])
    assert f"{f}: schema 'hwclf.records/2' is not supported; this hwclf reads hwclf.records/1" in err


@pytest.mark.parametrize("damage, message", [
    (lambda lines: lines[:-1], "holds 17 trial lines, its sweep line says 18"),
    (lambda lines: lines + ["{not json"], "line 20 is not JSON"),
    (lambda lines: lines[:1] + ['{"kind": "trial"}'] + lines[2:], "line 2 is not a trial record"),
])
def test_damaged_records_lines_are_one_line(tmp_path, capsys, damage, message):
    f = _records(tmp_path)
    lines = gzip.decompress(f.read_bytes()).decode().splitlines()
    f.write_bytes(gzip.compress(("\n".join(damage(lines)) + "\n").encode(), mtime=0))
    capsys.readouterr()
    err = _error(capsys, ["report", str(f.parent), "--out", str(tmp_path / "out")])
    assert f"{f}: {message}" in err


def test_export_of_a_record_set_is_refused(tmp_path, capsys):
    f = _records(tmp_path)
    capsys.readouterr()
    err = _error(capsys, ["export", str(f.parent)])
    assert "is already a record set" in err


RESULTS = Path(__file__).resolve().parents[1] / "results"


def _one_set(study: Path) -> bool:
    """records/ is one record set; otherwise the study ran in parts, one set per part (records/<part>/)."""
    return (study / "records" / RECORDS_FILE).is_file()


def _record_sets(study: Path) -> list[Path]:
    if _one_set(study):
        return [study / "records"]
    return sorted(p.parent for p in (study / "records").glob(f"*/{RECORDS_FILE}"))


def _rebuild_command(study: Path) -> str:
    records = f"results/{study.name}/records" + ("" if _one_set(study) else "/*")
    return f"hwclf report {records} --out results/{study.name}/report"


STUDIES_WITH_RECORDS = sorted(d for d in RESULTS.iterdir() if d.is_dir() and _record_sets(d))
WITH_RECORDS = [d for d in STUDIES_WITH_RECORDS if (d / "report" / "trials.csv").is_file()]
RECORDS_ONLY = [d for d in STUDIES_WITH_RECORDS if not (d / "report").exists()]  # records-only sets: next test


@pytest.mark.skipif(not WITH_RECORDS, reason="no committed study carries records yet (results/*/records/)")
@pytest.mark.parametrize("study", WITH_RECORDS, ids=[p.name for p in WITH_RECORDS])
def test_committed_records_rebuild_the_committed_report(study, tmp_path, fast_figures):
    """The README's rebuild command, run on the committed records alone, gives the committed tables."""
    out = write_report([str(s) for s in _record_sets(study)], str(tmp_path / "report"), quiet=True).parent
    for name in ("trials.csv", "summary.csv", "matrix.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / name), pd.read_csv(study / "report" / name), obj=name)
    assert _rebuild_command(study) in (study / "README.md").read_text()


@pytest.mark.parametrize("study", RECORDS_ONLY, ids=[p.name for p in RECORDS_ONLY])
def test_committed_records_without_a_report_build_one_and_say_how(study, tmp_path, fast_figures):
    readme = (study / "README.md").read_text()
    for i, records in enumerate(_record_sets(study)):
        out = write_report(str(records), str(tmp_path / f"report{i}"), quiet=True).parent
        trials = pd.read_csv(out / "trials.csv")
        assert (trials["status"] == "complete").all() and len(trials) > 0
    if _one_set(study):
        assert _rebuild_command(study) in readme
    else:  # separate runs, not parts of one grid: a report each
        assert f"hwclf report results/{study.name}/records/" in readme


def test_merged_parts_list_each_net_beside_its_se_twin(tmp_path, fast_figures):
    """Parts run in whatever order the compute allowed; the merged report reads plain net, then its SE twin."""
    a = make_realistic(tmp_path / "a", archs=["resnet", "mobilenet", "basic"], train_blur=(0,), seeds=(0,),
                       n_writers=20, samples=False)
    b = make_realistic(tmp_path / "b", archs=["basic_se", "resnet_se"], train_blur=(0,), seeds=(0,),
                       n_writers=20, samples=False)
    out = write_report([str(a), str(b)], str(tmp_path / "merged"), quiet=True).parent
    order = list(dict.fromkeys(pd.read_csv(out / "summary.csv")["arch"]))
    assert order == ["resnet", "resnet_se", "mobilenet", "basic", "basic_se"]


@pytest.mark.parametrize("names, merged", [
    (["femnist-blur-basic", "femnist-blur-basic_se", "femnist-blur-resnet_se-s2"], "femnist-blur"),
    (["femnist-blur-basic", "femnist-blur-basic"], "femnist-blur-basic"),
    (["study-s01", "study-s2"], "study"),
    (["blur_a", "blur_b"], "blur"),
    (["run-basic", "run-basic_se"], "run"),  # a whole name is no stem: "run-basic" would name half the study
    (["ab-1", "ab-2"], "ab-1+ab-2"),  # too short a stem to name a study
    (["alpha", "beta"], "alpha+beta"),
])
def test_parts_merge_under_the_name_they_share(names, merged):
    assert merged_name(names) == merged


@pytest.mark.parametrize("archs, rows", [
    (["basic", "resnet", "mobilenet"], [["basic", "resnet", "mobilenet"]]),
    (["basic", "resnet", "mobilenet", "vit"], [["basic", "resnet", "mobilenet"], ["vit", None, None]]),
    (["basic", "basic_se", "resnet", "resnet_se", "mobilenet"],
     [["basic", "basic_se"], ["resnet", "resnet_se"], ["mobilenet", None]]),
    (["mobilenet_se", "resnet", "mobilenet"], [["mobilenet", "mobilenet_se"], ["resnet", None]]),
    (["resnet_se", "basic", "basic_se"], [[None, "resnet_se"], ["basic", "basic_se"]]),
    (["se", "_se"], [["se", "_se"]]),
])
def test_panels_put_a_net_and_its_se_twin_on_one_row(archs, rows):
    assert panel_layout(archs) == rows
