"""Portable trial records: everything the report needs from a sweep, in one small file that can be committed.

A raw Ray Tune directory holds checkpoints (weights) and Ray state that are too big to commit and that the
report never reads. ``records/hwclf-records.jsonl.gz`` keeps only what the report does read: the sweep file
(config, grid, dataset fingerprint, environment) and, per trial, its full evaluation.json (config, history, every
test level with per-class, confusion and per-writer counts) or, for a trial that did not complete, its status.
``hwclf report`` on a record set writes the same tables and conclusions as on the raw directory.

Format (docs/results-format.md): gzip'd JSON Lines, schema ``hwclf.records/1``; line 1 is the sweep, then one
line per trial in grid order. The gzip header has mtime 0 and no file name, so exporting the same sweep twice
gives the same bytes (a re-export shows no diff in git).
"""

from __future__ import annotations

import gzip
import json
import posixpath
import zlib
from pathlib import Path

from hwclf.errors import UserError
from hwclf.io import atomic_write_bytes, is_uri
from hwclf.report.experiment import COMPLETE, MISSING, RECORDS_DIR, SWEEP_FILE, Experiment, Source, blur_value
from hwclf.report.rawdir import _first_line

RECORDS_SCHEMA = "hwclf.records/1"
RECORDS_FILE = "hwclf-records.jsonl.gz"
RECORDS_SUFFIX = ".jsonl.gz"
SAMPLES = "samples.png"


def record_lines(exp: Experiment) -> list:
    """The records of an experiment as JSON-able dicts: the sweep line, then one per trial that has a directory
    (complete, failed or incomplete; a missing cell is known from the grid)."""
    trials = [t for t in exp.trials if t.status != MISSING]
    lines = [{"schema": RECORDS_SCHEMA, "kind": "sweep", "name": exp.name,
              "sweep": exp.sweep if exp.has_sweep_file else None, "trials": len(trials),
              "complete": sum(t.status == COMPLETE for t in trials)}]
    for t in trials:
        lines.append({"kind": "trial", "arch": t.arch, "train_blur": t.train_blur, "seed": t.seed,
                      "status": t.status, "trial": t.trial, "params": t.params,
                      "evaluation": t.raw_evaluation if t.status == COMPLETE else None,
                      "error": t.error, "epochs": t.epochs})
    return lines


def encode(lines: list) -> bytes:
    """Deterministic gzip'd JSON Lines (mtime 0, no file name in the header)."""
    text = "".join(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n" for line in lines)
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def write_records(exp: Experiment, out_dir) -> Path:
    """Write ``out_dir/hwclf-records.jsonl.gz`` (and samples.png when the sweep has one); returns the file."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"out: {out_dir} exists and is not a directory")
    path = atomic_write_bytes(out_dir / RECORDS_FILE, encode(record_lines(exp)))
    if exp.samples_png:
        atomic_write_bytes(out_dir / SAMPLES, exp.samples_png)
    elif (out_dir / SAMPLES).is_file():
        (out_dir / SAMPLES).unlink()
    return path


def default_records_dir(experiment: str) -> Path:
    """<experiment>/records/ for a local sweep; ./<name>-records/ for a URI (the bucket stays read-only)."""
    if is_uri(experiment):
        name = posixpath.basename(str(experiment).rstrip("/")) or "experiment"
        return Path.cwd() / f"{name}-{RECORDS_DIR}"
    return Path(experiment).expanduser().resolve() / RECORDS_DIR


def _bad(path: str, what: str) -> UserError:
    return UserError(f"{path}: {what}")


def decode(data: bytes, path: str) -> list:
    """The lines of a records file, checked: gzip intact, every line JSON, the schema one this hwclf reads, as
    many trial lines as the sweep line announces."""
    try:
        text = gzip.decompress(data).decode("utf-8")
    except (EOFError, OSError, zlib.error) as e:
        raise _bad(path, f"truncated or corrupt gzip ({_first_line(e)}); export it again with "
                         "hwclf export SWEEP_DIR") from None
    except UnicodeDecodeError as e:
        raise _bad(path, f"not UTF-8 text ({_first_line(e)})") from None
    lines = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise _bad(path, f"line {n} is not JSON ({_first_line(e)})") from None
        if not isinstance(obj, dict):
            raise _bad(path, f"line {n} is not a JSON object")
        lines.append((n, obj))
    if not lines or lines[0][1].get("kind") != "sweep" or "schema" not in lines[0][1]:
        raise _bad(path, f"not an hwclf records file (line 1 must be the sweep line with schema {RECORDS_SCHEMA})")
    schema = str(lines[0][1]["schema"])
    if schema != RECORDS_SCHEMA:
        raise _bad(path, f"schema {schema!r} is not supported; this hwclf reads {RECORDS_SCHEMA} "
                         "(a newer hwclf wrote it: upgrade, or export again from the raw sweep)")
    expected = lines[0][1].get("trials")
    if isinstance(expected, int) and expected != len(lines) - 1:
        raise _bad(path, f"holds {len(lines) - 1} trial lines, its sweep line says {expected}; the file is cut "
                         "short or edited: export it again")
    return lines


def _trial_raw(n: int, obj: dict, path: str) -> dict:
    """A trial line as the raw dict load.assemble takes (what load._read_trial makes from a directory)."""
    try:
        if obj.get("kind") != "trial":
            raise KeyError("kind")
        cell = (str(obj["arch"]), blur_value(obj["train_blur"]), int(obj["seed"]))
        name = str(obj["trial"])
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"line {n} is not a trial record (arch, train_blur, seed, trial: {_first_line(e)})") from None
    ev = obj.get("evaluation")
    if obj.get("status") == COMPLETE and not isinstance(ev, dict):
        raise _bad(path, f"line {n}: {name} is complete but has no evaluation")
    raw = {"name": name, "path": f"{path}:{n}", "problems": [], "trial_like": True, "cell": cell,
           "params": obj.get("params"), "epochs": obj.get("epochs")}
    if obj.get("status") == COMPLETE:
        raw["evaluation"] = ev
    elif obj.get("error") is not None or obj.get("status") == "failed":
        raw["error"] = str(obj.get("error") or "failed (no error recorded)")
    return raw


def read_records(reader, file_path: str, location: str) -> Source:
    """A record set as a load.Source (the report then assembles it exactly as a raw directory)."""
    try:
        data = reader.read(file_path)
    except Exception as e:
        raise _bad(file_path, f"cannot read ({_first_line(e)})") from None
    lines = decode(data, file_path)
    head = lines[0][1]
    sweep = head.get("sweep")
    if sweep is not None and not isinstance(sweep, dict):
        raise _bad(file_path, f"line 1: sweep is not an object (the {SWEEP_FILE} of the sweep, or null)")
    raws = [_trial_raw(n, obj, file_path) for n, obj in lines[1:]]
    samples = None
    samples_path = reader.join(posixpath.dirname(file_path), SAMPLES)
    if reader.info(samples_path).type == reader.pafs.FileType.File:
        samples = reader.read(samples_path)
    return Source(location=location, sweep=sweep or {}, has_sweep_file=sweep is not None, raws=raws,
                  samples_png=samples, kind="records", name=str(head["name"]) if head.get("name") else None)
