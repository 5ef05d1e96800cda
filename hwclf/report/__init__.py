"""The study's report: read an experiment directory offline (no Ray), aggregate over seeds, write tables,
figures, report.md and a self-contained report.html.

Public API: ``write_report`` (everything), ``load_experiment`` and ``tidy_table`` (to analyse by hand).
The input is a raw sweep directory, a record set (records.py) or several of either merged into one study
(merge.py); from a raw local sweep the report also writes its records to ``<sweep>/records/``.
Every file goes through ``hwclf.io.atomic_write_*`` so an interrupted report never leaves a half-written
file, and a report can be regenerated over an old one.
"""

from __future__ import annotations

import io
import posixpath
import sys
import time
from pathlib import Path

from hwclf.errors import UserError
from hwclf.io import atomic_write_bytes, is_uri
from hwclf.report.load import (COMPLETE, FAILED, INCOMPLETE, MISSING, RECORDS_DIR, Experiment, TrialRecord,
                               fmt_blur, load_experiment)
from hwclf.report.merge import load_study
from hwclf.report.records import RECORDS_FILE, default_records_dir, write_records
from hwclf.report.tables import tidy_table

__all__ = ["write_report", "load_experiment", "tidy_table", "compute", "Experiment", "TrialRecord",
           "COMPLETE", "FAILED", "INCOMPLETE", "MISSING", "OUTPUTS"]

# Everything write_report may write; optional files left over from an older report are removed when this run
# does not produce them (e.g. writers.png after the writer ids were dropped), so the folder never mixes runs.
OUTPUTS = ("trials.csv", "trials.parquet", "summary.csv", "summary.md", "matrix.csv", "per_letter.csv",
           "letters_hurt.csv", "confusions.csv", "recovery.csv", "writers.csv", "samples.png", "accuracy_vs_blur.png",
           "loss_vs_blur.png", "heatmaps.png", "learning_curves.png", "per_letter.png", "writers.png", "robust.csv",
           "robust.png", "se.csv", "se.png", "report.md", "report.html")


def default_out(experiment: str) -> Path:
    """<experiment>/report/ for a local experiment (<sweep>/report/ for its record set <sweep>/records/);
    ./<name>-report/ for a URI (the bucket stays read-only)."""
    if is_uri(experiment):
        name = posixpath.basename(str(experiment).rstrip("/")) or "experiment"
        return Path.cwd() / f"{name}-report"
    path = Path(experiment).expanduser().resolve()
    if path.is_file():  # records/hwclf-records.jsonl.gz
        path = path.parent
    if path.name == RECORDS_DIR and (path / RECORDS_FILE).is_file():
        return path.parent / "report"
    return path / "report"


def compute(exp: Experiment):
    """All tables and conclusions of a report, without writing anything."""
    from hwclf.report import tables as T
    from hwclf.report.conclude import conclusions
    from hwclf.report.document import Results

    from hwclf.report.robust import robust_table
    from hwclf.report.se import se_table

    tidy = T.tidy_table(exp)
    summary = T.summary_table(exp, tidy)
    matrix = T.matrix_table(exp, tidy, "accuracy")
    loss_matrix = T.matrix_table(exp, tidy, "loss")
    drops = T.letter_drops(exp)
    hurt = T.letters_hurt_table(exp, drops)
    confusions = T.confusions_table(exp)
    writer_accs = T.writer_accuracies(exp)
    writers = T.writers_table(exp, writer_accs)
    recovery = T.recovery_table(exp, matrix)
    reference = T.reference_table(exp, matrix)
    best = T.best_arch(exp, matrix)
    res = Results(tidy=tidy, summary=summary, matrix=matrix, loss_matrix=loss_matrix, per_letter=T.per_letter_table(exp),
                  drops=drops, hurt=hurt, confusions=confusions, writer_accs=writer_accs, writers=writers,
                  recovery=recovery, reference=reference, curves=T.learning_curves_table(exp), models=T.models_table(exp, tidy),
                  best_arch=best, conclusions=[], robust=robust_table(exp), se=se_table(exp))
    res.conclusions = conclusions(exp, summary, matrix, recovery, hurt, confusions, writers, best, res.robust, res.se)
    return res


