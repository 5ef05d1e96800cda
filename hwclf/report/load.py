"""Read an experiment directory (local path or URI) into plain records, without Ray.

Only the files named in docs/results-format.md are read, so a report works offline on a copy of the results,
on a sweep that is still running, and on one whose driver crashed. Every grid cell gets a status
(complete / failed / incomplete / missing) so nothing is silently dropped downstream.

The work is split in three: experiment.py (the records and keys), rawdir.py (reading a raw directory's files),
assembly.py (the grid and one record per cell). This module finds out what a location holds (a raw sweep
directory or a record set) and is where the rest of hwclf imports the report's data from.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor

from hwclf.errors import UserError
from hwclf.report.assembly import assemble
from hwclf.report.experiment import (COMPLETE, FAILED, INCOMPLETE, MISSING, RECORDS_DIR, REPORT_DIR, STATUSES,
                                     SWEEP_FILE, TRIAL_DIR_RE, Experiment, LevelResult, Source, TrialRecord,
                                     blur_sorted, blur_value, fmt_blur, num)
from hwclf.report.rawdir import _first_line, _json, _read_trial, _Reader

__all__ = ["COMPLETE", "FAILED", "INCOMPLETE", "MISSING", "STATUSES", "SWEEP_FILE", "REPORT_DIR", "RECORDS_DIR",
           "TRIAL_DIR_RE", "num", "blur_value", "fmt_blur", "blur_sorted", "LevelResult", "TrialRecord", "Experiment",
           "Source", "load_experiment", "read_source", "assemble"]


def load_experiment(path, *, require_complete: bool = True, workers: int = 8) -> Experiment:
    """Read ``path`` (local directory or s3:// / gs:// / file:// URI): a raw sweep directory, or a record set
    (a directory holding records.RECORDS_FILE, or that file itself).

    Raises a one-line ``UserError`` when the directory is missing, is not an hwclf experiment, or (with
    ``require_complete``) has no complete trial yet.
    """
    return assemble(read_source(path, workers=workers), require_complete=require_complete)


def read_source(path, *, workers: int = 8) -> Source:
    """The files of one experiment directory or record set, unassembled (see `Source`)."""
    from hwclf.report import records as R

    location = str(path)
    reader = _Reader(location)
    ft = reader.pafs.FileType
    try:
        info = reader.info(reader.root)
    except Exception as e:
        raise UserError(f"{location}: cannot read ({_first_line(e)})") from None
    if info.type == ft.NotFound:
        raise UserError(f"{location}: no such directory; give an experiment directory <storage>/<name>/")
    if info.type == ft.File and location.endswith(R.RECORDS_SUFFIX):
        return R.read_records(reader, reader.root, location)
    if info.type != ft.Directory:
        raise UserError(f"{location}: is a file, not an experiment directory <storage>/<name>/")
    try:
        entries = reader.list(reader.root)
    except Exception as e:
        raise UserError(f"{location}: cannot list ({_first_line(e)})") from None
    files = {posixpath.basename(i.path): i for i in entries}
    # A record set, also when the sweep's config files were copied beside it; a raw sweep has trial directories
    trial_dirs = any(i.type == ft.Directory and TRIAL_DIR_RE.match(name) for name, i in files.items())
    if R.RECORDS_FILE in files and files[R.RECORDS_FILE].type == ft.File and not trial_dirs:
        return R.read_records(reader, reader.join(reader.root, R.RECORDS_FILE), location)
    notes: list = []

    sweep: dict = {}
    has_sweep_file = SWEEP_FILE in files and files[SWEEP_FILE].type == ft.File
    if has_sweep_file:
        try:
            sweep = _json(reader, reader.join(reader.root, SWEEP_FILE))
            if not isinstance(sweep, dict):
                raise ValueError("top level is not an object")
        except Exception as e:
            notes.append(f"{SWEEP_FILE} is unreadable ({_first_line(e)}); the grid was inferred from the trials.")
            sweep = {}
        schema = str(sweep.get("schema", ""))
        if sweep and not schema.startswith("hwclf.sweep/"):
            notes.append(f"{SWEEP_FILE} has schema {schema!r}, expected hwclf.sweep/1; read as far as it matches.")

    names = sorted(n for n, i in files.items()
                   if i.type == ft.Directory and n not in (REPORT_DIR, RECORDS_DIR) and not n.startswith((".", "_")))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names) or 1))) as pool:
        raws = list(pool.map(lambda n: _read_trial(reader, n), names))

    trial_raws = [r for r in raws if r.get("trial_like")]
    for r in trial_raws:
        notes.extend(r["problems"])
    if not sweep and not trial_raws:
        nested = [r["name"] for r in raws if r.get("has_sweep_file")]
        hint = f"; it holds experiments: {', '.join(nested[:5])}" if nested else ""
        what = f"{SWEEP_FILE} is unreadable" if has_sweep_file else f"no {SWEEP_FILE}"
        raise UserError(f"{location}: not an hwclf experiment ({what} and no trial directories "
                        f"<arch>-b<blur>-s<seed>-<id> and no {RECORDS_DIR}/{R.RECORDS_FILE}){hint}")

    samples = None
    if "samples.png" in files and files["samples.png"].type == ft.File:
        try:
            samples = reader.read(reader.join(reader.root, "samples.png"))
        except Exception as e:
            notes.append(f"samples.png unreadable ({_first_line(e)}).")
    return Source(location=location, sweep=sweep, has_sweep_file=has_sweep_file, raws=trial_raws, notes=notes,
                  samples_png=samples)
