"""Ray Tune driver: one trial per blur kernel x architecture x seed, then the report.

    python sweep/run.py --preset demo                      # this machine, a few minutes
    ray submit cluster/aws-gpu.yaml sweep/run.py -- --preset emnist-full --storage s3://BUCKET/hwclf
    python sweep/run.py --preset demo --resume             # finish an interrupted sweep

Connects to a running Ray cluster when there is one (`ray submit`, `ray job submit`, RAY_ADDRESS), else
starts Ray on this machine. Trials checkpoint every epoch; a failed trial is retried from its last
checkpoint (`max_failures`), and `--resume` restores an interrupted sweep and runs only what is missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if __package__ in (None, "") and _HERE.name == "sweep" and (_HERE.parent / "hwclf" / "__init__.py").is_file():
    # Run from a checkout (python sweep/run.py): make the repo importable. Uploaded alone (`ray submit` puts
    # it at ~/run.py) it has no checkout around it: the installed hwclf/sweep must be what it imports.
    sys.path.insert(0, str(_HERE.parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from hwclf.config import SweepConfig  # noqa: E402
from hwclf.errors import UserError  # noqa: E402

SWEEP_FILE = "hwclf-sweep.json"
SAMPLES_FILE = "samples.png"
CONFIG_FILE = "sweep.yaml"


def config_dir() -> Path:
    """The presets of the `sweep` package this driver imports (package data, so an installed copy has them:
    `ray submit` uploads this file alone); else the folder beside this file."""
    import importlib.resources

    try:
        packaged = Path(str(importlib.resources.files("sweep") / "configs"))
    except (ImportError, TypeError):  # no sweep package, or a sweep module that is not a package
        packaged = None
    if packaged is not None and any(packaged.glob("*.yaml")):
        return packaged
    return Path(__file__).resolve().parent / "configs"


def presets() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def load_config(args) -> SweepConfig:
    if args.config and args.preset:
        raise UserError("give --config FILE or --preset NAME, not both")
    if args.config:
        cfg = SweepConfig.from_yaml(args.config)
    else:
        name = args.preset or "demo"
        known = presets()
        if name not in known:
            raise UserError(f"--preset: unknown value {name!r}; allowed: {', '.join(known) or '(none found)'}")
        cfg = SweepConfig.from_yaml(config_dir() / f"{name}.yaml")
    return cfg.replace(
        name=args.name, train_blur=args.blur, archs=args.archs, seeds=args.seeds, epochs=args.epochs,
        storage=args.storage, data_dir=args.data_dir, per_class=args.per_class, test_blur=args.test_blur,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, max_failures=args.max_failures,
        max_concurrent=args.max_concurrent, reuse_actors=False if args.no_reuse_actors else None,
        precision=args.precision, lr_schedule=args.lr_schedule, warmup_fraction=args.warmup,
        learning_rate=args.lr, batch_size=args.batch_size,
        # --epochs N means every cell N epochs: it replaces a preset's per-row budgets too
        epochs_by_train_blur={} if args.epochs is not None else None,
    )


def storage_root(cfg: SweepConfig) -> str:
    """Ray needs an absolute path or a URI (a relative storage path fails, ray#42968)."""
    from hwclf.io import is_uri

    return cfg.storage if is_uri(cfg.storage) else str(Path(cfg.storage).expanduser().resolve())


def experiment_path(cfg: SweepConfig) -> str:
    root = storage_root(cfg)
    return f"{root.rstrip('/')}/{cfg.name}"


def environment(cfg: SweepConfig) -> dict:
    import cv2
    import numpy
    import ray

    def version(module: str) -> str | None:
        try:
            from importlib.metadata import version as v

            return v(module)
        except Exception:
            return None

    repo = Path(__file__).resolve().parent.parent
    commit = dirty = None
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        if commit:
            dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                        capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    resources = ray.cluster_resources() if ray.is_initialized() else {}
    return {
        "hwclf": version("hwclf"), "python": platform.python_version(), "tensorflow": version("tensorflow"),
        "keras": version("keras"), "ray": ray.__version__, "numpy": numpy.__version__, "opencv": cv2.__version__,
        "git_commit": commit, "git_dirty": dirty, "host": platform.node(), "platform": platform.platform(),
        "cpus": int(resources.get("CPU", os.cpu_count() or 0)), "gpus": int(resources.get("GPU", 0)),
        "nodes": len([n for n in ray.nodes() if n.get("Alive")]) if ray.is_initialized() else 1,
    }


def write_sweep_json(path: str, record: dict) -> None:
    import json

    from hwclf.io import to_json, write_bytes

    write_bytes(f"{path}/{SWEEP_FILE}", (json.dumps(json.loads(to_json(record)), indent=2) + "\n").encode())


def sweep_yaml(cfg: SweepConfig) -> bytes:
    """The resolved config (preset + overrides), loadable with --config: what reproduces this sweep."""
    import yaml

    header = f"# Resolved config of sweep '{cfg.name}'. Reproduce: python sweep/run.py --config <this file>\n"
    return (header + yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)).encode()


