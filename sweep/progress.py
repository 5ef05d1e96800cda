"""Trial names and the one-line-per-trial progress callback.

Module-level (not inside the driver script) because Tune pickles them into the experiment state, and
`--resume` must find them again whichever entry point (`python sweep/run.py`, `hwclf sweep`) restores.
"""

from __future__ import annotations

from ray import tune

from hwclf.mixture import label, slug


def trial_name(trial) -> str:
    c = trial.config
    return f"{c['arch']}-b{slug(c['blur'])}-s{c['seed']}"


def trial_dirname(trial) -> str:
    return f"{trial_name(trial)}-{trial.trial_id}"


class TrialLines(tune.Callback):
    """One line per finished or failed trial, with its clean and matched-blur test accuracy."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.failed = 0

    def _count(self) -> str:
        return f"[{self.done + self.failed}/{self.total}]"

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        r = trial.last_result or {}
        blur = trial.config["blur"]
        clean = r.get("test_accuracy_b0")
        acc = f"clean test {100 * clean:.1f}%" if clean is not None else "no test result"
        if isinstance(blur, str):  # a mixture: its accuracy at each of its levels
            levels = [lv for lv in blur.split(":", 1)[1].split("/") if lv != "0"]
            acc += "".join(f", at {lv} {100 * r[f'test_accuracy_b{lv}']:.1f}%" for lv in levels
                           if r.get(f"test_accuracy_b{lv}") is not None)
            acc = f"({label(blur)}) " + acc
        elif blur and r.get(f"test_accuracy_b{blur:g}") is not None:
            acc += f", test at blur {blur:g} {100 * r[f'test_accuracy_b{blur:g}']:.1f}%"
        print(f"{self._count()} done   {trial_name(trial)}: {acc} ({r.get('time_total_s', 0):.0f} s)", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1
        print(f"{self._count()} FAILED {trial_name(trial)} (see {trial.path}/error.txt)", flush=True)
