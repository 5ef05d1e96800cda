"""The sweep's console: quiet and informative by default (no TF/CUDA start-up lines, no Ray config boxes),
one line per finished trial with progress and ETA; the helpers behind it."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from hwclf.quiet import NOISE

TF_NOISE = ("cuda_platform", "cudart_stub", "oneDNN", "absl::InitializeLog")


def test_the_noise_filter_drops_tf_start_up_lines_and_keeps_errors():
    noise = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             "I0000 00:00:1796288888.450814    8108 port.cc:153] oneDNN custom operations are on.",
             "I0000 00:00:1796288888.452690    8108 cudart_stub.cc:31] Could not find cuda drivers on your machine"]
    kept = ["E0000 00:00:1796288906.261203    8108 some_op.cc:52] a real error", "Traceback (most recent call last):",
            "ImportError: libcudnn.so.9: cannot open shared object file"]
    assert all(NOISE.match(line) for line in noise)
    assert not any(NOISE.match(line) for line in kept)


def test_keras_imports_without_start_up_lines_even_when_tf_log_level_is_2(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    code = ("import sys\nfrom hwclf.quiet import quiet_tensorflow_import\nquiet_tensorflow_import()\n"
            "import keras, numpy as np\nkeras.ops.add(np.ones(2), 1)\nprint('imported', file=sys.stderr)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.strip() == "imported", proc.stderr  # nothing else: not even the cuInit error of a first op


def test_durations_and_eta_account_for_parallel_slots():
    from sweep.progress import duration, eta_s

    assert [duration(42), duration(378), duration(7560)] == ["42 s", "6.3 min", "2.1 h"]
    assert eta_s([], 10, 2) is None  # nothing finished yet: no basis
    assert eta_s([60, 60], 4, 1) == 240 and eta_s([60, 60], 4, 2) == 120
    # running ones end in 40 and 10 s; the third starts in the slot free after 10 s
    assert eta_s([60], 3, 2, running_for=[20, 50]) == 70
    assert eta_s([60], 1, 2, running_for=[50]) == 10  # one left on two slots: no faster than itself
    assert eta_s([60], 0, 2) == 0.0


def test_trial_lines_count_trials_finished_before_a_resume_and_report_progress(capsys):
    from sweep.progress import TrialLines

    def trial(status, seed, t=30.0):
        return types.SimpleNamespace(status=status, config={"arch": "basic", "blur": 0, "seed": seed},
                                     last_result={"time_total_s": t, "test_accuracy_b0": 0.9}, path="/x")

    lines = TrialLines(total=4)
    trials = [trial("TERMINATED", 0), trial("RUNNING", 1), trial("RUNNING", 2), trial("PENDING", 3)]
    lines.on_step_begin(0, trials)
    assert lines.done == 1 and lines.slots == 2
    trials[1].status = "TERMINATED"
    lines.on_trial_complete(0, trials, trials[1])
    out = capsys.readouterr().out.strip()
    assert out.startswith("[2/4] done   basic-b0-s1: clean test 90.0% (30 s) | ") and "elapsed, ETA " in out
    # 2 left, 30 s each, on 2 slots: trial 2 (30 s in) ends now, trial 3 starts now and takes 30 s
    assert out.endswith("ETA 30 s")


@pytest.mark.slow
def test_tiny_sweep_console_is_quiet_and_shows_progress(tmp_path):
    from test_sweep import run_driver, tiny

    proc = run_driver(tiny(tmp_path, "console", "--blur", "0", "--seeds", "0,1", "--epochs", "1", "--no-report"),
                      env={"TF_CPP_MIN_LOG_LEVEL": "2"})  # what a user's shell may hold: still quiet
    out = proc.stdout + proc.stderr
    (tmp_path / "console.txt").write_text(out)  # to read when it fails
    assert proc.returncode == 0, out[-4000:]
    noisy = [line for line in out.splitlines() if any(n in line for n in TF_NOISE)]
    assert not noisy, noisy
    assert "started with configuration" not in out and "╭" not in out and "Trial status" not in out, out[-4000:]
    done = [line for line in out.splitlines() if " done   basic-b0-s" in line]
    assert len(done) == 2 and all("elapsed, " in line for line in done), done
    assert "ETA " in done[0] and done[1].endswith("elapsed, done")
    assert "2/2 trials complete, 0 failed" in proc.stdout


# What a CI run printed when Ray stopped a worker at the end of a resumed sweep (2026-12-06), prefix removed
SIGTERM_BLOCK = ["Exception ignored in: <function WeakSet.__init__.<locals>._remove at 0x7f3c2a1b8e00>",
                 "Traceback (most recent call last):",
                 '  File "/usr/lib/python3.11/_weakrefset.py", line 39, in _remove',
                 "    def _remove(item, selfref=ref(self)):", "",
                 '  File "/x/site-packages/ray/_private/worker.py", line 1063, in sigterm_handler',
                 "    raise_sys_exit_with_custom_error_message(",
                 '  File "python/ray/_raylet.pyx", line 712, in ray._raylet.raise_sys_exit_with_custom_error_message',
                 "SystemExit: 1"]
REAL_ERROR = ["Traceback (most recent call last):", '  File "/x/hwclf/trial.py", line 12, in run_trial',
              "    model.fit(x)", "ValueError: loss became NaN at epoch 2"]


def test_the_traceback_of_ray_stopping_a_worker_is_dropped_and_real_errors_are_kept():
    from hwclf.quiet import drop_sigterm_tracebacks

    assert drop_sigterm_tracebacks(["epoch 3 done", *SIGTERM_BLOCK, "bye"]) == ["epoch 3 done", "bye"]
    assert drop_sigterm_tracebacks(REAL_ERROR + SIGTERM_BLOCK) == REAL_ERROR
    # SystemExit raised anywhere else (a trial calling sys.exit) is the trial's business: kept
    own_exit = ["Traceback (most recent call last):", '  File "/x/train.py", line 3, in main', "    sys.exit(3)",
                "SystemExit: 3"]
    assert drop_sigterm_tracebacks(own_exit) == own_exit
    assert drop_sigterm_tracebacks(SIGTERM_BLOCK[:3]) == SIGTERM_BLOCK[:3]  # cut short: not known to be noise


def test_the_driver_prints_worker_lines_through_the_filter(capsys):
    import ray._private.worker as ray_worker

    from sweep.run import quiet_worker_shutdown

    before = ray_worker.print_worker_logs
    try:
        quiet_worker_shutdown()
        quiet_worker_shutdown()  # once only
        assert ray_worker.print_worker_logs.hwclf_filtered and ray_worker.print_worker_logs is not before
        data = {"pid": 16309, "ip": "127.0.0.1", "task_name": "train_one", "is_err": True,
                "lines": ["clean test 91.9%", *SIGTERM_BLOCK]}
        ray_worker.print_worker_logs(data, __import__("sys").stderr)
        ray_worker.print_worker_logs({**data, "lines": SIGTERM_BLOCK}, __import__("sys").stderr)
    finally:
        ray_worker.print_worker_logs = before
    err = capsys.readouterr().err
    assert "clean test 91.9%" in err and "SystemExit" not in err and "Traceback" not in err