def _csv(df) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def _parquet(df) -> bytes:
    """With a mixture on the train-blur axis the column mixes numbers and strings, which Parquet cannot hold:
    it is then written as strings ("0", "5", "mix:0/5/10")."""
    if df["train_blur"].map(lambda b: isinstance(b, str)).any():
        df = df.assign(train_blur=df["train_blur"].map(str))
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _write_records(exp: Experiment, directory: Path, log) -> None:
    """The sweep's records beside its report; a read-only sweep directory costs the records, not the report."""
    try:
        path = write_records(exp, directory)
    except OSError as e:
        log(f"records not written to {directory} ({e.strerror or e}); `hwclf export SWEEP --out DIR` writes them "
            "elsewhere")
        return
    log(f"records: {path} ({path.stat().st_size:,} bytes)")


def write_report(experiment, out: str | None = None, *, quiet: bool = False, records: bool = True) -> Path:
    """Read ``experiment`` (a local directory or URI of a raw sweep or a record set, offline; or a list of them,
    merged into one study), write the whole report into ``out`` and return the path of report.html. From a raw
    local sweep its records go to <sweep>/records/ too, unless not ``records``. Progress goes to stderr in a
    few lines unless ``quiet``."""
    from hwclf.report import figures as F
    from hwclf.report.document import report_blocks, summary_md_blocks
    from hwclf.report.render import render_html, render_md
    from hwclf.report.tables import MIN_WRITER_IMAGES

    def log(msg: str) -> None:
        if not quiet:
            print(f"hwclf report: {msg}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    sources = [str(e) for e in experiment] if isinstance(experiment, (list, tuple)) else [str(experiment)]
    if out is not None and is_uri(out):
        raise UserError(f"out: {out} is a URI; the report is written to a local directory")
    if out is None and len(sources) > 1:
        raise UserError(f"out: merging {len(sources)} sweeps needs --out DIR (where the merged report goes)")
    out_dir = Path(out).expanduser() if out is not None else default_out(sources[0])
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"out: {out_dir} exists and is not a directory")

    exp = load_study(sources)
    if records and exp.kind == "raw" and not is_uri(sources[0]):
        _write_records(exp, Path(sources[0]).expanduser() / RECORDS_DIR, log)
    c = exp.counts()
    log(f"{exp.name}: {c[COMPLETE]}/{len(exp.grid)} trials complete ({c[FAILED]} failed, {c[INCOMPLETE]} incomplete, "
        f"{c[MISSING]} missing)")
    res = compute(exp)

    written: dict = {}

    def put_text(name: str, text: str) -> None:
        put_bytes(name, text.encode("utf-8"))

    def put_bytes(name: str, data: bytes | None) -> None:
        if data:
            atomic_write_bytes(out_dir / name, data)
            written[name] = True

    put_text("trials.csv", _csv(res.tidy))
    put_bytes("trials.parquet", _parquet(res.tidy))
    put_text("summary.csv", _csv(res.summary))
    put_text("matrix.csv", _csv(res.matrix))
    put_text("per_letter.csv", _csv(res.per_letter))
    put_text("letters_hurt.csv", _csv(res.hurt))
    put_text("confusions.csv", _csv(res.confusions))
    put_text("recovery.csv", _csv(res.recovery))
    if len(res.robust):
        put_text("robust.csv", _csv(res.robust))
    if len(res.se):
        put_text("se.csv", _csv(res.se))
    if len(res.reference):
        put_text("reference.csv", _csv(res.reference))
    if res.writers is not None:
        put_text("writers.csv", _csv(res.writers))
    log(f"tables written to {out_dir}; drawing figures")

    figs = {
        "accuracy_vs_blur.png": F.curves_figure(exp, res.matrix, "accuracy"),
        "loss_vs_blur.png": F.curves_figure(exp, res.loss_matrix, "loss"),
        "heatmaps.png": F.heatmaps_figure(exp, res.matrix),
        "learning_curves.png": F.learning_curves_figure(exp, res.curves),
        "per_letter.png": F.per_letter_figure(exp, res.drops),
        "writers.png": F.writers_figure(exp, res.writer_accs, res.best_arch, MIN_WRITER_IMAGES),
        "robust.png": F.robust_figure(exp, res.robust),
        "se.png": F.se_figure(exp, res.se),
    }
    put_bytes("samples.png", exp.samples_png)
    for name, data in figs.items():
        put_bytes(name, data)

    put_text("summary.md", render_md(summary_md_blocks(exp, res)))
    blocks = report_blocks(exp, res, figs)
    put_text("report.md", render_md(blocks))
    put_text("report.html", render_html(blocks, f"hwclf report: {exp.name}"))

    for name in OUTPUTS:
        stale = out_dir / name
        if name not in written and stale.is_file():
            stale.unlink()
    log(f"wrote {out_dir / 'report.html'} in {time.monotonic() - t0:.1f} s")
    return out_dir / "report.html"


