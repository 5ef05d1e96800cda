"""The original study's visual check: the first images of a dataset at every blur level, labelled."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from hwclf.blur import blur
from hwclf.io import atomic_write_bytes


def preview_png(images: np.ndarray, labels: np.ndarray, classes: list, levels, kind: str = "box",
                title: str = "", columns: int = 10, count: int = 30) -> bytes:
    """PNG bytes: one block of `count` images per blur level (rows of `columns`), each tile labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, labels = images[:count], labels[:count]
    rows_per_level = int(np.ceil(len(images) / columns))
    levels = list(levels)
    fig, axes = plt.subplots(rows_per_level * len(levels), columns,
                             figsize=(columns * 0.9, rows_per_level * len(levels) * 1.0 + 0.6), squeeze=False)
    unit = "k" if kind == "box" else "σ"
    for li, level in enumerate(levels):
        blurred = blur(images, level, kind)
        for i in range(rows_per_level * columns):
            ax = axes[li * rows_per_level + i // columns, i % columns]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if i < len(blurred):
                ax.imshow(blurred[i], cmap="gray", vmin=0, vmax=255)
                ax.set_title(str(classes[labels[i]]), fontsize=8, pad=2)
            if i % columns == 0 and i // columns == 0:
                ax.set_ylabel(f"{unit}={level:g}" if level else "clean", fontsize=9, rotation=0, ha="right", va="center")
    fig.suptitle(title or f"First {len(images)} images at each {kind} blur level", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_preview(path, images, labels, classes, levels, kind="box", title="") -> Path:
    return atomic_write_bytes(path, preview_png(images, labels, classes, levels, kind, title))