def connect_ray(address: str | None, num_cpus: int | None, verbose: bool = False) -> str:
    """Join the running cluster if there is one, else start Ray here; returns a word for the log.

    `--address local` always starts a private Ray on this machine, even when another one is running
    (tests, or a second sweep beside a running one). Workers' output still reaches this console
    (log_to_driver): errors and warnings stay visible; only Ray's own info lines are held back.
    """
    import ray

    if ray.is_initialized():
        return "already connected"
    if not verbose:
        quiet_worker_shutdown()
    quiet = {"log_to_driver": True, "configure_logging": True, "logging_level": "info" if verbose else "warning"}
    local = {"num_cpus": num_cpus, "include_dashboard": False, **quiet}
    if address == "local":
        ray.init(address="local", **local)
        return "a new local Ray on this machine"
    if address:
        ray.init(address=address, **quiet)
        return f"cluster at {address}"
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**quiet)
        return f"cluster at {os.environ['RAY_ADDRESS']}"
    try:
        ray.init(address="auto", **quiet)
        return "running cluster (auto)"
    except (ConnectionError, RuntimeError):
        ray.init(address="local", **local)
        return "local Ray on this machine"


def make_trainable(cfg: SweepConfig, dataset, verbose: bool = False):
    from ray import tune

    from sweep.trainable import train_one

    resources = {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}
    # quiet travels with the trainable (not the environment), so it reaches workers on any cluster
    return tune.with_resources(tune.with_parameters(train_one, data=dataset, quiet=not verbose), resources)


def param_space(cfg: SweepConfig) -> dict:
    from ray import tune

    threads = cfg.threads_per_trial or max(1, math.ceil(cfg.cpus_per_trial))
    base = cfg.trial_config(cfg.archs[0], cfg.train_blur[0], cfg.seeds[0], threads=threads).to_dict()
    base.update({"arch": tune.grid_search(list(cfg.archs)), "blur": tune.grid_search(list(cfg.train_blur)),
                 "seed": tune.grid_search(list(cfg.seeds))})
    if cfg.epochs_by_train_blur:  # each cell its row's budget, resolved after the grid (Tune's conditional spaces)
        row_epochs, default = dict(cfg.epochs_by_train_blur), cfg.epochs
        base["epochs"] = tune.sample_from(lambda config: row_epochs.get(config["blur"], default))
    return base


def build_tuner(cfg: SweepConfig, dataset, exp_path: str, resume: bool, total: int, verbose: bool = False):
    from ray import tune

    from sweep.progress import TrialLines, trial_dirname, trial_name

    trainable = make_trainable(cfg, dataset, verbose)
    if resume:
        if not tune.Tuner.can_restore(exp_path):
            raise UserError(f"--resume: nothing to resume at {exp_path} (no Tune experiment state there)")
        return tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                  param_space=param_space(cfg))
    run_config = tune.RunConfig(
        name=cfg.name,
        storage_path=storage_root(cfg),
        failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[TrialLines(total)],
        # 0: no per-trial config boxes or status tables (TrialLines says what matters; errors still print);
        # --verbose: Ray's own output. A --resume keeps the setting the sweep started with (Tune restores it).
        verbose=1 if verbose else 0,
    )
    tune_config = tune.TuneConfig(
        num_samples=1,  # seed is an explicit grid axis; repeating the grid would duplicate seeds
        max_concurrent_trials=cfg.max_concurrent or None,
        trial_name_creator=trial_name,
        trial_dirname_creator=trial_dirname,
        # Trials with the same resources run one after another in the same worker: TensorFlow is imported
        # and the process started once per slot, not once per trial. Each trial still starts from a clean
        # Keras session and its own seed (run_trial), so results do not depend on what ran before.
        reuse_actors=cfg.reuse_actors,
    )
    return tune.Tuner(trainable, param_space=param_space(cfg), tune_config=tune_config, run_config=run_config)


SWEEP_OUTPUTS = (SWEEP_FILE, SAMPLES_FILE, CONFIG_FILE, "report", "records", "tuner.pkl", "trainable.pkl",
                 "experiment_state-*.json", "basic-variant-state-*.json", "search_gen_state-*.json", ".validate_*")