def export(experiment: str, out: str | None = None, train_blur: str | None = None) -> tuple:
    """``hwclf export``: records of a raw sweep directory, or (with ``train_blur``) of only those rows of a raw
    sweep or record set; returns (file, Experiment)."""
    if out is not None and is_uri(out):
        raise UserError(f"--out {out}: is a URI; records are written to a local directory")
    exp = load_experiment(str(experiment))
    if train_blur is not None:
        exp = keep_rows(exp, train_blur)
    elif exp.kind != "raw":
        raise UserError(f"{experiment}: is already a record set; export reads a raw sweep directory "
                        f"(<storage>/<name>/ with its trial directories), or keeps some rows of a record set "
                        f"with --train-blur LEVELS")
    if out is None and exp.kind != "raw":
        raise UserError(f"{experiment}: is a record set; give --out DIR for the subset")
    return write_records(exp, Path(out) if out is not None else default_records_dir(str(experiment))), exp


def keep_rows(exp: Experiment, train_blur: str) -> Experiment:
    """Only the rows trained at `train_blur` (e.g. to replace a row rerun with a larger budget). The subset
    says what it left out (``sweep["subset"]``), and every report of it shows that note."""
    import copy
    import dataclasses

    from hwclf import mixture

    integer = str(exp.config.get("blur_kind") or "box") == "box"
    keep = list(dict.fromkeys(mixture.parse_train_blurs(train_blur, "--train-blur", integer)))
    unknown = [b for b in keep if b not in exp.train_blurs]
    if unknown:
        raise UserError(f"--train-blur: {', '.join(fmt_blur(b) for b in unknown)} not in {exp.location}; its rows: "
                        f"{', '.join(fmt_blur(b) for b in exp.train_blurs)}")
    keep = [b for b in exp.train_blurs if b in keep]
    dropped = [b for b in exp.train_blurs if b not in keep]
    sweep = copy.deepcopy(exp.sweep)
    config = sweep.setdefault("config", {})
    config["train_blur"] = keep
    sweep["grid"] = [{"arch": a, "blur": b, "seed": s} for a, b, s in exp.grid if b in keep]
    left_out = [t for t in exp.trials if t.train_blur in dropped and t.status != MISSING]
    earlier = sweep.get("subset") or {}
    sweep["subset"] = {"of": earlier.get("of") or exp.location,
                       "left_out_train_blur": [*(earlier.get("left_out_train_blur") or []), *dropped],
                       "left_out_trials": int(earlier.get("left_out_trials") or 0) + len(left_out)}
    trials = [t for t in exp.trials if t.train_blur in keep]
    return dataclasses.replace(exp, sweep=sweep, has_sweep_file=True, grid=[c for c in exp.grid if c[1] in keep],
                               trials=trials, statuses={t.cell: t.status for t in trials}, train_blurs=keep)
