"""report.html: self-contained (images as PNG data URIs), escaped, and rendered by a real browser."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from hwclf.report import write_report
from test_report_fakes import _write_samples, make_known, write_trial

EVIL = "<script>alert('x')</script>"
IMG_RE = re.compile(r'<img\s+src="([^"]*)"')
FIGURES = ["samples.png", "accuracy_vs_blur.png", "loss_vs_blur.png", "heatmaps.png", "learning_curves.png",
           "per_letter.png", "writers.png"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    exp = make_known(root / "study", name=f"demo{EVIL}", description=f"{EVIL} & <b>bold</b>", extra={"note": EVIL},
                     fail={("basic", 5, 2)})
    # a failed trial whose error message carries markup
    write_trial(exp, "basic", 5, 2, status="failed", error="RuntimeError: <img src=x onerror=alert(1)>")
    _write_samples(exp, [0, 5, 10])
    html = write_report(str(exp), quiet=True)
    return html, html.read_text()


def test_every_image_is_an_embedded_png(report):
    html_path, html = report
    srcs = IMG_RE.findall(html)
    assert len(srcs) == len(FIGURES) == len(re.findall(r"<img\b", html))
    for src, name in zip(srcs, FIGURES):
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data == (html_path.parent / name).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 100
    assert "src=\"http" not in html and "href=\"http" not in html  # nothing fetched from elsewhere


def test_figures_are_palette_pngs_that_look_like_the_full_colour_render():
    """256 colours keep report.html a third of its full-colour size; the picture must not change visibly."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hwclf.report.figures import DPI, to_png

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    x = np.linspace(0, 30, 9)
    for i, color in enumerate(["tab:blue", "tab:orange", "tab:green", "#7f7f7f"]):
        y = 90 - i * 10 - x * (i + 1)
        ax.plot(x, y, color=color, marker="o", linestyle="--" if i % 2 else "-")
        ax.fill_between(x, y - 5, y + 5, color=color, alpha=0.13, linewidth=0)
    ax.errorbar([5, 20], [80, 60], yerr=[[3, 4], [3, 4]], fmt="s", color="black", capsize=3)
    ax.grid(True, alpha=0.3)
    ax.set_title("mean test accuracy (%)")
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    png = to_png(fig)
    assert len(png) < 0.6 * len(buf.getvalue())
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "P"
        small = np.asarray(im.convert("RGB"), dtype=int)
    full = np.asarray(Image.open(buf).convert("RGB"), dtype=int)
    diff = np.abs(small - full).max(axis=-1)
    assert diff.max() <= 24 and diff.mean() < 2.0  # no pixel off by more than a tenth of its range


def test_colour_scales_keep_full_colour_and_line_plots_a_palette(report):
    """A palette would turn a heatmap's smooth colour bar into steps; line plots lose nothing in one."""
    html_path, _ = report
    modes = {}
    for name in FIGURES:
        with Image.open(html_path.parent / name) as im:
            modes[name] = im.mode
    assert modes["heatmaps.png"] in ("RGB", "RGBA") and modes["per_letter.png"] in ("RGB", "RGBA")
    assert modes["accuracy_vs_blur.png"] == modes["learning_curves.png"] == modes["writers.png"] == "P"


def test_config_and_error_strings_are_escaped(report):
    html_path, html = report
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>" not in html
    md = (html_path.parent / "report.md").read_text()
    assert "<script" not in md and "&lt;script&gt;" in md


def test_sections_in_order(report):
    _, html = report
    heads = re.findall(r"<h2 id=\"[^\"]*\">([^<]*)</h2>", html)
    assert heads == ["What was run", "Conclusions", "Tables", "Figures", "Missing and failed trials"]
    assert "femnist-letters is FEMNIST" in html and "not EMNIST letters" in html
    assert html.index("samples.png") < html.index("Conclusions</h2>")  # the samples come first


def test_every_heading_id_is_unique_so_each_link_reaches_its_own_section(report):
    _, html = report
    ids = re.findall(r'<h[1-6] id="([^"]*)"', html)
    assert "what-training-on-blur-recovers" in ids  # a conclusions section and a table share this title
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for target in re.findall(r'<a href="#([^"]*)"', html):
        assert target in ids


def _chromium() -> str:
    for c in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if c and os.path.exists(c):
            return c
    pytest.skip("chromium not installed (Debian: apt-get install -y chromium); the browser rendering check did not run")


def _run_chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    exe = _chromium()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def test_browser_screenshot_is_not_blank(report, tmp_path):
    html_path, _ = report
    shot = tmp_path / "shot.png"
    r = _run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", html_path.as_uri())
    assert shot.exists(), r.stderr[-2000:]
    with Image.open(shot) as im:
        a = np.asarray(im.convert("L"), dtype=float)
    assert a.shape == (2000, 1200)
    assert a.std() > 20 and (a < 128).mean() > 0.01  # text and pictures, not an empty white page


def test_browser_decodes_every_image(report, tmp_path):
    """A wrapper page holding report.html's own <img> tags reports each image's natural size after load; the
    browser's numbers must match the PNG sizes, so every data URI really decodes in Chromium."""
    html_path, html = report
    srcs = IMG_RE.findall(html)
    imgs = "\n".join(f'<img src="{s}">' for s in srcs)
    wrapper = tmp_path / "wrapper.html"
    wrapper.write_text(
        "<!DOCTYPE html><html><body>" + imgs + '<pre id="out">PENDING</pre><script>'
        "window.addEventListener('load', () => { document.getElementById('out').textContent = 'RES' + 'ULT:' + "
        "Array.from(document.images).map(i => (i.complete && i.naturalWidth > 0) ? i.naturalWidth + 'x' + "
        "i.naturalHeight : 'BROKEN').join(','); });</script></body></html>")
    r = _run_chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", wrapper.as_uri())
    m = re.search(r"RESULT:([^<]*)", r.stdout)
    assert m, f"no result in the DOM dump; stderr: {r.stderr[-2000:]}"
    got = m.group(1).split(",")
    expected = []
    for s in srcs:
        with Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) as im:
            expected.append(f"{im.width}x{im.height}")
    assert got == expected
