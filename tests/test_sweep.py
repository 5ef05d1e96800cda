"""The Ray Tune sweep, for real (local Ray): full grid, retry from checkpoint, kill + resume, multi-node.

Each test runs the real driver on the bundled digits with a tiny budget (CleanRL-style smoke tests).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_driver(args, env=None, timeout=600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "RAY_ADDRESS": "", **(env or {})}
    full_env.pop("RAY_ADDRESS")
    return subprocess.run([sys.executable, str(REPO / "sweep" / "run.py"), *args], env=full_env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def tiny(tmp_path, name, *extra) -> list[str]:
    return ["--preset", "demo", "--name", name, "--storage", str(tmp_path), "--archs", "basic",
            "--epochs", "2", "--num-cpus", "2", "--address", "local", *extra]


def with_row_budgets(tmp_path, args: list[str], epochs: int, by_row: dict) -> list[str]:
    """`args` (from `tiny`) on the demo preset's copy with `epochs` and a row's own budget (`by_row`)."""
    import yaml

    spec = yaml.safe_load((REPO / "sweep" / "configs" / "demo.yaml").read_text())
    spec.update(epochs=epochs, epochs_by_train_blur=by_row)
    (tmp_path / "rows.yaml").write_text(yaml.safe_dump(spec))
    args = list(args)
    del args[args.index("--epochs"):args.index("--epochs") + 2]
    args[args.index("--preset"):args.index("--preset") + 2] = ["--config", str(tmp_path / "rows.yaml")]
    return args


def trial_dirs(exp: Path) -> list[Path]:
    return sorted(p.parent for p in exp.glob("*/params.json"))


def evaluations(exp: Path) -> dict[str, dict]:
    out = {}
    for d in trial_dirs(exp):
        evals = sorted(d.glob("checkpoint_*/evaluation.json"))
        if evals:
            out[d.name] = json.loads(evals[-1].read_text())
    return out


def result_lines(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def test_demo_sweep_runs_every_cell_and_writes_the_report(tmp_path):
    # the demo preset with a row of its own budget (train blur 3: 3 epochs, the rest 2)
    proc = run_driver(with_row_budgets(tmp_path, tiny(tmp_path, "grid", "--blur", "0,3", "--seeds", "0,1"), 2, {3: 3}))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 (train blur 3: 3) epochs each" in proc.stdout and "deprecated" not in proc.stdout + proc.stderr
    exp = tmp_path / "grid"
    evals = evaluations(exp)
    cells = sorted((e["config"]["arch"], e["config"]["blur"], e["config"]["seed"]) for e in evals.values())
    assert cells == [("basic", 0, 0), ("basic", 0, 1), ("basic", 3, 0), ("basic", 3, 1)]
    for e in evals.values():
        epochs = 3 if e["config"]["blur"] == 3 else 2
        assert e["config"]["epochs"] == epochs and len(e["history"]) == e["epochs_run"] == epochs
    sweep = json.loads((exp / "hwclf-sweep.json").read_text())
    assert sweep["finished_at"] and sweep["trials_complete"] == 4 and len(sweep["grid"]) == 4
    assert (exp / "samples.png").stat().st_size > 1000
    from hwclf.config import SweepConfig

    assert SweepConfig.from_yaml(exp / "sweep.yaml").to_dict() == SweepConfig.from_dict(sweep["config"]).to_dict()
    assert (exp / "report" / "report.html").is_file()
    assert "4/4 trials complete, 0 failed" in proc.stdout and "report:" in proc.stdout
    assert proc.stdout.count(" done   basic-b") == 4  # one line per finished trial


def test_a_reused_worker_gives_the_results_of_fresh_processes(tmp_path):
    """One slot, two trials: by default the second runs in the first one's worker process (TF imported
    once); it must not inherit anything from the first (weights, optimizer, random state, graphs)."""
    runs = {}
    for name, extra in (("reused", []), ("fresh", ["--no-reuse-actors"])):
        proc = run_driver(tiny(tmp_path, name, "--blur", "3", "--seeds", "0,1", "--cpus-per-trial", "2",
                               "--no-report", *extra))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs[name] = {(e["config"]["seed"]): e for e in evaluations(tmp_path / name).values()}
        pids = {d.name: {r["pid"] for r in result_lines(d)} for d in trial_dirs(tmp_path / name)}
        assert all(len(p) == 1 for p in pids.values())  # no retry: each trial ran in one process
        assert len(set.union(*pids.values())) == (1 if name == "reused" else 2), pids
    assert sorted(runs["reused"]) == sorted(runs["fresh"]) == [0, 1]
    for seed in (0, 1):
        reused, fresh = runs["reused"][seed], runs["fresh"][seed]
        assert [h["val_loss"] for h in reused["history"]] == [h["val_loss"] for h in fresh["history"]]
        assert [t["accuracy"] for t in reused["test"]] == [t["accuracy"] for t in fresh["test"]]


def test_existing_sweep_is_not_overwritten_by_accident(tmp_path):
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "hwclf-sweep.json").write_text("{}")
    proc = run_driver(tiny(tmp_path, "grid"))
    assert proc.returncode == 2 and "already holds a sweep: --resume" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_fresh_removes_what_a_sweep_wrote_and_keeps_the_users_files(tmp_path):
    from sweep.run import remove_sweep_outputs

    exp = tmp_path / "study"
    (exp / "basic-b0-s0-abc_00000" / "checkpoint_000001").mkdir(parents=True)
    (exp / "basic-b0-s0-abc_00000" / "params.json").write_text("{}")
    (exp / "report").mkdir()
    (exp / "report" / "report.md").write_text("old")
    (exp / "records").mkdir()  # hwclf report writes the sweep's records there
    (exp / "records" / "hwclf-records.jsonl.gz").write_bytes(b"old")
    for name in ("hwclf-sweep.json", "sweep.yaml", "samples.png", "tuner.pkl", "experiment_state-2026.json"):
        (exp / name).write_text("x")
    (exp / "README.md").write_text("mine")
    (exp / "investigate.py").write_text("mine")
    remove_sweep_outputs(exp)
    assert sorted(p.name for p in exp.iterdir()) == ["README.md", "investigate.py"]


def test_bad_preset_and_bad_override_are_one_line(tmp_path):
    proc = run_driver(["--preset", "nope"])
    assert proc.returncode == 2 and "--preset: unknown value 'nope'; allowed: demo" in proc.stderr
    proc = run_driver(tiny(tmp_path, "x", "--archs", "vgg16"))
    assert proc.returncode == 2 and "archs: unknown value 'vgg16'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_trial_that_crashes_is_retried_from_its_checkpoint(tmp_path):
    markers = tmp_path / "markers"
    proc = run_driver(tiny(tmp_path, "crash", "--blur", "0,3", "--seeds", "0", "--epochs", "3"),
                      env={"HWCLF_FAULT_INJECT": f"2:{markers}"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(list(markers.iterdir())) == 2  # both trials really crashed once, after epoch 2
    evals = evaluations(tmp_path / "crash")
    assert len(evals) == 2
    for e in evals.values():
        assert e["resumed_from_epoch"] == 2 and e["epochs_run"] == 1  # only epoch 3 re-ran
        assert [h["epoch"] for h in e["history"]] == [1, 2, 3]


def _wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_driver_killed_mid_sweep_then_resume_finishes_the_rest_once(tmp_path):
    # a row with its own budget (blur 6: 2 epochs) must keep it through the resume
    args = with_row_budgets(tmp_path, tiny(tmp_path, "killed", "--blur", "0,3,6", "--seeds", "0", "--max-concurrent",
                                           "1"), 3, {6: 2})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, str(REPO / "sweep" / "run.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    exp = tmp_path / "killed"

    def finished() -> list[str]:
        return [d.name for d in trial_dirs(exp) if (d / "result.json").is_file()
                and any(r.get("done_training") for r in result_lines(d))]

    try:
        _wait_for(lambda: len(finished()) >= 1, 300, "the first trial to finish")
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, all at once
    finally:
        proc.wait(timeout=60)
    # No `ray stop`: it would kill every Ray on the machine, a user's running sweep included. The Ray this
    # driver started shares its fate (same process group, PR_SET_PDEATHSIG) and died with it.
    done_before = finished()
    assert 1 <= len(done_before) < 3

    def training_lines(name):
        return [r for r in result_lines(exp / name) if not r.get("done_training")]

    trained_before = {name: training_lines(name) for name in done_before}

    resumed = run_driver(args + ["--resume"])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    evals = evaluations(exp)
    assert len(trial_dirs(exp)) == 3 and len(evals) == 3  # every cell once, no duplicates
    assert sorted(e["config"]["blur"] for e in evals.values()) == [0, 3, 6]
    assert all([h["epoch"] for h in e["history"]] == ([1, 2] if e["config"]["blur"] == 6 else [1, 2, 3])
               for e in evals.values())
    for name in done_before:  # finished trials were not trained again
        assert training_lines(name) == trained_before[name]
        assert evals[name]["epochs_run"] in (0, evals[name]["config"]["epochs"])  # at most re-evaluated if the kill beat Tune's bookkeeping


def test_multi_node_cluster_survives_losing_a_worker(tmp_path):
    """A head (no CPUs) and two worker nodes on this machine; one worker is removed mid-sweep."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    exp = tmp_path / "multi"
    removed = []
    try:
        from sweep.run import main

        def remove_a_worker_once_both_are_busy():
            def both_busy():
                nodes = set()
                for d in trial_dirs(exp):
                    if (d / "result.json").is_file():
                        nodes |= {r.get("node_id") for r in result_lines(d)}
                return len(nodes) >= 2

            try:
                _wait_for(both_busy, 300, "trials on both worker nodes")
            except AssertionError:
                return
            cluster.remove_node(workers[1])
            removed.append(time.time())

        killer = threading.Thread(target=remove_a_worker_once_both_are_busy, daemon=True)
        killer.start()
        rc = main(["--preset", "demo", "--name", "multi", "--storage", str(tmp_path), "--archs", "basic",
                   "--blur", "0,3", "--seeds", "0,1", "--epochs", "3", "--address", cluster.address,
                   "--max-failures", "3"])
        killer.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert rc == 0
    assert removed, "the worker node was never removed: the test proved nothing"
    evals = evaluations(exp)
    assert len(evals) == 4  # every trial completed despite the lost node
    nodes = set()
    for d in trial_dirs(exp):
        nodes |= {r.get("node_id") for r in result_lines(d)}
    assert len(nodes - {None}) >= 2  # trials really ran on more than one node
    # The trial that lost its node moved: it continued from a checkpoint, or its epochs ran on two nodes.
    moved = [d.name for d in trial_dirs(exp) if len({r.get("node_id") for r in result_lines(d)} - {None}) > 1]
    assert moved or any(e["resumed_from_epoch"] > 0 for e in evals.values())
