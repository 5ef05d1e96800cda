"""Reading the files of a raw Ray Tune experiment directory (local path or URI), one trial directory at a time.

It exists to keep file-system access (pyarrow, object stores, unreadable or half-written files) apart from the
interpretation of what was read: `_read_trial` returns plain dicts that assembly.py turns into records, and it
never raises for one bad trial, it notes the problem instead.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from hwclf.errors import UserError
from hwclf.io import filesystem
from hwclf.report.experiment import SWEEP_FILE, TRIAL_DIR_RE


class _Reader:
    """pyarrow file system access with paths joined POSIX-style (local and object stores alike)."""

    def __init__(self, location: str):
        import pyarrow.fs as pafs

        self.pafs = pafs
        try:
            self.fs, self.root = filesystem(location)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError with multi-line messages
            raise UserError(f"{location}: cannot open ({_first_line(e)})") from None
        self.root = self.root.rstrip("/") or "/"

    def join(self, *parts: str) -> str:
        return posixpath.join(*parts)

    def info(self, path: str):
        return self.fs.get_file_info(path)

    def list(self, path: str) -> list:
        return self.fs.get_file_info(self.pafs.FileSelector(path, allow_not_found=True, recursive=False))

    def read(self, path: str) -> bytes:
        """The bytes as stored (pyarrow would otherwise gunzip a *.gz file by its name)."""
        with self.fs.open_input_stream(path, compression=None) as f:
            return f.read()


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def _json(reader: _Reader, path: str) -> Any:
    return json.loads(reader.read(path).decode("utf-8"))


def _read_trial(reader: _Reader, name: str) -> dict:
    """Raw contents of one candidate trial directory (runs in a thread pool: object stores are slow)."""
    base = reader.join(reader.root, name)
    raw: dict = {"name": name, "path": base, "problems": []}
    try:
        files = {posixpath.basename(i.path): i for i in reader.list(base)}
    except Exception as e:
        raw["problems"].append(f"{name}: cannot list ({_first_line(e)})")
        raw["trial_like"] = bool(TRIAL_DIR_RE.match(name))
        return raw
    Dir, File = reader.pafs.FileType.Directory, reader.pafs.FileType.File
    raw["has_sweep_file"] = SWEEP_FILE in files
    ckpts = sorted((n for n, i in files.items() if i.type == Dir and n.startswith("checkpoint_")), reverse=True)
    raw["trial_like"] = bool(
        TRIAL_DIR_RE.match(name) or ckpts or any(f in files for f in ("params.json", "result.json", "error.txt"))
    )
    if not raw["trial_like"]:
        return raw
    if "params.json" in files:
        try:
            raw["params"] = _json(reader, reader.join(base, "params.json"))
        except Exception as e:
            raw["problems"].append(f"{name}/params.json: unreadable ({_first_line(e)})")
    if "error.txt" in files:
        try:
            raw["error"] = reader.read(reader.join(base, "error.txt")).decode("utf-8", "replace")
        except Exception as e:
            raw["error"] = f"(error.txt unreadable: {_first_line(e)})"
    if ckpts:
        paths = [reader.join(base, c, "evaluation.json") for c in ckpts]
        for p, i in zip(paths, reader.fs.get_file_info(paths)):
            if i.type == File:
                try:
                    raw["evaluation"] = _json(reader, p)
                    raw["evaluation_path"] = p
                except Exception as e:
                    raw["problems"].append(f"{name}/{posixpath.basename(posixpath.dirname(p))}/evaluation.json: "
                                           f"unreadable ({_first_line(e)}); trial counted as incomplete")
                break
    if "evaluation" not in raw and "result.json" in files:
        raw["results"] = _result_lines(reader, reader.join(base, "result.json"))
    return raw


def _result_lines(reader: _Reader, path: str) -> list:
    """JSON lines; a torn last line (trial killed mid-write) is skipped."""
    try:
        text = reader.read(path).decode("utf-8", "replace")
    except Exception:
        return []
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
