"""Part ``mixture``: what training on a blur mixture costs against training at one blur level.

A mixture trial blurs its training images once per level (uint8 copies), and every epoch gathers each
image's drawn level from the copies and runs one `fit` call (so a resumed trial redraws and reshuffles
exactly). Against a single-level trial of the same architecture, seed and data, the extra cost is that
gather and conversion, the per-epoch `fit` set-up, and one more trace of the train step (Keras re-traces
once when a second `fit` call brings a new dataset). Both trials run through `hwclf.trial.run_trial`,
interleaved round by round so a slow spell of the machine hits both; the ratio is of medians.
"""

from __future__ import annotations

import statistics

from hwclf.bench.machine import log


def _timings(ev: dict) -> dict:
    epochs = sum(h["epoch_time_s"] for h in ev["history"])
    n = ev["dataset"]["n_train"] * len(ev["history"])
    return {
        "fit_s": ev["fit_time_s"],  # the whole training: epochs, draws, fit set-up, tracing
        "epochs_s": epochs,  # inside the epochs only (training steps and validation)
        "outside_epochs_s": ev["fit_time_s"] - epochs,
        "prepare_s": ev["wall_time_s"] - ev["fit_time_s"] - ev["test_time_s"],  # split, blur copies, model build
        "images_per_s": n / ev["fit_time_s"],
    }


def bench_mixture(sizes: dict, dataset: str, data_dir: str | None, data) -> dict:
    from hwclf.config import TrialConfig
    from hwclf.mixture import label, mix_levels
    from hwclf.trial import run_trial

    single, mixture = sizes["mix_single"], sizes["mix_blur"]
    rounds = {single: [], mixture: []}
    base = dict(dataset=dataset, data_dir=data_dir, arch=sizes["mix_arch"], seed=0, epochs=sizes["mix_epochs"],
                per_class=sizes["mix_per_class"], batch_size=128, lr_schedule="cosine", warmup_fraction=0.2,
                learning_rate=3e-3, test_blur=(0,), precision="float32")
    for r in range(sizes["mix_rounds"]):
        for blur in (single, mixture) if r % 2 == 0 else (mixture, single):  # alternate who goes first
            ev = run_trial(TrialConfig(blur=blur, **base), data)
            t = _timings(ev)
            rounds[blur].append(t)
            log(f"  round {r + 1}, {label(blur):<11}: fit {t['fit_s']:.1f} s ({t['outside_epochs_s']:.1f} s outside "
                f"the epochs), {t['images_per_s']:.0f} images/s, preparing {t['prepare_s']:.1f} s")
    med = {blur: {k: statistics.median(t[k] for t in rows) for k in rows[0]} for blur, rows in rounds.items()}
    return {
        "dataset": dataset, "arch": sizes["mix_arch"], "epochs": sizes["mix_epochs"], "per_class": sizes["mix_per_class"],
        "single": single, "mixture": mixture, "levels": list(mix_levels(mixture)), "rounds": rounds, "median": med,
        "fit_ratio": med[mixture]["fit_s"] / med[single]["fit_s"],
        "prepare_extra_s": med[mixture]["prepare_s"] - med[single]["prepare_s"],
    }
