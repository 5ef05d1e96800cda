"""`hwclf` command line: data verify/preview, train (one trial, no Ray), sweep, report, export, bench, models.

A user's mistake ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hwclf.errors import UserError
from hwclf.io import writable_file as _writable_file  # shared with hwclf.bench


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help="digits (bundled, default), emnist-letters, femnist-letters")
    p.add_argument("--data-dir", default=None, help="directory with the dataset's IDX files (default: $HWCLF_DATA_DIR)")


def cmd_data_verify(args) -> int:
    import numpy as np

    from hwclf.data import class_counts, load_dataset

    d = load_dataset(args.dataset, args.data_dir)
    print(f"dataset      {d.name}")
    print(f"source       {d.source}")
    print(f"images       train {len(d.y_train):,}  test {len(d.y_test):,}  ({d.x_train.shape[1]}x{d.x_train.shape[2]} uint8, upright)")
    print(f"classes      {d.num_classes}: {''.join(d.classes) if all(len(c) == 1 for c in d.classes) else d.classes}")
    for split, y in (("train", d.y_train), ("test", d.y_test)):
        counts = class_counts(y, d.num_classes)
        balanced = "balanced" if counts.min() == counts.max() else "not balanced"
        lo, hi = int(counts.argmin()), int(counts.argmax())
        print(f"{split:<12} {balanced}: {counts.min():,} ({d.classes[lo]}) to {counts.max():,} ({d.classes[hi]}) per class")
        print(f"{'':<12} " + " ".join(f"{c}{n}" for c, n in zip(d.classes, counts)))
    if d.writers_train is not None:
        tr, te = set(np.unique(d.writers_train)), set(np.unique(d.writers_test))
        print(f"writers      train {len(tr)}  test {len(te)}  shared {len(tr & te)} (writer-disjoint: {'yes' if not tr & te else 'NO'})")
    print(f"fingerprint  sha256:{d.fingerprint}")
    return 0


def cmd_data_preview(args) -> int:
    from hwclf.config import parse_number_list
    from hwclf.data import load_dataset
    from hwclf.preview import write_preview

    levels = parse_number_list(args.blur, "--blur", integer=args.kind == "box")
    out = _writable_file(args.out)
    d = load_dataset(args.dataset, args.data_dir)
    x, y = (d.x_train, d.y_train) if args.split == "train" else (d.x_test, d.y_test)
    write_preview(out, x, y, d.classes, levels, args.kind, title=f"{d.name} {args.split}: first {min(30, len(y))} images")
    print(f"wrote {out}")
    return 0


def cmd_train(args) -> int:
    from hwclf.config import TrialConfig, parse_number_list
    from hwclf.io import atomic_write_json
    from hwclf.mixture import parse_train_blur, slug

    integer = args.blur_kind == "box"
    cfg = TrialConfig(
        dataset=args.dataset, data_dir=args.data_dir, arch=args.arch, blur_kind=args.blur_kind,
        blur=parse_train_blur(args.blur, "--blur", integer=integer), seed=args.seed, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.lr, lr_schedule=args.lr_schedule,
        warmup_fraction=args.warmup, val_fraction=args.val_fraction,
        test_blur=parse_number_list(args.test_blur, "--test-blur", integer=integer) if args.test_blur else (),
        per_class=args.per_class, eval_weights=args.eval_weights, threads=args.threads, precision=args.precision,
    )
    out = Path(args.out or f"runs/{cfg.arch}-b{slug(cfg.blur)}-s{cfg.seed}")
    ckpt_dir, prev_dir = out / "checkpoint", out / "checkpoint.prev"
    # latest first; a damaged one falls back to the one before (hwclf.trial.restore)
    resume_from = [d for d in (ckpt_dir, prev_dir) if d.is_dir()] if args.resume else None
    if out.exists() and not args.resume and (out / "evaluation.json").exists():
        print(f"note: {out} holds an earlier result; it will be replaced", file=sys.stderr)

    from hwclf.trial import run_trial

    def report(metrics: dict, checkpoint: Path | None) -> None:
        if checkpoint is not None:  # keep the latest two checkpoints so --resume can continue
            import shutil

            tmp = out / ".checkpoint.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(checkpoint, tmp)
            if ckpt_dir.is_dir():
                shutil.rmtree(prev_dir, ignore_errors=True)
                ckpt_dir.rename(prev_dir)
            tmp.rename(ckpt_dir)
        if "epoch" in metrics and "done_training" not in metrics:
            atomic_write_json(out / "progress.json", metrics)

    out.mkdir(parents=True, exist_ok=True)
    result = run_trial(cfg, report=report, resume_from=resume_from, verbose=1 if sys.stdout.isatty() else 2)
    path = atomic_write_json(out / "evaluation.json", result)
    for t in result["test"]:
        print(f"test blur {t['test_blur']:>4g}: accuracy {100 * t['accuracy']:.1f}%  "
              f"balanced {100 * t['balanced_accuracy']:.1f}%  loss {t['loss']:.3f}")
    print(f"wrote {path}")
    return 0


def cmd_models(args) -> int:
    from hwclf.models import model_table

    print("| arch | parameters | training FLOPs / image |")
    print("|---|---:|---:|")
    for row in model_table(num_classes=args.classes):
        print(f"| `{row['arch']}` | {row['params']:,} | {row['train_flops_per_image'] / 1e6:,.1f} M |")
    return 0


def run_sweep(argv: list[str]) -> int:
    """`hwclf sweep ...` is `python sweep/run.py ...`: every argument goes to the driver, --help included."""
    try:
        from sweep.run import main as sweep_main
    except ImportError as e:
        print(f"hwclf: error: the sweep driver is not installed ({e}); run `pip install .` in the project root",
              file=sys.stderr)
        return 2
    return sweep_main(argv)


def cmd_report(args) -> int:
    from hwclf.report import write_report

    path = write_report(args.experiment, args.out, records=not args.no_records)
    print(f"report: {path}")
    return 0


def cmd_export(args) -> int:
    from hwclf.report.load import COMPLETE
    from hwclf.report import export

    path, exp = export(args.experiment, args.out, train_blur=args.train_blur)
    size, n = path.stat().st_size, exp.counts()[COMPLETE]
    print(f"records: {path} ({n} complete trials, {size:,} bytes"
          + (f", {size / n:,.0f} bytes per complete trial)" if n else ")"))
    return 0


def cmd_bench(args) -> int:
    from hwclf.bench.main import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hwclf", description="How much does blur hurt handwriting recognition?")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="check and look at a dataset")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    v = dsub.add_parser("verify", help="load, validate, print counts, class balance and fingerprint")
    _add_data_args(v)
    v.set_defaults(func=cmd_data_verify)
    pv = dsub.add_parser("preview", help="PNG grid of the first 30 images at every blur level")
    _add_data_args(pv)
    pv.add_argument("--blur", default="0,5,10,20,30", help="blur levels, comma-separated (default 0,5,10,20,30)")
    pv.add_argument("--kind", default="box", choices=["box", "gaussian"])
    pv.add_argument("--split", default="train", choices=["train", "test"])
    pv.add_argument("--out", default="preview.png", help="PNG file to write (default preview.png)")
    pv.set_defaults(func=cmd_data_preview)

    t = sub.add_parser("train", help="one trial without Ray: train, test at every blur level, write metrics JSON")
    _add_data_args(t)
    t.add_argument("--arch", default="basic", help="basic, basic_se, resnet, resnet_se, mobilenet, mobilenet_se")
    t.add_argument("--blur", default="0", help="training blur level (box kernel; sigma for --blur-kind gaussian), "
                                               "or a mixture such as mix:0/5/10 (a level drawn per image and epoch)")
    t.add_argument("--blur-kind", default="box", choices=["box", "gaussian"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (the peak, with --lr-schedule cosine)")
    t.add_argument("--lr-schedule", default="constant",
                   help="constant (default, the original notebook) or cosine (warm-up, then cosine decay to 0)")
    t.add_argument("--warmup", type=float, default=0.0,
                   help="cosine: fraction of all steps spent warming up linearly from 0 (e.g. 0.2)")
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--test-blur", default=None, help="test blur levels, comma-separated (default: 0 and --blur)")
    t.add_argument("--per-class", type=int, default=None, help="at most this many training images per class")
    t.add_argument("--eval-weights", default="last", choices=["last", "best"])
    t.add_argument("--threads", type=int, default=0, help="CPU threads for TensorFlow (0: all)")
    t.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"],
                   help="mixed_bfloat16: bf16 compute, 1.3-1.6x faster where the hardware has bf16 units "
                        "(default float32)")
    t.add_argument("--out", default=None, help="output directory (default runs/<arch>-b<blur>-s<seed>)")
    t.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint if present (checksums verified; a damaged one falls back "
                        "to OUT/checkpoint.prev, else the trial starts over, with a warning)")
    t.set_defaults(func=cmd_train)

    m = sub.add_parser("models", help="the architectures with parameters and training FLOPs per image")
    m.add_argument("--classes", type=int, default=26)
    m.set_defaults(func=cmd_models)

    sub.add_parser("sweep", help="the Ray Tune sweep (same as python sweep/run.py); see hwclf sweep --help",
                   add_help=False)  # main() hands its arguments to the driver unparsed

    r = sub.add_parser("report", help="tables, figures and report.html from a sweep directory or its records "
                                      "(offline, no Ray); several are merged into one study")
    r.add_argument("experiment", nargs="+",
                   help="sweep directory or s3:// / gs:// URI (e.g. results/demo), or a record set "
                        "(e.g. results/demo/records); several: one study (same data, test levels and recipe)")
    r.add_argument("--out", default=None, help="output directory (default EXPERIMENT/report; required when merging)")
    r.add_argument("--no-records", action="store_true",
                   help="do not write the sweep's records to EXPERIMENT/records/ (written by default from a raw "
                        "local sweep)")
    r.set_defaults(func=cmd_report)

    x = sub.add_parser("export", help="portable records of a sweep (no weights; small enough to commit), from which "
                                      "hwclf report rebuilds the same report")
    x.add_argument("experiment", help="raw sweep directory or s3:// / gs:// URI (a record set too, with --train-blur)")
    x.add_argument("--out", default=None,
                   help="directory for hwclf-records.jsonl.gz (default EXPERIMENT/records; ./NAME-records for a URI)")
    x.add_argument("--train-blur", default=None, metavar="LEVELS",
                   help="keep only these rows, e.g. 0,5,10,20,mix:0/5/10 (to replace a row rerun with another "
                        "budget); the records say what was left out")
    x.set_defaults(func=cmd_export)

    b = sub.add_parser("bench", help="how close training runs to this machine's limit, and the naive baseline")
    b.add_argument("--out", default="bench.json", help="JSON file to write (a .md table is written beside it)")
    b.add_argument("--quick", action="store_true", help="tiny sizes: checks the benchmark runs, numbers meaningless")
    b.add_argument("--skip", default="", help="comma-separated parts to skip: matmul,models,blur,sweep,naive,pack,tta,mixture")
    b.add_argument("--parts", default=None,
                   help="comma-separated parts to run (default matmul,models,blur,sweep,naive,pack; tta, time to "
                        "accuracy, and mixture, the cost of blur-mixture training, run only when named: "
                        "--parts tta,mixture)")
    b.add_argument("--dataset", default=None,
                   help="dataset of the sweep, naive and tta parts: digits, emnist-letters, femnist-letters (default "
                        "femnist-letters from ../shared/data where present, else digits; --quick: digits)")
    b.add_argument("--data-dir", default=None, help="directory with the dataset's IDX files (alone: femnist-letters)")
    b.add_argument("--tta-archs", default=None, help="tta: architectures (default basic,resnet,mobilenet)")
    b.add_argument("--tta-seeds", default=None, help="tta: seeds, one trial per recipe each (default 0,1)")
    b.add_argument("--tta-epochs", default=None,
                   help="tta: epoch budgets of the fast recipe, each its own schedule (default 3,6; the original "
                        "protocol trains 10)")
    b.add_argument("--tta-per-class", type=int, default=None,
                   help="tta: at most this many training images per class (default all)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's start-up chatter hides the output that matters
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["sweep"]:
        return run_sweep(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "per_class", "threads"):
        value = getattr(args, name, None)
        if value is not None and value < (0 if name == "threads" else 1):
            parser.error(f"--{name.replace('_', '-')} must be {'>= 0' if name == 'threads' else '>= 1'}, got {value}")
    try:
        return args.func(args) or 0
    except UserError as e:
        print(f"hwclf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hwclf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
