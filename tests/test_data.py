"""Data layer: official EMNIST file format, validation of every file, the EKD cache, splits, real data."""

from __future__ import annotations

import gzip
import http.server
import io
import threading
import zipfile

import numpy as np
import pytest

from conftest import write_emnist_dir, write_idx
from hwclf.data import (DATASETS, LETTERS, load_dataset, read_ekd_cache, subset_per_class, train_val_split)
from hwclf.errors import UserError


def test_official_idx_files_load_upright_with_zero_based_labels(emnist_dir):
    d, expected = emnist_dir
    ds = load_dataset("emnist-letters", d)
    x, y = expected["train"]
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape == (52, 28, 28)
    np.testing.assert_array_equal(ds.y_train, y)
    np.testing.assert_array_equal(ds.x_train, x)
    # upright: the bright bar of class c is row c, not column c
    assert (ds.x_train[np.arange(52), ds.y_train, :] == 255).all()
    assert ds.classes == LETTERS and ds.num_classes == 26


def test_uncompressed_files_and_env_var_and_subfolder(tmp_path, monkeypatch):
    write_emnist_dir(tmp_path / "root" / "emnist-letters", compress=False)
    monkeypatch.setenv("HWCLF_DATA_DIR", str(tmp_path / "root"))
    ds = load_dataset("emnist-letters")
    assert len(ds.y_test) == 52


