"""`bench.md`: the tables of a bench JSON, for docs/performance.md. Reads only the JSON, so the committed
JSONs of earlier runs render with the same code."""

from __future__ import annotations

from hwclf.bench.machine import FOREIGN_WARN

QUICK_NOTE = "QUICK RUN: tiny sizes to check that the benchmark runs; the numbers mean nothing."


def _fmt(v, spec: str = ",.0f", none: str = "n/a") -> str:
    return none if v is None else format(v, spec)


def _pack_markdown(pk: dict) -> list[str]:
    if not pk.get("rows"):
        return ["", "pack: skipped"] if pk.get("skipped") else (["", f"pack: ERROR: {pk['error'][:300]}"]
                                                                  if pk.get("error") else [])
    gpu = pk["device"] == "gpu"
    where = "one GPU" if gpu else f"{pk['cores']} CPU cores (threads split between the slots)"
    if pk.get("keras_backend", "tensorflow") != "tensorflow" and not gpu:
        where += "; the thread cap applies to TensorFlow only, so here every slot uses every core"
    rounds = pk.get("rounds", 1)
    lines = ["", f"Trials side by side on {where}: `{pk['arch']}` in separate processes started together, "
                 f"{pk['train_seconds']:g} s of training each, random inputs"
                 + (f"; median of {rounds} rounds, the slot counts taken in turn" if rounds > 1 else "") + ":", "",
             "| trials at once | threads each | batch | images/s, all together | vs 1 | per trial"
             + (" | GPU busy | GPU memory |" if gpu else " |"),
             "|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if gpu else "")]
    for r in pk["rows"]:
        per = r["per_slot_images_per_s"]
        each = r.get("images_per_s_rounds") or []
        total = f"{r['images_per_s']:,.0f}" + (f" ({', '.join(f'{v:,.0f}' for v in each)})" if len(each) > 1 else "")
        line = (f"| {r['slots']} | {r['threads_per_slot'] or 'default'} | {r['batch_size']} | {total} "
                f"| {r['speedup_vs_1']:.2f}x | {min(per):,.0f}-{max(per):,.0f} |")
        if gpu:
            line += (f" {_fmt(r.get('gpu_util_percent'), '.0f')}% | {_fmt(r.get('gpu_memory_used_mib'))} MiB |")
        lines.append(line)
    stops = ", ".join(f"batch {b}: {n}" for b, n in pk["throughput_stops_growing_after"].items())
    lines += ["", f"Throughput stops growing after (one more trial adds < 5%): {stops}."]
    return lines


def _recipe_text(r: dict, epochs: bool = True) -> str:
    lr = (f"Adam constant {r['learning_rate']:g}" if r["lr_schedule"] == "constant" else
          f"{r['lr_schedule']} with {r['warmup_fraction']:.0%} warm-up to {r['learning_rate']:g}")
    return f"{lr}, batch {r['batch_size']}, " + (f"{r['epochs']} epochs, " if epochs else "") + r["precision"]


def _tta_markdown(tt: dict) -> list[str]:
    """The time-to-accuracy table (a line per architecture and fast budget), and the mean test accuracy
    after every epoch of every recipe."""
    if not tt.get("rows"):
        return ["", "tta: skipped"] if tt.get("skipped") else (["", f"tta: ERROR: {tt['error'][:300]}"]
                                                                 if tt.get("error") else [])
    rec = tt["recipes"]
    fast = [label for label in rec if label != "original"]
    budgets = " and ".join(f"{rec[label]['epochs']}" for label in fast)
    images = f"{tt['per_class']} images per class" if tt["per_class"] else f"{tt['n_train']:,} training images"
    lines = ["", f"Time to accuracy on {tt['dataset']} ({images}, {tt['n_test']:,} clean test images), seeds "
                 f"{', '.join(map(str, tt['seeds']))}: the original protocol ({_recipe_text(rec['original'])}) "
                 f"against hwclf's fast recipe ({_recipe_text(rec[fast[0]], epochs=False)}) with a "
                 f"budget of {budgets} epochs, each budget its own schedule. Target: the original protocol's mean "
                 f"final test accuracy minus {100 * tt['target_margin']:g} points. Time to target: on the curve "
                 "of test accuracy and training time (the epochs, validation included) averaged over the seeds, the "
                 "time at the end of the first epoch that reaches the target; the test after every epoch is not on "
                 "the clock (last column).", "",
             "| arch | target | original: time to target | fast recipe | fast: time to target | original / fast "
             "| original final acc | fast final acc | original fit, all epochs | fast fit, all epochs "
             "| tests after each epoch, not timed (orig / fast) |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]

    def reach(r: dict) -> str:
        seeds = f"{r['seeds_reached']} of {len(r['seeds'])} seeds on their own"
        if r["time_to_target_s"] is None:
            return f"not reached ({seeds})"
        return f"{r['time_to_target_s']:,.0f} s (epoch {r['epoch_to_target']}; {seeds})"

    def acc(a: dict) -> str:
        return f"{a['mean']:.1%}" + (f" ({a['min']:.1%}-{a['max']:.1%})" if a["max"] > a["min"] else "")

    for r in tt["rows"]:
        o = r["original"]
        for label in fast:
            f, ratio = r[label], r.get("ratios", {label: r.get("ratio")})[label]
            best = " (best)" if len(fast) > 1 and label == r.get("best") else ""
            lines.append(f"| `{r['arch']}` | {r['target']:.1%} | {reach(o)} | {label}{best} | {reach(f)} | "
                         f"{_fmt(ratio, '.2f')}{'x' if ratio else ''} | {acc(o['final_accuracy'])} "
                         f"| {acc(f['final_accuracy'])} | {o['fit_time_s']:,.0f} s | {f['fit_time_s']:,.0f} s "
                         f"| {o['eval_time_s']:,.0f} s / {f['eval_time_s']:,.0f} s |")
    most = max(len(r[label]["mean_curve"]) for r in tt["rows"] for label in rec)
    lines += ["", "Mean test accuracy over the seeds after each epoch (mean training seconds so far):", "",
              "| arch | recipe | " + " | ".join(str(e) for e in range(1, most + 1)) + " |",
              "|---|---|" + "---:|" * most]
    for r in tt["rows"]:
        for label in rec:
            cells = [f"{x['test_accuracy']:.1%} ({x['fit_time_s']:,.0f} s)" for x in r[label]["mean_curve"]]
            lines.append(f"| `{r['arch']}` | {label} | " + " | ".join(cells + [""] * (most - len(cells))) + " |")
    return lines


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = []
    if result["quick"]:
        lines += [f"> **{QUICK_NOTE}**", ""]
    gpu = f", GPU {m.get('gpu_name') or ', '.join(m['gpus'])}" if m.get("gpus") else ", no GPU"
    backend = {"tensorflow": "TF", "jax": "JAX", "torch": "torch"}.get(m["keras_backend"], m["keras_backend"])
    lines += [f"`hwclf bench` on {m['cpu_model']}, {m['cores']} cores{gpu}, Keras {m['keras']} on {backend} "
              f"{m.get(m['keras_backend'])}, {m['date']}; load average at start {m['load_average_at_start']}, "
              f"total {result['total_time_s']:.0f} s.", ""]
    p = result["parts"]
    shares = {k: v["cpu"]["foreign_cpu_fraction"] for k, v in p.items() if isinstance(v.get("cpu"), dict)}
    if shares:
        busy = {k: v for k, v in shares.items() if v > FOREIGN_WARN}
        text = ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
        lines += [(f"**Not an idle machine: other processes took CPU during {', '.join(busy)}; those numbers are "
                   f"low.** " if busy else "") + f"CPU taken by other processes during each part: {text}.", ""]

    mm = p.get("matmul", {})
    table = ["| measurement | value |", "|---|---:|"]
    if "gflops" in mm:
        table.append(f"| matmul peak, float32 {mm['n']}x{mm['n']} (median of {mm['repeats']}; best) "
                     f"| {mm['gflops']:,.1f} GFLOP/s ({mm['gflops_best']:,.1f}) |")
        if mm.get("gflops_bf16"):
            table.append(f"| matmul peak, bfloat16 {mm['n']}x{mm['n']} (median of {mm['repeats']}) "
                         f"| {mm['gflops_bf16']:,.1f} GFLOP/s |")
    bl = p.get("blur", {})
    for r in bl.get("rows", []):
        table.append(f"| blur {r['kind']} {r['level']:g}, {r['method']}, {bl['n_images']:,} images "
                     f"| {r['images_per_s']:,.0f} img/s ({r['seconds']:.2f} s) |")
    sw = p.get("sweep", {})
    if "wall_s" in sw:
        table += [
            f"| sweep: {sw['n_trials']} trials on {sw['slots']} slots, wall | {sw['wall_s']:.1f} s |",
            f"| sweep: capacity = wall x slots | {sw['capacity_slot_s']:.1f} slot-s |",
            f"| sweep: sum of train_time_s | {sw['sum_train_time_s']:.1f} s |",
            f"| sweep: overhead fraction = 1 - train / capacity | {sw['overhead_fraction']:.1%} |",
            f"| sweep: end-to-end MFU ({sw['images_trained']:,} images trained) "
            f"| {_fmt(sw['end_to_end_mfu'], '.1%')} |",
        ]
        if sw.get("end_to_end_mfu_all_passes") is not None:
            table.append(f"| sweep: end-to-end MFU counting the validation and test forward passes too "
                         f"| {_fmt(sw['end_to_end_mfu_all_passes'], '.1%')} |")
        ev = next((b for b in sw.get("breakdown", []) if b["part"].startswith("test evaluation")), None)
        if ev:
            table.append(f"| sweep: overhead fraction without the test evaluation (the trial's output) "
                         f"| {(1 - (sw['sum_train_time_s'] + ev['slot_s']) / sw['capacity_slot_s']):.1%} |")
    for name in ("matmul", "blur", "sweep"):
        part = p.get(name, {})
        if part.get("skipped") or part.get("error"):
            table.append(f"| {name} | {'skipped' if part.get('skipped') else 'ERROR: ' + part['error'][:80]} |")
    if len(table) > 2:  # a run of other parts only (e.g. --parts tta) has no such rows
        lines += table

    md = p.get("models", {})
    if md.get("rows"):
        timed = len(md["rows"][0]["epoch_times_s"]) - 1
        lines += ["", f"Training throughput at batch {md['batch_size']} (random 28x28x1 inputs, all threads; median "
                      f"of {timed} timed epochs after a warm-up fit and one excluded epoch):", "",
                  "| arch | params | training MFLOP / image | images/s (median) | slowest-fastest epoch | GFLOP/s "
                  "| MFU |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in md["rows"]:
            lines.append(f"| `{r['arch']}` | {r['params']:,} | {r['train_flops_per_image'] / 1e6:,.1f} "
                         f"| {r['images_per_s']:,.0f} | {r['images_per_s_worst']:,.0f}-{r['images_per_s_best']:,.0f} "
                         f"| {r['achieved_gflops']:,.1f} | {_fmt(r['mfu'], '.1%')} |")
        for r in md.get("precision_rows") or ():
            lines += ["", f"`basic` with precision {r['precision']} (bf16 compute, float32 weights and output layer), "
                          f"batch {r['batch_size']}: {r['images_per_s']:,.0f} images/s "
                          f"({r['images_per_s_worst']:,.0f}-{r['images_per_s_best']:,.0f}), "
                          f"{_fmt(r['speedup_vs_float32'], '.2f')}x float32, MFU {_fmt(r['mfu'], '.1%')} of the "
                          f"bfloat16 matmul peak."]
        if md.get("batch_rows"):
            base = next((r for r in md["rows"] if r["arch"] == "basic"), None)
            rows = sorted(md["batch_rows"] + ([base] if base else []), key=lambda r: r["batch_size"])
            lines += ["", "`basic` at other batch sizes (the batch-size default):", "",
                      "| batch | images/s (median) | slowest-fastest epoch | MFU |", "|---:|---:|---:|---:|"]
            for r in rows:
                lines.append(f"| {r['batch_size']} | {r['images_per_s']:,.0f} | {r['images_per_s_worst']:,.0f}-"
                             f"{r['images_per_s_best']:,.0f} | {_fmt(r['mfu'], '.1%')} |")
        fc = md.get("flops_check") or {}
        if fc:
            reg = fc.get("tf_registry_training")
            lines += ["", f"FLOP cross-check, `basic`, training per image: hwclf {fc['hwclf_training'] / 1e6:,.2f} M; "
                          f"analytic (conv + dense multiply-adds x 3) {fc['analytic_training'] / 1e6:,.2f} M; "
                          + (f"TensorFlow op registry on the traced train step {reg / 1e6:,.2f} M "
                             f"(backward = {fc['tf_registry_backward_over_forward']:.2f} x forward)."
                             if reg else f"TensorFlow registry unavailable ({fc.get('tf_registry_error')}).")]
    elif md.get("skipped") or md.get("error"):
        lines += ["", f"models: {'skipped' if md.get('skipped') else 'ERROR: ' + md['error'][:200]}"]

    if sw.get("breakdown"):
        lines += ["", f"Where the sweep's capacity goes ({sw['capacity_slot_s']:.1f} slot-seconds):", "",
                  "| part | slot-s | share | how |", "|---|---:|---:|---|"]
        for b in sw["breakdown"]:
            lines.append(f"| {b['part']} | {_fmt(b['slot_s'], '.1f')} | {_fmt(b['fraction_of_capacity'], '.1%')} "
                         f"| {b['how']} |")

    nv = p.get("naive", {})
    if nv.get("methods"):
        cells = nv["cells"]
        images = f"{nv['per_class']} images per class" if nv["per_class"] else "every training image"
        lines += ["", f"Naive baseline vs hwclf: {len(cells)} trials ({cells[0]['arch']}, blur "
                      f"{sorted({c['blur'] for c in cells})}, seeds {sorted({c['seed'] for c in cells})}), "
                      f"{nv['epochs']} epochs, {images}, {nv['dataset']} "
                      f"({nv['n_test']:,} test images); accuracy is the mean over the trials:", "",
                  "| method | wall s | naive / this | clean test acc | matched-blur test acc |",
                  "|---|---:|---:|---:|---:|"]
        for mt in nv["methods"]:
            lines.append(f"| {mt['method']} | {mt['wall_s']:.1f} | {mt['naive_over_this']:.2f}x "
                         f"| {_fmt(mt['clean_accuracy'], '.1%')} | {_fmt(mt['matched_accuracy'], '.1%')} |")
        lines += ["", "Rows at the same batch size and precision train the same model (same images, initial "
                      "weights and number of steps), so their accuracies must agree; batch 128 takes 4x fewer "
                      "optimizer steps per epoch, so after a few epochs its accuracy differs for that reason "
                      "alone, and mixed_bfloat16 rounds differently, so its models differ a little from float32's. "
                      f"Chance is {1 / len(nv.get('classes') or [0] * 26):.1%}."]
    elif nv.get("skipped") or nv.get("error"):
        lines += ["", f"naive: {'skipped' if nv.get('skipped') else 'ERROR: ' + nv['error'][:200]}"]
    lines += _pack_markdown(p.get("pack", {}))
    lines += _tta_markdown(p.get("tta", {}))
    lines += _mixture_markdown(p.get("mixture", {}))
    return "\n".join(lines) + "\n"


def _mixture_markdown(mx: dict) -> list[str]:
    """Training on a blur mixture against one blur level: medians over interleaved rounds."""
    if not mx.get("median"):
        return ["", "mixture: skipped"] if mx.get("skipped") else (["", f"mixture: ERROR: {mx['error'][:300]}"]
                                                                     if mx.get("error") else [])
    from hwclf.mixture import label

    def at(table: dict, blur):  # a JSON round trip makes the integer kernel keys strings
        return table[blur] if blur in table else table[str(blur)]

    images = f"{mx['per_class']} images per class" if mx["per_class"] else "all training images"
    lines = ["", f"Blur mixture against one level: `{mx['arch']}` on {mx['dataset']} ({images}), {mx['epochs']} "
                 f"epochs, medians of {len(at(mx['rounds'], mx['single']))} interleaved rounds.", "",
             "| trained at | fit s | of which outside the epochs | images/s | preparing s (split, blur, build) |",
             "|---|---:|---:|---:|---:|"]
    for blur in (mx["single"], mx["mixture"]):
        m = at(mx["median"], blur)
        lines.append(f"| {label(blur)} | {m['fit_s']:.1f} | {m['outside_epochs_s']:.1f} | {m['images_per_s']:.0f} "
                     f"| {m['prepare_s']:.1f} |")
    lines += ["", f"Mixture / single fit time: {mx['fit_ratio']:.3f} ({100 * (mx['fit_ratio'] - 1):+.1f}%); "
                  f"blurring the extra copies: {mx['prepare_extra_s']:+.1f} s once per trial."]
    return lines
