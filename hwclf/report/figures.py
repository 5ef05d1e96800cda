"""Figures as PNG bytes (matplotlib Agg, no pyplot), so making a report never touches a user's GUI backend or
global figure state, and every figure can be written atomically.

Each figure title says the dataset and what is plotted; bands are over seeds and drawn only where there are
at least two seeds (one seed has no spread to show).
"""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from hwclf import mixture
from hwclf.report.families import family, panel_layout
from hwclf.report.fmt import fmt_blur
from hwclf.report.load import Experiment
from hwclf.report.tables import lookup

DPI = 110
RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
      "legend.fontsize": 9, "figure.titlesize": 12, "axes.spines.top": False, "axes.spines.right": False}


def to_png(fig: Figure, palette: bool = True) -> bytes:
    """The figure as a 256-colour PNG, about a third of the full-colour size, so the one-file report.html
    (images inlined) stays small enough to mail and commit. A maximum-coverage palette without dithering
    keeps every pixel within ~16 of 255 of its full colour: lines, bands and labels look the same.
    ``palette=False`` for figures with a continuous colour scale, whose colour bar would show steps."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    if not palette:
        return buf.getvalue()
    image = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MAXCOVERAGE,
                                                    dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def arch_styles(archs: list) -> dict:
    """One colour per family (basic, resnet, ...), dashed with square markers for the squeeze-excitation
    variant, so basic and basic_se read as a pair."""
    fams = list(dict.fromkeys(family(a) for a in archs))
    cmap = matplotlib.colormaps["tab10"]
    out = {}
    for a in archs:
        se = a != family(a)
        out[a] = {"color": cmap(fams.index(family(a)) % 10), "linestyle": "--" if se else "-",
                  "marker": "s" if se else "o"}
    return out


def blur_axis_label(exp: Experiment, what: str = "test blur") -> str:
    unit = "Gaussian σ, px" if exp.blur_kind == "gaussian" else "box kernel width, px"
    return f"{what} ({unit})"


def _blur_ticks(ax, levels):
    ax.set_xticks(list(levels))
    ax.set_xticklabels([fmt_blur(k) for k in levels])


def curves_figure(exp: Experiment, matrix: pd.DataFrame, metric: str = "accuracy") -> bytes:
    """Two panels: clean-trained models at every test blur, and models tested at the blur they were trained on."""
    look = lookup(matrix)
    scale = 100.0 if metric == "accuracy" else 1.0
    styles = arch_styles(exp.archs)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(12, 5.0), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        panels = [
            ("Trained clean (train blur 0), tested at each blur",
             lambda a: [(k, look.get((a, 0, k)), exp.expected(a, 0)) for k in exp.test_blurs]
             if 0 in exp.train_blurs else []),
            ("Trained and tested at the same blur (matched)",
             lambda a: [(k, look.get((a, k, k)), exp.expected(a, k)) for k in exp.train_blurs if k in exp.test_blurs]),
        ]
        handles = {}
        any_partial = False
        for ax, (title, points) in zip(axes, panels):
            xs_all = set()
            for a in exp.archs:
                pts3 = [(k, r, e) for k, r, e in points(a) if r is not None and r["n"] > 0]
                if not pts3:
                    continue
                pts = [(k, r) for k, r, _ in pts3]
                short = [(k, r) for k, r, e in pts3 if r["n"] < e]
                x = np.array([k for k, _ in pts], dtype=float)
                y = np.array([r["mean"] for _, r in pts]) * scale
                lo = np.array([r["ci_low"] if r["n"] > 1 else np.nan for _, r in pts]) * scale
                hi = np.array([r["ci_high"] if r["n"] > 1 else np.nan for _, r in pts]) * scale
                st = styles[a]
                (line,) = ax.plot(x, y, color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                                  markersize=5, linewidth=1.6, label=a)
                ok = np.isfinite(lo) & np.isfinite(hi)
                # A t-interval over 3 seeds can reach past what the metric can be: draw it within the
                # possible range (accuracy 0-100 %, loss >= 0); the CSVs keep the unclipped interval.
                lo, hi = np.maximum(lo, 0), (np.minimum(hi, 100) if scale == 100 else hi)
                if ok.any():
                    ax.fill_between(x[ok], lo[ok], hi[ok], color=st["color"], alpha=0.13, linewidth=0)
                if short:  # hollow markers: fewer complete seeds than planned
                    any_partial = True
                    ax.plot([k for k, _ in short], [r["mean"] * scale for _, r in short], linestyle="none",
                            marker=st["marker"], markersize=8, markerfacecolor="white", markeredgecolor=st["color"],
                            markeredgewidth=1.5, zorder=6)
                handles[a] = line
                xs_all.update(x.tolist())
            ax.set_title(title)
            ax.set_xlabel(blur_axis_label(exp, "test blur" if "clean" in title else "train = test blur"))
            if xs_all:
                _blur_ticks(ax, sorted(xs_all))
            else:
                ax.text(0.5, 0.5, "no complete trials", transform=ax.transAxes, ha="center", va="center", color="grey")
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel("test accuracy (%)" if metric == "accuracy" else "test loss (cross-entropy)")
        what = "test accuracy" if metric == "accuracy" else "test loss"
        fig.suptitle(f"{exp.dataset_name}: {what} vs {exp.blur_kind} blur — mean over seeds, band = 95% CI")
        if any_partial:
            handles["hollow marker: fewer seeds than planned"] = Line2D([], [], linestyle="none", marker="o",
                                                                        markerfacecolor="white", markeredgecolor="grey")
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                       ncol=min(len(handles), 7 if any_partial else 6), frameon=False)
        return to_png(fig)


def _panels(fig: Figure, layout: list, sharey: bool = False) -> list:
    """Subplots for a `panel_layout`: (axes, arch) per used slot; empty slots are switched off."""
    grid = fig.subplots(len(layout), len(layout[0]), squeeze=False, sharey=sharey)
    panels = []
    for row, arch_row in zip(grid, layout):
        for ax, arch in zip(row, arch_row):
            if arch is None:
                ax.axis("off")
            else:
                panels.append((ax, arch))
    return panels


def heatmap_cell_label(mean_pct: float, n, planned: int) -> str:
    """A cell's text: its mean, and under it how many seeds it rests on when fewer than planned (a mean of
    one seed must not read like a mean of three)."""
    if not np.isfinite(mean_pct):
        return "—"
    text = f"{mean_pct:.1f}"
    if n is not None and np.isfinite(n) and int(n) < planned:
        text += f"\nn={int(n)}"
    return text


def heatmaps_figure(exp: Experiment, matrix: pd.DataFrame) -> bytes:
    """Train blur x test blur mean accuracy, one panel per architecture, one colour scale for all."""
    look = lookup(matrix)
    layout = panel_layout(exp.archs)
    nrows, ncols = len(layout), len(layout[0])
    nb, nk = len(exp.train_blurs), len(exp.test_blurs)
    vals = matrix["mean"].to_numpy(dtype=float) * 100
    vals = vals[np.isfinite(vals)]
    vmin = float(np.floor(vals.min())) if vals.size else 0.0
    vmax = float(np.ceil(vals.max())) if vals.size else 100.0
    if vmax <= vmin:
        vmin, vmax = vmin - 1, vmax + 1
    norm = Normalize(vmin, vmax)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
    cell_w = max(0.62, 3.4 / max(nk, 1))
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(ncols * (nk * cell_w + 1.2) + 1.2, nrows * (nb * 0.5 + 1.5) + 0.7), layout="constrained")
        panels = _panels(fig, layout)
        im, partial = None, False
        for ax, arch in panels:
            cells = [[look.get((arch, b, k), {}) for k in exp.test_blurs] for b in exp.train_blurs]
            m = np.array([[c.get("mean", np.nan) for c in row] for row in cells], dtype=float) * 100
            counts = np.array([[c.get("n", np.nan) for c in row] for row in cells], dtype=float)
            partial = partial or bool(np.any(np.isfinite(m) & (counts < len(exp.seeds))))
            im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, norm=norm, aspect="auto")
            for i in range(nb):
                for j in range(nk):
                    v = m[i, j]
                    txt = heatmap_cell_label(v, counts[i, j], len(exp.seeds))
                    dark = np.isfinite(v) and norm(v) < 0.55
                    ax.text(j, i, txt, ha="center", va="center", fontsize=8.5 if "\n" not in txt else 7.5,
                            color="white" if dark else "black")
            ax.set_xticks(range(nk), [fmt_blur(k) for k in exp.test_blurs])
            ax.set_yticks(range(nb), [fmt_blur(b) for b in exp.train_blurs])
            ax.set_xlabel("test blur")
            ax.set_ylabel("train blur")
            ax.set_title(arch)
            for s in ax.spines.values():
                s.set_visible(False)
        if im is not None:
            fig.colorbar(im, ax=[ax for ax, _ in panels], label="test accuracy (%)", shrink=0.8)
        fig.suptitle(f"{exp.dataset_name}: mean test accuracy (%) over seeds, train blur × test blur "
                     f"({exp.blur_kind} blur)"
                     + (f"; n=k: a cell resting on k of {len(exp.seeds)} seeds" if partial else ""))
        return to_png(fig, palette=False)


def train_blur_styles(blurs: list) -> dict:
    """A line style per train blur: levels on one colour scale, mixtures dashed in colours off that scale,
    so a mixture is never read as one more blur level."""
    levels = [b for b in blurs if not mixture.is_mix(b)]
    mixes = [b for b in blurs if mixture.is_mix(b)]
    scale = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(levels), 1)))
    off_scale = ["tab:red", "tab:orange", "tab:pink", "tab:brown"]
    styles = {b: {"color": scale[i], "linestyle": "-"} for i, b in enumerate(levels)}
    styles.update({m: {"color": off_scale[i % len(off_scale)], "linestyle": "--"} for i, m in enumerate(mixes)})
    return styles


def learning_curves_figure(exp: Experiment, curves: pd.DataFrame) -> bytes | None:
    """Validation accuracy and loss per epoch, mean over seeds with a ±1 std band, one line per train blur."""
    if curves is None or not len(curves):
        return None
    archs = [a for a in exp.archs if (curves["arch"] == a).any()]
    blurs = exp.train_blurs
    styles = train_blur_styles(blurs)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(11, 2.3 * len(archs) + 1.3), layout="constrained")
        axes = fig.subplots(len(archs), 2, sharex=True, squeeze=False)
        handles = {}
        for row, arch in zip(axes, archs):
            for col, (metric, scale, ylabel) in enumerate((("val_accuracy", 100.0, "val accuracy (%)"),
                                                           ("val_loss", 1.0, "val loss"))):
                ax = row[col]
                for b in blurs:
                    g = curves[(curves["arch"] == arch) & (curves["train_blur"] == b)]
                    if not len(g):
                        continue
                    stats = g.groupby("epoch")[metric].agg(["mean", "std", "count"]).sort_index()
                    x = stats.index.to_numpy(dtype=float)
                    y = stats["mean"].to_numpy() * scale
                    s = stats["std"].to_numpy() * scale
                    (line,) = ax.plot(x, y, **styles[b], linewidth=1.5, marker="o" if len(x) < 4 else None,
                                      markersize=3)
                    ok = np.isfinite(s) & (stats["count"].to_numpy() > 1)
                    if ok.any():
                        ax.fill_between(x[ok], (y - s)[ok], (y + s)[ok], color=styles[b]["color"], alpha=0.15,
                                        linewidth=0)
                    handles[f"train blur {fmt_blur(b)}"] = line
                ax.set_ylabel(ylabel)
                ax.set_title(f"{arch}: {ylabel.split(' (')[0]}", fontsize=10)
                ax.grid(True, alpha=0.3)
                ax.xaxis.get_major_locator().set_params(integer=True)
        for ax in axes[-1]:
            ax.set_xlabel("epoch")
        fig.suptitle(f"{exp.dataset_name}: learning curves on the validation split — mean over seeds, band = ±1 std")
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 6),
                       frameon=False)
        return to_png(fig)


def per_letter_figure(exp: Experiment, drops: pd.DataFrame) -> bytes | None:
    """Per-letter accuracy drop of the clean-trained models, clean test vs each blurred level: letters x blur,
    one panel per architecture, red = accuracy lost."""
    if drops is None or not len(drops):
        return None
    archs = [a for a in exp.archs if (drops["arch"] == a).any()]
    levels = sorted(drops["test_blur"].unique())
    classes = list(dict.fromkeys(drops.sort_values("class_index")["class"]))
    nc, nk = len(classes), len(levels)
    vals = drops.loc[drops["arch"].isin(archs), "drop"].to_numpy(dtype=float) * 100
    vals = vals[np.isfinite(vals)]
    vmax = max(float(vals.max()) if vals.size else 0.0, 1.0)
    vmin = min(float(vals.min()) if vals.size else 0.0, -1.0)
    # Red for accuracy lost, blue for gained; the blue side is at least a quarter of the red one so that a tiny
    # gain is not painted as a strong colour.
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(vmin, -0.25 * vmax), vmax=max(vmax, -0.25 * vmin))
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#dddddd")
    annotate = nc * nk <= 26 * 8
    panel_w = max(1.7, 0.42 * nk + 0.6)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(max(len(archs) * panel_w + 2.0, 8.5), 0.26 * nc + 2.4), layout="constrained")
        axes = fig.subplots(1, len(archs), sharey=True, squeeze=False)[0]
        im = None
        for ax, arch in zip(axes, archs):
            g = drops[drops["arch"] == arch]
            m = np.full((nc, nk), np.nan)
            for r in g.to_dict("records"):
                m[int(r["class_index"]), levels.index(r["test_blur"])] = r["drop"] * 100
            im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, norm=norm, aspect="auto")
            if annotate:
                for i in range(nc):
                    for j in range(nk):
                        if np.isfinite(m[i, j]):
                            ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=6.5,
                                    color="white" if abs(norm(m[i, j]) - 0.5) > 0.33 else "black")
            ax.set_xticks(range(nk), [fmt_blur(k) for k in levels])
            ax.set_xlabel("test blur")
            ax.set_title(arch, fontsize=10)
            for s in ax.spines.values():
                s.set_visible(False)
        axes[0].set_yticks(range(nc), classes)
        axes[0].set_ylabel("true class")
        if im is not None:
            fig.colorbar(im, ax=list(axes), label="points lost vs clean test", shrink=0.6 if nc > 8 else 0.9)
        fig.suptitle(f"{exp.dataset_name}: per-{exp.class_nouns[0]} accuracy lost to blur\n(models trained clean; clean-test minus "
                     f"blurred-test accuracy, mean over seeds; red = lost)")
        return to_png(fig, palette=False)


def writers_figure(exp: Experiment, accs: dict, arch: str, min_images: int) -> bytes | None:
    """Per-writer accuracy distribution at each test blur for one architecture: trained clean, and matched."""
    if not accs or arch is None:
        return None
    panels = []
    if 0 in exp.train_blurs:
        panels.append(("trained clean", [(k, accs.get((arch, 0, k))) for k in exp.test_blurs]))
    panels.append(("trained at the test blur (matched)", [(k, accs.get((arch, k, k))) for k in exp.test_blurs
                                                           if k in exp.train_blurs]))
    panels = [(t, [(k, a) for k, a in p if a is not None and len(a)]) for t, p in panels]
    panels = [(t, p) for t, p in panels if p]
    if not panels:
        return None
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(max(6 * len(panels), 10), 5.0), layout="constrained")
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (title, pts) in zip(axes, panels):
            data = [a * 100 for _, a in pts]
            ax.violinplot(data, positions=range(len(data)), widths=0.8, showextrema=False)
            ax.boxplot(data, positions=range(len(data)), widths=0.25, tick_labels=[fmt_blur(k) for k, _ in pts],
                       showfliers=False, medianprops={"color": "black"})
            nw = max(len(a) for _, a in pts)
            ax.set_title(f"{arch}, {title} ({nw} writers)")
            ax.set_xlabel("test blur")
            ax.grid(True, axis="y", alpha=0.3)
        axes[0].set_ylabel("per-writer accuracy (%)")
        fig.suptitle(f"{exp.dataset_name}: spread of accuracy across test writers (≥ {min_images} test images each)\n"
                     "box = quartiles, whiskers = 1.5 IQR, violin = density; seeds pooled")
        return to_png(fig)


def robust_figure(exp: Experiment, robust: pd.DataFrame) -> bytes | None:
    """Accuracy vs test blur per architecture with a mixture: the mixture model(s), the matched model (trained at
    each test blur) and the clean-trained model, 95% CI bands over seeds; dotted lines at the mixture's levels."""
    if robust is None or not len(robust):
        return None
    archs = [a for a in exp.archs if (robust["arch"] == a).any()]
    layout = panel_layout(archs)
    nrows, ncols = len(layout), len(layout[0])
    mix_colors = matplotlib.colormaps["tab10"]
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(max(5.2 * ncols + 0.6, 9.5), 4.2 * nrows + 1.1), layout="constrained")
        panels = _panels(fig, layout, sharey=True)
        handles = {}
        for ax, arch in panels:
            g = robust[robust["arch"] == arch]
            mixes = list(dict.fromkeys(g["mixture"]))
            first = g[g["mixture"] == mixes[0]]
            series = [("trained clean", first, "clean", "#7f7f7f", "-", "o"),
                      ("trained at the test blur (matched; only where the grid has that level)", first, "matched",
                       "black", "none", "s")]
            series += [(f"trained on {fmt_blur(m)}", g[g["mixture"] == m], "mixture", mix_colors(i % 10 + 1), "-", "D")
                       for i, m in enumerate(mixes)]
            for m in mixes:
                for level in mixture.mix_levels(m):
                    ax.axvline(float(level), color="#bbbbbb", linestyle=":", linewidth=1, zorder=0)
            for label, rows, who, color, ls, marker in series:
                rows = rows[rows[f"{who}_n"] > 0]
                if not len(rows):
                    continue
                x = rows["test_blur"].to_numpy(dtype=float)
                y = rows[f"{who}_mean"].to_numpy(dtype=float) * 100
                lo = np.maximum(rows[f"{who}_ci_low"].to_numpy(dtype=float) * 100, 0)
                hi = np.minimum(rows[f"{who}_ci_high"].to_numpy(dtype=float) * 100, 100)
                ok = np.isfinite(lo) & np.isfinite(hi)
                if ls == "none":  # separate models, one per level: points with CI bars, no line between them
                    (line,) = ax.plot(x, y, color=color, linestyle="none", marker=marker, markersize=6, zorder=5)
                    ax.errorbar(x[ok], y[ok], yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], fmt="none", ecolor=color,
                                capsize=3, linewidth=1.2, zorder=5)
                else:
                    (line,) = ax.plot(x, y, color=color, linestyle=ls, marker=marker, markersize=5, linewidth=1.6)
                    if ok.any():
                        ax.fill_between(x[ok], lo[ok], hi[ok], color=color, alpha=0.13, linewidth=0)
                handles[label] = line
            ax.set_title(arch)
            ax.set_xlabel(blur_axis_label(exp))
            _blur_ticks(ax, exp.test_blurs)
            ax.grid(True, alpha=0.3)
        for ax, _ in panels:
            if ax.get_subplotspec().is_first_col():
                ax.set_ylabel("test accuracy (%)")
        fig.suptitle(f"{exp.dataset_name}: is one robust model enough? A blur mixture vs the specialists\n"
                     "mean over seeds, band / bar = 95% CI, dotted lines = the mixture's levels")
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                       ncol=min(len(handles), 2 if ncols == 1 else 4), frameon=False)
        return to_png(fig)


