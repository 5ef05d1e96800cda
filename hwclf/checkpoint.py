"""Checkpoint integrity: a manifest of sha256 checksums, written last, checked before every restore.

A checkpoint is a directory (weights, Adam state, state.json, maybe the best weights and the evaluation).
A crash mid-write, a full disk or a copy cut short leaves a directory that looks complete but loads wrong
or not at all. The manifest is written after every other file and records each file's size and sha256 and
the identity of the trial that wrote it, so a restore can tell a good checkpoint from a damaged or foreign
one before it touches the model, and fall back instead of dying on an h5py or JSON error, or resuming
someone else's weights.

Checkpoints written before manifests existed ("legacy") are checked as far as their files allow: all
three files present, state.json complete; the weights and Adam state are then checked by loading them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"  # Adam's moments and step count: resuming without them is a restart
BEST_FILE = "best.weights.h5"
STATE_FILE = "state.json"
EVALUATION_FILE = "evaluation.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_SCHEMA = "hwclf.checkpoint/1"
REQUIRED_FILES = (WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE)
STATE_KEYS = ("epoch", "history", "best_val_accuracy", "best_epoch", "train_time_s")

# Config fields that decide what the saved weights and optimizer state mean. Not here: test_blur (testing
# only), threads, data_dir (a path differs between machines; the data fingerprint stands for the data),
# epochs with a constant rate (a trial may be continued for longer; a cosine schedule's length is its shape).
IDENTITY_KEYS = ("dataset", "arch", "se_ratio", "blur_kind", "blur", "seed", "batch_size", "learning_rate",
                 "lr_schedule", "warmup_fraction", "val_fraction", "per_class", "precision", "eval_weights")


def identity(config: dict, data_fingerprint: str) -> dict:
    """What a checkpoint must have been written by to be resumed by this trial (JSON-normalised)."""
    ident = {k: config.get(k) for k in IDENTITY_KEYS}
    if config.get("lr_schedule", "constant") != "constant":
        ident["epochs"] = config.get("epochs")
    ident["data_fingerprint"] = data_fingerprint
    return json.loads(json.dumps(ident))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(directory: Path, ident: dict) -> Path:
    """Checksum every file in `directory` and write the manifest last (atomically), sealing the checkpoint."""
    directory = Path(directory)
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST_FILE}
    tmp = directory / f".{MANIFEST_FILE}.tmp"
    tmp.write_text(json.dumps({"schema": MANIFEST_SCHEMA, "identity": ident, "files": files}, indent=1))
    os.replace(tmp, directory / MANIFEST_FILE)
    return directory / MANIFEST_FILE


class Damaged(Exception):
    """A checkpoint that must not be resumed; the message names the file and the damage."""


def _check_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise Damaged(f"{path}: unreadable ({e})") from None
    except ValueError as e:
        raise Damaged(f"{path}: not valid JSON ({e})") from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
        raise Damaged(f"{path}: incomplete (missing {', '.join(missing)})")
    epoch, history = state["epoch"], state["history"]
    if not isinstance(epoch, int) or epoch < 0 or not isinstance(history, list) or len(history) != epoch:
        rows = len(history) if isinstance(history, list) else "no"
        raise Damaged(f"{path}: inconsistent (epoch {epoch!r} with {rows} history rows)")
    return state


def _check_manifest(directory: Path, ident: dict) -> None:
    path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise Damaged(f"{path}: unreadable ({e})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise Damaged(f"{path}: not a {MANIFEST_SCHEMA} manifest")
    for name in REQUIRED_FILES:
        if name not in files:
            raise Damaged(f"{path}: lists no {name}")
    for name, rec in files.items():
        p = directory / name
        if not p.is_file():
            raise Damaged(f"{p}: missing")
        size = p.stat().st_size
        if size != rec.get("bytes"):
            cut = " (truncated)" if isinstance(rec.get("bytes"), int) and size < rec["bytes"] else ""
            raise Damaged(f"{p}: {size} bytes, the manifest says {rec.get('bytes')}{cut}")
        if sha256_file(p) != rec.get("sha256"):
            raise Damaged(f"{p}: sha256 differs from the manifest (changed after it was written)")
    theirs = manifest.get("identity") or {}
    diff = [k for k in sorted(set(ident) | set(theirs)) if ident.get(k) != theirs.get(k)]
    if diff:
        shown = ", ".join(f"{k}={theirs.get(k)!r} (this trial: {ident.get(k)!r})" for k in diff[:3])
        raise Damaged(f"{directory}: written by another trial: {shown}")


def verify(directory, ident: dict) -> tuple[dict, bool]:
    """The checkpoint's state if it may be resumed by the trial with identity `ident`, and whether it is
    a legacy checkpoint (no manifest: not checksummed); raises Damaged otherwise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise Damaged(f"{directory}: not a directory")
    legacy = not (directory / MANIFEST_FILE).is_file()
    if legacy:
        for name in REQUIRED_FILES:
            if not (directory / name).is_file():
                raise Damaged(f"{directory / name}: missing")
    else:
        _check_manifest(directory, ident)
    return _check_state(directory / STATE_FILE), legacy


def warn(message: str) -> None:
    """One line on stderr (a Ray worker's stderr reaches the driver's console)."""
    print(f"hwclf: warning: {message}", file=sys.stderr, flush=True)
