"""Trial names and the one-line-per-trial progress callback.

Module-level (not inside the driver script) because Tune pickles them into the experiment state, and
`--resume` must find them again whichever entry point (`python sweep/run.py`, `hwclf sweep`) restores.
"""

from __future__ import annotations

import heapq
import time

from ray import tune

from hwclf.mixture import label, slug


def trial_name(trial) -> str:
    c = trial.config
    return f"{c['arch']}-b{slug(c['blur'])}-s{c['seed']}"


def trial_dirname(trial) -> str:
    return f"{trial_name(trial)}-{trial.trial_id}"


def duration(seconds: float) -> str:
    """'42 s', '6.3 min', '2.1 h': as a person reads a wait."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def eta_s(durations: list, remaining: int, slots: int, running_for: list = ()) -> float | None:
    """Seconds until the last trial ends, None before any trial ended. Each trial is taken to last as long
    as the finished ones did on average: the running ones (`running_for`: seconds each has run) finish
    that much later, and the rest queue for the first free of the `slots` side-by-side places."""
    if not durations:
        return None
    if remaining <= 0:
        return 0.0
    mean = sum(durations) / len(durations)
    free = [max(0.0, mean - t) for t in running_for]
    free += [0.0] * max(0, max(1, slots) - len(free))
    heapq.heapify(free)
    for _ in range(max(0, remaining - len(running_for))):
        heapq.heappush(free, heapq.heappop(free) + mean)
    return max(free)


class TrialLines(tune.Callback):
    """One line per finished or failed trial, with its clean and matched-blur test accuracy, and the sweep's
    progress: trials done of all, time elapsed, and an ETA from the finished trials' times."""

    def __init__(self, total: int):
        self.total = total
        self.done = 0
        self.failed = 0
        self.started = None  # this driver's start (a resumed sweep counts from its own start)
        self.durations = []
        self.slots = 1  # the most trials seen running at once: how many run side by side

    def __setstate__(self, state):  # a sweep started by an older hwclf is resumed with its pickled callback
        self.__dict__.update({"started": None, "durations": [], "slots": 1, **state})

    def _count(self) -> str:
        return f"[{self.done + self.failed}/{self.total}]"

    def on_step_begin(self, iteration, trials, **info):
        if self.started is None:  # first step of this driver: trials finished before a --resume count as done
            self.started = time.time()
            self.done = sum(1 for t in trials if t.status == "TERMINATED")
        self.slots = max(self.slots, sum(1 for t in trials if t.status == "RUNNING"))

    def _progress(self, trials, ended) -> str:
        elapsed = time.time() - (self.started or time.time())
        running = [(t.last_result or {}).get("time_total_s", 0.0) for t in trials
                   if t.status == "RUNNING" and t is not ended]
        remaining = self.total - self.done - self.failed
        eta = eta_s(self.durations, remaining, self.slots, running)
        left = "done" if remaining <= 0 else (f"ETA {duration(eta)}" if eta is not None else "ETA unknown")
        return f" | {duration(elapsed)} elapsed, {left}"

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
        self.durations.append(r.get("time_total_s", 0.0))
        print(f"{self._count()} done   {trial_name(trial)}: {acc} ({r.get('time_total_s', 0):.0f} s)"
              f"{self._progress(trials, trial)}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1
        print(f"{self._count()} FAILED {trial_name(trial)} (see {trial.path}/error.txt){self._progress(trials, trial)}",
              flush=True)