def se_figure(exp: Experiment, se: pd.DataFrame) -> bytes | None:
    """A forest plot per family: SE twin minus plain net (points) with its 95% CI in every setting, one row per
    setting; a filled marker holds after Holm's correction within the family, a hollow one does not."""
    from hwclf.report.se import NEAR_CHANCE, setting_text
    from hwclf.report.stats import ALPHA, TOO_FEW

    if se is None or not len(se):
        return None
    families = list(dict.fromkeys(se["family"]))
    settings = list(dict.fromkeys(zip(se["setting"], se["train_blur"], se["test_blur"])))
    styles = arch_styles(exp.archs)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(3.9 * len(families) + 2.6, 0.32 * len(settings) + 2.0), layout="constrained")
        axes = fig.subplots(1, len(families), squeeze=False, sharey=True, sharex=True)[0]
        y_of = {s: i for i, s in enumerate(settings)}
        for ax, fam in zip(axes, families):
            g = se[se["family"] == fam]
            color = styles.get(fam, {}).get("color", "black")
            ax.axvline(0, color="#555555", linewidth=1, zorder=1)
            for r in g.to_dict("records"):
                y = y_of[(r["setting"], r["train_blur"], r["test_blur"])]
                if not r["n"] or not np.isfinite(r["diff"]):
                    continue
                d = r["diff"] * 100
                if r["verdict"] == NEAR_CHANCE:
                    ax.plot([d], [y], marker="x", color="#aaaaaa", linestyle="none", zorder=3)
                    continue
                if r["verdict"] == TOO_FEW:  # one or two seeds: a value, no interval, no test
                    ax.plot([d], [y], marker="D", markersize=5, color=color, markerfacecolor="white", alpha=0.6,
                            linestyle="none", zorder=3)
                    continue
                lo, hi = r["ci_low"] * 100, r["ci_high"] * 100
                if np.isfinite(lo) and np.isfinite(hi):
                    ax.plot([lo, hi], [y, y], color=color, linewidth=1.6, zorder=2)
                held = np.isfinite(r["p_holm"]) and r["p_holm"] < ALPHA
                ax.plot([d], [y], marker="o", markersize=6, color=color, markerfacecolor=color if held else "white",
                        linestyle="none", zorder=3)
            ax.set_title(f"{g['twin'].iloc[0]} − {fam}")
            ax.set_xlabel("difference (points)")
            ax.grid(True, axis="x", alpha=0.3)
        axes[0].set_yticks(range(len(settings)))
        axes[0].set_yticklabels([setting_text(*s) for s in settings])
        axes[0].invert_yaxis()
        handles = [Line2D([], [], marker="o", color="#444444", linestyle="-", label="held after Holm (p < 0.05)"),
                   Line2D([], [], marker="o", color="#444444", markerfacecolor="white", linestyle="-",
                          label="within the seed spread (or not after Holm)"),
                   Line2D([], [], marker="x", color="#aaaaaa", linestyle="none", label="both near chance: not tested")]
        if (se["verdict"] == TOO_FEW).any():
            handles.append(Line2D([], [], marker="D", color="#444444", markerfacecolor="white", alpha=0.6,
                                  linestyle="none", label="fewer than 3 paired seeds: no test"))
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
        fig.suptitle(f"{exp.dataset_name}: what the Squeeze-and-Excitation block changes\n"
                     "SE twin minus plain net, trained the same way; mean over paired seeds, bar = 95% CI")
        return to_png(fig)
