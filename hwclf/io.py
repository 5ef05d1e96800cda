"""Atomic writes and local-or-URI file access.

Everything the product writes goes through a temp file + rename, so a crash or Ctrl-C never leaves a
half-written file behind. Paths may be local or URIs (``s3://``, ``gs://``) through pyarrow's file systems.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hwclf.errors import UserError

URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "file://")


def is_uri(path: str | os.PathLike) -> bool:
    return str(path).startswith(URI_SCHEMES)


def writable_file(path: str | os.PathLike) -> Path:
    """`--out FILE` checked before any work starts: an hour of benchmarking must not end in an unwritable
    path. Creates the parent folder; a directory or a folder without write access is a UserError."""
    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory; give a file name such as preview.png")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create {parent} ({e.strerror})") from None
    try:  # os.access says yes to root on read-only file systems: try for real
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".hwclf-write-test-"):
            pass
    except OSError as e:
        raise UserError(f"--out {out}: cannot write in {parent} ({e.strerror})") from None
    return out


def _default_file_mode() -> int:
    """0666 minus the umask, read without os.umask (which would briefly change it for every thread)."""
    umask = 0o022
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; results are meant to be shared like any file
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=_json_default)


def filesystem(path: str | os.PathLike):
    """(pyarrow FileSystem, path inside it) for a local path or a URI."""
    import pyarrow.fs as pafs

    if is_uri(path):
        return pafs.FileSystem.from_uri(str(path))
    return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomic for a local path; one whole-object put for a URI (object stores have no half-written files)."""
    if not is_uri(path):
        atomic_write_bytes(path, data)
        return
    fs, inner = filesystem(path)
    fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(inner) as f:
        f.write(data)


def read_bytes(path: str | os.PathLike) -> bytes:
    fs, inner = filesystem(path)
    with fs.open_input_stream(inner) as f:
        return f.read()


def exists(path: str | os.PathLike) -> bool:
    import pyarrow.fs as pafs

    fs, inner = filesystem(path)
    return fs.get_file_info(inner).type != pafs.FileType.NotFound
