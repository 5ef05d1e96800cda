"""Shared fixtures: small official-format EMNIST files written by the tests, and the real shared data."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HWCLF_SHARED_DATA", REPO.parent / "shared" / "data"))
FEMNIST_DIR = SHARED_DATA / "femnist-letters"


def write_idx(path: Path, array: np.ndarray, *, magic: int | None = None, compress: bool = True) -> Path:
    """Write `array` (uint8) as an IDX file exactly as the official EMNIST files are laid out."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if magic is None:
        magic = 2051 if array.ndim == 3 else 2049
    payload = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return path


def official_letters(n_per_class: int = 2, seed: int = 0):
    """Upright test letters: class c has a bright bar in row c (so orientation is checkable)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(26), n_per_class)
    images = rng.integers(0, 20, (len(labels), 28, 28)).astype(np.uint8)
    images[np.arange(len(labels)), labels, :] = 255  # row index = class, upright
    return images, labels


def write_emnist_dir(directory: Path, prefix: str = "emnist-letters", n_per_class: int = 2, compress: bool = True):
    """The four official files, stored transposed with labels 1..26 as EMNIST does."""
    out = {}
    for split, seed in (("train", 0), ("test", 1)):
        images, labels = official_letters(n_per_class, seed)
        suffix = ".gz" if compress else ""
        write_idx(directory / f"{prefix}-{split}-images-idx3-ubyte{suffix}", images.transpose(0, 2, 1), compress=compress)
        write_idx(directory / f"{prefix}-{split}-labels-idx1-ubyte{suffix}", labels + 1, compress=compress)
        out[split] = (images, labels)
    return out


@pytest.fixture
def emnist_dir(tmp_path):
    d = tmp_path / "emnist"
    expected = write_emnist_dir(d)
    return d, expected


@pytest.fixture(scope="session")
def femnist_dir() -> Path:
    if not (FEMNIST_DIR / "femnist-letters-train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real data absent: {FEMNIST_DIR} has no femnist-letters files (see shared/data/README.md)")
    return FEMNIST_DIR


@pytest.fixture(scope="session")
def digits():
    from hwclf.data import load_dataset

    return load_dataset("digits")


@pytest.fixture
def fast_figures(monkeypatch):
    """For report tests about tables, text and files: skip the (slow) drawing, keep a valid PNG in each figure's
    place (robust.png only where there is a mixture row)."""
    from hwclf.report import figures

    png = figures.to_png(__import__("matplotlib.figure", fromlist=["Figure"]).Figure(figsize=(1, 1)))
    for name in ("curves_figure", "heatmaps_figure", "learning_curves_figure", "per_letter_figure"):
        monkeypatch.setattr(figures, name, lambda *a, **k: png)
    monkeypatch.setattr(figures, "writers_figure", lambda exp, accs, *a, **k: png if accs else None)
    monkeypatch.setattr(figures, "robust_figure", lambda exp, robust: png if len(robust) else None)
    return png