@pytest.mark.parametrize("damage, message", [
    ("magic", "magic number 2049, expected images (2051)"),
    ("truncate", "truncated"),
    ("corrupt_gzip", "corrupt or truncated gzip"),
    ("dims", "images are 27x28, expected 28x28"),
    ("label_range", "labels must be 1..26, found 1..27"),
    ("count", "52 images but"),
    ("missing", "missing emnist-letters-test-labels-idx1-ubyte.gz"),
])
def test_every_bad_file_is_one_line_naming_the_file(tmp_path, damage, message):
    d = tmp_path / "bad"
    write_emnist_dir(d)
    img = d / "emnist-letters-train-images-idx3-ubyte.gz"
    lab = d / "emnist-letters-train-labels-idx1-ubyte.gz"
    if damage == "magic":
        write_idx(img, np.zeros((52, 28, 28)), magic=2049)
    elif damage == "truncate":
        raw = gzip.decompress(img.read_bytes())
        img.write_bytes(gzip.compress(raw[:-100]))
    elif damage == "corrupt_gzip":
        img.write_bytes(img.read_bytes()[:200])
    elif damage == "dims":
        write_idx(img, np.zeros((52, 27, 28)))
    elif damage == "label_range":
        write_idx(lab, np.r_[np.ones(51), 27])
    elif damage == "count":
        write_idx(lab, np.ones(50))
    elif damage == "missing":
        (d / "emnist-letters-test-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError) as e:
        load_dataset("emnist-letters", d)
    text = str(e.value)
    assert message in text and "\n" not in text
    if damage != "missing":
        assert "emnist-letters-train" in text  # names the file


def _ekd_zip(path, n_per_class=2):
    """The extra-keras-datasets cache: EMNIST's matlab.zip holding matlab/emnist-letters.mat."""
    from scipy import io as sio

    from conftest import official_letters

    mats = {}
    for split, seed in (("train", 0), ("test", 1)):
        images, labels = official_letters(n_per_class, seed)
        # The .mat rows hold the same byte order as the IDX files (transposed images).
        flat = images.transpose(0, 2, 1).reshape(len(images), 784)
        mats[split] = {"images": flat, "labels": (labels + 1).reshape(-1, 1).astype(np.uint8)}
    buf = io.BytesIO()
    sio.savemat(buf, {"dataset": mats})
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("matlab/emnist-letters.mat", buf.getvalue())
    return path


def test_extra_keras_datasets_cache_is_read_upright(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("HWCLF_DATA_DIR", raising=False)
    _ekd_zip(tmp_path / "keras" / "datasets" / "emnist_matlab.npz")
    ds = load_dataset("emnist-letters", download=False)
    assert (ds.x_train[np.arange(52), ds.y_train, :] == 255).all()
    assert ds.y_train.min() == 0 and ds.y_train.max() == 25


def test_download_goes_through_extra_keras_datasets_into_the_cache(tmp_path, monkeypatch):
    """A real HTTP download (from a server on this machine) through the seed's loader."""
    from extra_keras_datasets import emnist

    served = tmp_path / "www"
    _ekd_zip(served / "matlab.zip")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/matlab.zip"
    real_get_file = emnist.get_file
    keras_home = tmp_path / "keras"  # Keras reads $KERAS_HOME once, at import: pass it on
    keras_home.mkdir()
    monkeypatch.setattr(emnist, "get_file", lambda path, origin: real_get_file(path, origin=url, cache_dir=str(keras_home)))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("HWCLF_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        ds = load_dataset("emnist-letters")
    finally:
        server.shutdown()
    assert (tmp_path / "keras" / "datasets" / "emnist_matlab.npz").is_file()
    assert len(ds.y_train) == 52 and not list(tmp_path.glob("*.mat"))  # no litter in the working directory


def test_offline_without_copy_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("HWCLF_DATA_DIR", raising=False)
    with pytest.raises(UserError, match="emnist-letters-{train,test}-{images-idx3,labels-idx1}-ubyte.gz"):
        load_dataset("emnist-letters", download=False)


def test_corrupt_cache_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("HWCLF_DATA_DIR", raising=False)
    p = tmp_path / "keras" / "datasets" / "emnist_matlab.npz"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="corrupt extra-keras-datasets cache"):
        read_ekd_cache(p)


def test_unknown_dataset_lists_the_allowed_ones():
    with pytest.raises(UserError, match="allowed: digits, emnist-letters, femnist-letters"):
        load_dataset("mnist")


def test_digits_is_offline_28x28_with_a_fixed_split(digits):
    assert digits.x_train.shape == (1437, 28, 28) and digits.x_test.shape == (360, 28, 28)
    assert digits.x_train.dtype == np.uint8 and digits.x_train.max() > 200
    assert load_dataset("digits").fingerprint == digits.fingerprint
    assert set(np.bincount(digits.y_test)) <= {35, 36, 37}  # stratified


def test_validation_split_is_stratified_seeded_and_disjoint(digits):
    tr, va = train_val_split(digits.y_train, 0.2, seed=3)
    assert not set(tr) & set(va) and len(tr) + len(va) == len(digits.y_train)
    frac = np.bincount(digits.y_train[va], minlength=10) / np.bincount(digits.y_train, minlength=10)
    assert np.allclose(frac, 0.2, atol=0.03)
    tr2, va2 = train_val_split(digits.y_train, 0.2, seed=3)
    np.testing.assert_array_equal(va, va2)
    assert not np.array_equal(va, train_val_split(digits.y_train, 0.2, seed=4)[1])


def test_subset_per_class_caps_each_class(digits):
    idx = subset_per_class(digits.y_train, 20, seed=0)
    assert (np.bincount(digits.y_train[idx]) == 20).all()


def test_fingerprint_changes_with_one_pixel(emnist_dir):
    d, _ = emnist_dir
    a = load_dataset("emnist-letters", d)
    x = a.x_train.copy()
    x[0, 0, 0] ^= 1
    b = type(a)(a.name, x, a.y_train, a.x_test, a.y_test, a.classes)
    assert a.fingerprint != b.fingerprint and len(a.fingerprint) == 64


@pytest.mark.realdata
def test_femnist_letters_matches_its_readme(femnist_dir):
    """The real files: README counts, class balance, writer-disjoint split, upright letters."""
    ds = load_dataset("femnist-letters", femnist_dir)
    assert (len(ds.y_train), len(ds.y_test)) == (19884, 5034)
    counts = np.bincount(ds.y_train, minlength=26)
    assert counts[LETTERS.index("J")] == 504 and counts[LETTERS.index("E")] == 1078
    assert len(set(ds.writers_train)) == 555 and len(set(ds.writers_test)) == 137
    assert not set(ds.writers_train) & set(ds.writers_test)
    # Upright: handwriting has more ink in the vertical middle band than the horizontal one would be
    # if transposed... the mean image of the letter 'I' is a vertical stroke: column variance >> row variance.
    mean_i = ds.x_train[ds.y_train == LETTERS.index("I")].mean(axis=0)
    assert mean_i.mean(axis=0).std() > 1.5 * mean_i.mean(axis=1).std()


def test_all_registered_datasets_documented():
    assert set(DATASETS) == {"digits", "emnist-letters", "femnist-letters"}