def remove_sweep_outputs(exp: Path) -> None:
    """What a sweep and its report wrote (trial dirs, Ray state, report); a user's own files there stay."""
    doomed = {p for pattern in SWEEP_OUTPUTS for p in exp.glob(pattern)}
    doomed |= {p.parent for p in exp.glob("*/params.json")}
    for p in doomed:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def check_fresh_start(exp_path: str, args) -> None:
    from hwclf.io import exists, is_uri

    if not exists(f"{exp_path}/{SWEEP_FILE}") and not (not is_uri(exp_path) and Path(exp_path).is_dir()
                                                        and any(Path(exp_path).iterdir())):
        return
    if args.fresh:
        if is_uri(exp_path):
            raise UserError(f"--fresh: will not delete {exp_path}; remove it yourself or pick another --name")
        remove_sweep_outputs(Path(exp_path))
        return
    raise UserError(f"{exp_path} already holds a sweep: --resume to finish it, --fresh to delete it and start "
                    f"over, or --name NEW for another")


def quiet_worker_shutdown() -> None:
    """Workers' output reaches this console without the traceback Ray's SIGTERM handler can leave when a
    sweep ends (hwclf.quiet.drop_sigterm_tracebacks). Wraps the function Ray prints worker lines with; where
    a Ray version lacks it, nothing changes (the lines still print)."""
    import ray._private.worker as ray_worker

    from hwclf.quiet import drop_sigterm_tracebacks

    original = getattr(ray_worker, "print_worker_logs", None)
    if original is None or getattr(original, "hwclf_filtered", False):
        return

    def print_worker_logs(data, print_file, *args, **kwargs):
        lines = data.get("lines") if isinstance(data, dict) else None
        if lines:
            kept = drop_sigterm_tracebacks(list(lines))
            if not kept:
                return None
            data = {**data, "lines": kept}
        return original(data, print_file, *args, **kwargs)

    print_worker_logs.hwclf_filtered = True
    ray_worker.print_worker_logs = print_worker_logs


def quiet_console() -> None:
    """The default console: what TrialLines prints, the summary, warnings and errors; not the start-up
    chatter of TensorFlow, Ray's per-trial boxes and tables, or Tune's 'operation took 0.7 s' notes (noise
    on a busy small machine). `--verbose` skips all of this. Runs before anything imports Keras or Ray Tune."""
    import logging

    from hwclf.quiet import quiet_tensorflow_import

    quiet_tensorflow_import()
    # Tune's new output engine prints the experiment box whatever `verbose` says; its older reporter at
    # verbose=0 prints nothing (errors are still logged, and TrialLines names each failed trial)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "60")
    # "Experiment state snapshotting has been triggered multiple times": 3 lines every few short trials,
    # about Tune's own bookkeeping when trials checkpoint every epoch (as ours do, on purpose)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # an info notice logged as a warning at every local start; the warning that auth is OFF still shows
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        lambda record: not record.getMessage().startswith("Token authentication is enabled"))


