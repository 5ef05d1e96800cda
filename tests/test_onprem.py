"""`ray submit cluster.yaml sweep/run.py`: the driver uploaded alone.

`ray submit` copies sweep/run.py alone to ~/run.py on the head and runs `python ~/run.py ...` in the
login shell there. The driver must then take its presets and code from the installed `hwclf`/`sweep`
packages: these tests run such a lone copy here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (REPO / "sweep" / "configs").glob("*.yaml"))


def lone_driver(tmp_path: Path) -> Path:
    """sweep/run.py as `ray submit` leaves it on the head: ~/run.py, no checkout around it."""
    home = tmp_path / "home"
    home.mkdir()
    return Path(shutil.copy(REPO / "sweep" / "run.py", home / "run.py"))


def run_lone(script: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}  # REPO = "installed" here
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, str(script), *args], cwd=script.parent, env=env,
                          capture_output=True, text=True, timeout=300)


def test_lone_driver_lists_the_installed_presets(tmp_path):
    assert "demo" in PRESETS
    script = lone_driver(tmp_path)
    proc = run_lone(script, "--preset", "nonexistent")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"sweep: error: --preset: unknown value 'nonexistent'; allowed: {', '.join(PRESETS)}")
    helped = run_lone(script, "--help")  # argparse wraps the list anywhere, even inside a name
    assert helped.returncode == 0 and "".join(f"({', '.join(PRESETS)})".split()) in "".join(helped.stdout.split())


def test_lone_driver_loads_a_preset(tmp_path):
    """`--preset demo` resolves (its name, demo, is what the existing-sweep check sees), without Ray."""
    storage = tmp_path / "storage"
    (storage / "demo").mkdir(parents=True)
    (storage / "demo" / "hwclf-sweep.json").write_text("{}")
    proc = run_lone(lone_driver(tmp_path), "--preset", "demo", "--storage", str(storage))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"sweep: error: {storage / 'demo'} already holds a sweep")


def test_lone_driver_imports_the_installed_packages_not_its_parent_folder(tmp_path):
    """~/run.py once put ~/.. first on sys.path: a hwclf/ or sweep/ there (/home/hwclf, a user's) won."""
    script = lone_driver(tmp_path)
    for package in ("hwclf", "sweep"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"raise ImportError('decoy {package} imported')\n")
    proc = run_lone(script, "--preset", "nonexistent")
    assert "decoy" not in proc.stderr, proc.stderr
    assert proc.returncode == 2 and f"allowed: {', '.join(PRESETS)}" in proc.stderr
