"""Datasets: EMNIST-letters (official IDX files, the extra-keras-datasets cache, or a download),
FEMNIST letters (same IDX format, with writer ids), and scikit-learn's bundled digits (offline default).

Every loader returns a `Dataset` of upright uint8 images (N, 28, 28), ink bright on black, and integer
labels 0..C-1. Every file read is validated; a bad file is one `UserError` line naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hwclf.errors import UserError

LETTERS = [chr(ord("A") + i) for i in range(26)]
DATA_DIR_ENV = "HWCLF_DATA_DIR"

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension

# extra-keras-datasets keeps EMNIST's matlab.zip under this name in the Keras cache (~/.keras/datasets).
EKD_CACHE_NAME = "emnist_matlab.npz"


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # (N, 28, 28) uint8, upright
    y_train: np.ndarray  # (N,) int64, 0..C-1
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list
    source: str = ""
    writers_train: np.ndarray | None = None  # writer id per image, when the dataset has them
    writers_test: np.ndarray | None = None
    _fingerprint: list = field(default_factory=list, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def fingerprint(self) -> str:
        """sha256 over the arrays (shape, dtype and bytes): what a result was computed from."""
        if not self._fingerprint:
            h = hashlib.sha256()
            for a in (self.x_train, self.y_train, self.x_test, self.y_test):
                a = np.ascontiguousarray(a)
                h.update(f"{a.shape}{a.dtype.str}".encode())
                h.update(a.tobytes())
            self._fingerprint.append(h.hexdigest())
        return self._fingerprint[0]

    def describe(self) -> dict:
        return {
            "name": self.name, "fingerprint": self.fingerprint, "n_train": int(len(self.y_train)),
            "n_test": int(len(self.y_test)), "classes": list(self.classes),
            "has_writers": self.writers_test is not None, "source": self.source,
        }


# ---------------------------------------------------------------------------------------------- IDX files

def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(f"{path}: corrupt or truncated gzip ({e})") from None
    return raw


def read_idx(path: str | os.PathLike, expect_magic: int) -> np.ndarray:
    """Read one IDX file (gzip or not) and check magic, dimensions and length."""
    path = Path(path)
    raw = _read_bytes(path)
    ndim = 3 if expect_magic == IDX_IMAGES_MAGIC else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    (magic,) = struct.unpack(">i", raw[:4])
    if magic != expect_magic:
        kind = "images (2051)" if expect_magic == IDX_IMAGES_MAGIC else "labels (2049)"
        raise UserError(f"{path}: IDX magic number {magic}, expected {kind}; is this the right file?")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    if ndim == 3 and dims[1:] != (28, 28):
        raise UserError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    expected = int(np.prod(dims))
    got = len(raw) - header
    if got != expected:
        raise UserError(f"{path}: {got} data bytes for {dims[0]} items, expected {expected} (truncated or padded file)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def read_idx_split(directory: Path, prefix: str, split: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (upright) and 0-based labels of one split of an EMNIST-format dataset."""
    img_path = _find(directory, f"{prefix}-{split}-images-idx3-ubyte")
    lab_path = _find(directory, f"{prefix}-{split}-labels-idx1-ubyte")
    missing = [n for n, p in ((f"{prefix}-{split}-images-idx3-ubyte.gz", img_path),
                              (f"{prefix}-{split}-labels-idx1-ubyte.gz", lab_path)) if p is None]
    if missing:
        raise UserError(f"{directory}: missing {', '.join(missing)}")
    images = read_idx(img_path, IDX_IMAGES_MAGIC)
    labels = read_idx(lab_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise UserError(f"{img_path}: {len(images)} images but {lab_path.name} has {len(labels)} labels")
    if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
        raise UserError(f"{lab_path}: labels must be 1..{num_classes}, found {labels.min()}..{labels.max()}")
    # EMNIST stores each image transposed relative to MNIST: transpose back to upright.
    return np.ascontiguousarray(images.transpose(0, 2, 1)), labels.astype(np.int64) - 1


def _read_writers(directory: Path, prefix: str, split: str, n: int) -> np.ndarray | None:
    path = directory / f"{prefix}-{split}-writers.txt"
    if not path.is_file():
        return None
    writers = np.array(path.read_text().split())
    if len(writers) != n:
        raise UserError(f"{path}: {len(writers)} writer ids for {n} images")
    return writers


# -------------------------------------------------------------------------------------- where data lives

def _candidate_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """A user's data dir (argument, else $HWCLF_DATA_DIR), and its `<name>/` subfolder."""
    base = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not base:
        return []
    base = Path(base).expanduser()
    if data_dir is not None and not base.is_dir():
        raise UserError(f"--data-dir {base}: no such directory")
    return [base, base / name]


def _idx_dir(prefix: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        if _find(d, f"{prefix}-train-images-idx3-ubyte") or _find(d, f"{prefix}-test-images-idx3-ubyte"):
            return d
    return None


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def ekd_cache_file() -> Path:
    """Where extra-keras-datasets left EMNIST: the Keras cache, or /tmp/.keras where Keras falls back
    when the Keras home is not writable."""
    for d in (keras_cache_dir(), Path("/tmp/.keras/datasets")):
        if (d / EKD_CACHE_NAME).is_file():
            return d / EKD_CACHE_NAME
    return keras_cache_dir() / EKD_CACHE_NAME


def read_ekd_cache(path: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """EMNIST letters from the extra-keras-datasets cache file (EMNIST's matlab.zip under another name)."""
    import zipfile

    from scipy import io as sio

    try:
        with zipfile.ZipFile(path) as z:
            blob = z.read("matlab/emnist-letters.mat")
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise UserError(f"{path}: corrupt extra-keras-datasets cache ({e}); delete it to download again") from None
    except KeyError:
        raise UserError(f"{path}: no matlab/emnist-letters.mat inside; delete it to download again") from None
    try:
        data = sio.loadmat(io.BytesIO(blob))["dataset"]
        out = []
        for split in ("train", "test"):
            s = data[split][0, 0]
            images = np.asarray(s["images"][0, 0], dtype=np.uint8)
            labels = np.asarray(s["labels"][0, 0]).reshape(-1).astype(np.int64)
            if images.ndim != 2 or images.shape[1] != 784:
                raise ValueError(f"{split} images have shape {images.shape}, expected (N, 784)")
            if len(images) != len(labels):
                raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")
            if len(labels) and (labels.min() < 1 or labels.max() > 26):
                raise ValueError(f"{split} labels must be 1..26, found {labels.min()}..{labels.max()}")
            # Same byte order as the IDX files: column-major reshape gives upright letters.
            out.append((np.ascontiguousarray(images.reshape(-1, 28, 28, order="F")), labels - 1))
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise UserError(f"{path}: unexpected content in emnist-letters.mat ({e})") from None
    return out[0], out[1]


def download_emnist_letters() -> Path:
    """Download through extra-keras-datasets (the original study's loader) into the Keras cache."""
    import tempfile

    from extra_keras_datasets import emnist

    # Its loader extracts a .mat into the current directory: give it a scratch one.
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            emnist.load_data(type="letters")
        finally:
            os.chdir(cwd)
    return ekd_cache_file()


def _missing_emnist_message(dirs: list[Path]) -> str:
    where = f"in {dirs[0]}" if dirs else f"with --data-dir DIR or ${DATA_DIR_ENV}"
    return (f"emnist-letters: no local copy and the download failed (offline?). Put the four official files "
            f"emnist-letters-{{train,test}}-{{images-idx3,labels-idx1}}-ubyte.gz {where}, or the "
            f"extra-keras-datasets cache at {keras_cache_dir() / EKD_CACHE_NAME}")


# ----------------------------------------------------------------------------------------------- loaders

def load_emnist_letters(data_dir=None, download: bool = True) -> Dataset:
    dirs = _candidate_dirs("emnist-letters", data_dir)
    d = _idx_dir("emnist-letters", dirs)
    if d is not None:
        train = read_idx_split(d, "emnist-letters", "train", 26)
        test = read_idx_split(d, "emnist-letters", "test", 26)
        return Dataset("emnist-letters", *train, *test, classes=LETTERS, source=str(d))
    if dirs and data_dir is not None:
        raise UserError(f"--data-dir {dirs[0]}: no emnist-letters-{{train,test}}-{{images-idx3,labels-idx1}}-ubyte.gz "
                        f"files there (official EMNIST file names, gzip or not)")
    cache = ekd_cache_file()
    if not cache.is_file() and download:
        try:
            cache = download_emnist_letters()
        except Exception as e:  # network errors come in many types; the message below says what to do
            raise UserError(_missing_emnist_message(dirs) + f" [{type(e).__name__}: {str(e)[:120]}]") from None
    if not cache.is_file():
        raise UserError(_missing_emnist_message(dirs))
    (xtr, ytr), (xte, yte) = read_ekd_cache(cache)
    return Dataset("emnist-letters", xtr, ytr, xte, yte, classes=LETTERS, source=str(cache))


def load_femnist_letters(data_dir=None, download: bool = True) -> Dataset:
    """FEMNIST (NIST SD19 via LEAF) letters packed as EMNIST-letters files, split by writer."""
    prefix = "femnist-letters"
    dirs = _candidate_dirs(prefix, data_dir)
    d = _idx_dir(prefix, dirs)
    if d is None:
        where = str(dirs[0]) if dirs else f"nowhere: give --data-dir DIR or set ${DATA_DIR_ENV}"
        raise UserError(f"femnist-letters: no {prefix}-{{train,test}}-{{images-idx3,labels-idx1}}-ubyte.gz files "
                        f"found ({where}); this workplace keeps them in shared/data/femnist-letters")
    xtr, ytr = read_idx_split(d, prefix, "train", 26)
    xte, yte = read_idx_split(d, prefix, "test", 26)
    return Dataset(prefix, xtr, ytr, xte, yte, classes=LETTERS, source=str(d),
                   writers_train=_read_writers(d, prefix, "train", len(ytr)),
                   writers_test=_read_writers(d, prefix, "test", len(yte)))


def load_digits(data_dir=None, download: bool = True) -> Dataset:
    """scikit-learn's bundled 8x8 digits, resized to 28x28: the offline default for demos and tests."""
    import cv2
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    small = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 ink -> 0..255
    big = np.stack([cv2.resize(im, (28, 28), interpolation=cv2.INTER_LINEAR) for im in small])
    labels = bunch.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(big, labels, test_size=0.2, stratify=labels, random_state=0)
    return Dataset("digits", xtr, ytr, xte, yte, classes=[str(i) for i in range(10)], source="sklearn.datasets.load_digits")


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "emnist-letters": load_emnist_letters,
    "femnist-letters": load_femnist_letters,
}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Dataset:
    if name not in DATASETS:
        raise UserError(f"dataset: unknown value {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name](data_dir=data_dir, download=download)


# ------------------------------------------------------------------------------------ splits and subsets

def subset_per_class(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of at most `per_class` random images of each class (sorted, so order stays by writer)."""
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(keep))


def train_val_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded (train indices, validation indices)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, va = train_test_split(idx, test_size=val_fraction, stratify=y, random_state=seed)
    return np.sort(tr), np.sort(va)


def class_counts(y: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(y, minlength=num_classes)