def run(args) -> int:
    started = time.time()
    if not args.verbose:
        quiet_console()
    cfg = load_config(args)
    exp_path = experiment_path(cfg)
    if not args.resume:
        check_fresh_start(exp_path, args)

    from hwclf.data import load_dataset  # fail on bad data before Ray starts anything

    from hwclf.mixture import label

    print(f"hwclf sweep '{cfg.name}': {cfg.dataset}, {cfg.blur_kind} blur {[label(b) for b in cfg.train_blur]} x "
          f"{len(cfg.archs)} archs x {len(cfg.seeds)} seeds = {len(cfg.grid())} trials, {cfg.epochs_text()} epochs each",
          flush=True)
    dataset = load_dataset(cfg.dataset, cfg.data_dir)
    print(f"data: {dataset.name}, {len(dataset.y_train):,} train / {len(dataset.y_test):,} test, "
          f"sha256:{dataset.fingerprint[:16]}…", flush=True)

    how = connect_ray(args.address, args.num_cpus, args.verbose)
    import ray

    print(f"ray: {how}; resources {ray.cluster_resources().get('CPU', 0):g} CPU, "
          f"{ray.cluster_resources().get('GPU', 0):g} GPU; per trial {cfg.cpus_per_trial:g} CPU, "
          f"{cfg.gpus_per_trial:g} GPU", flush=True)
    print(f"results: {exp_path}", flush=True)

    from hwclf.preview import preview_png
    from hwclf.io import write_bytes

    record = {
        "schema": "hwclf.sweep/1", "config": cfg.to_dict(), "grid": cfg.grid(), "dataset": dataset.describe(),
        "environment": environment(cfg), "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "finished_at": None, "wall_time_s": None, "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
    }
    if args.resume:
        record["resumed_at"] = record.pop("started_at")
    write_sweep_json(exp_path, record)
    write_bytes(f"{exp_path}/{CONFIG_FILE}", sweep_yaml(cfg))
    write_bytes(f"{exp_path}/{SAMPLES_FILE}", preview_png(
        dataset.x_test, dataset.y_test, dataset.classes, cfg.test_blur, cfg.blur_kind,
        title=f"{dataset.name} test images at each {cfg.blur_kind} blur level"))

    total = len(cfg.grid())
    tuner = build_tuner(cfg, dataset, exp_path, args.resume, total, args.verbose)
    results = tuner.fit()

    n_err = results.num_errors
    n_ok = sum(1 for r in results if r.error is None and (r.metrics or {}).get("done_training"))
    wall = time.time() - started
    record.update({"finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "wall_time_s": wall,
                   "trials_complete": n_ok, "trials_failed": n_err})
    write_sweep_json(exp_path, record)
    print(f"\nsweep '{cfg.name}' finished: {n_ok}/{total} trials complete, {n_err} failed, "
          f"wall time {wall / 60:.1f} min", flush=True)
    if n_err:
        for r in results.errors:
            print(f"  failed: {str(r).splitlines()[0][:160]}", flush=True)

    if not args.no_report:
        from hwclf.report import write_report

        report = write_report(exp_path)
        print(f"report: {report}", flush=True)
    return 0 if n_err == 0 and n_ok == total else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sweep/run.py", description="Ray Tune sweep: blur x architecture x seed.")
    g = p.add_argument_group("what to run")
    g.add_argument("--preset", help=f"a config in sweep/configs ({', '.join(presets())}); default demo")
    g.add_argument("--config", help="a sweep config YAML file")
    g.add_argument("--name", help="experiment name (directory under storage)")
    g.add_argument("--blur", help="train blur levels, e.g. 0,5,10,20,30; a mixture is one value: 0,5,mix:0/5/10")
    g.add_argument("--test-blur", help="test blur levels (default: 0 and every train level)")
    g.add_argument("--archs", help="architectures, e.g. basic,resnet_se")
    g.add_argument("--seeds", help="seeds, e.g. 0,1,2")
    g.add_argument("--epochs", type=int, help="epochs for every cell (replaces the preset's epochs_by_train_blur)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float, help="Adam learning rate (the peak, with --lr-schedule cosine)")
    g.add_argument("--lr-schedule", help="constant or cosine (linear warm-up, then cosine decay to 0)")
    g.add_argument("--warmup", type=float, help="cosine: fraction of all steps spent warming up (e.g. 0.2)")
    g.add_argument("--precision", help="float32 or mixed_bfloat16 (bf16 compute: 1.3-1.6x faster where the "
                                       "hardware has bf16 units)")
    g.add_argument("--per-class", type=int, help="at most this many training images per class")
    g.add_argument("--data-dir", help="dataset directory (default $HWCLF_DATA_DIR)")
    g.add_argument("--storage", help="results root: a path (made absolute) or s3:// / gs:// URI (default results)")
    r = p.add_argument_group("where and how")
    r.add_argument("--address", help="Ray cluster address; 'local' starts a private Ray here "
                                     "(default: a running cluster if any, else local Ray)")
    r.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    r.add_argument("--cpus-per-trial", type=float)
    r.add_argument("--gpus-per-trial", type=float)
    r.add_argument("--max-concurrent", type=int, help="trials at once (default: as resources allow)")
    r.add_argument("--max-failures", type=int, help="retries per trial, each from its last checkpoint")
    r.add_argument("--no-reuse-actors", action="store_true",
                   help="a fresh worker process for every trial (default: a worker runs trial after trial)")
    r.add_argument("--resume", action="store_true", help="finish an interrupted sweep of the same name")
    r.add_argument("--fresh", action="store_true", help="delete an existing local sweep of the same name first")
    r.add_argument("--no-report", action="store_true", help="skip the report at the end")
    r.add_argument("--verbose", action="store_true", help="Ray's and TensorFlow's full output (default: one line "
                                                          "per finished trial with progress and ETA, and errors)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.resume and args.fresh:
        print("sweep: error: --resume and --fresh contradict each other", file=sys.stderr)
        return 2
    try:
        return run(args)
    except UserError as e:
        print(f"sweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweep: interrupted; finish it later with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
