"""The Tune trainable: one small function around `hwclf.trial.run_trial`.

Ray Tune calls it once per (arch, blur, seed) cell with that cell's trial config; the raw dataset comes
through `tune.with_parameters` (in the object store once, shared by all trials) and each trial blurs its
own copy. Every epoch reports its metrics with a checkpoint; a retried trial continues from the last one
that verifies (hwclf.checkpoint), falling back to the one before it, else starting over.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

# Before TensorFlow is imported in this worker: quiet its start-up logs (train_one silences them fully).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FAULT_ENV = "HWCLF_FAULT_INJECT"


def _maybe_inject_fault(config: dict, epoch: int) -> None:
    """Crash a trial once, for the fault-tolerance tests: HWCLF_FAULT_INJECT="<epoch>:<marker dir>[:exit]".

    After reporting `epoch`, the first attempt of each trial raises (or, with `:exit`, kills its worker
    process); a marker file per trial makes the retry run on. Unset in normal use.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    from hwclf.mixture import slug

    parts = spec.split(":")
    at_epoch, marker_dir = int(parts[0]), Path(parts[1])
    if epoch != at_epoch:
        return
    marker = marker_dir / f"crashed-{config['arch']}-b{slug(config['blur'])}-s{config['seed']}"
    if marker.exists():
        return
    marker_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(epoch))
    if len(parts) > 2 and parts[2] == "exit":
        os._exit(1)
    raise RuntimeError(f"injected fault after epoch {epoch} ({FAULT_ENV})")


KEEP_OLDER = 1  # checkpoints before the latest to fall back through (the run keeps num_to_keep=2)


def older_checkpoints(checkpoint, keep: int = KEEP_OLDER) -> list:
    """The trial's checkpoints before `checkpoint`, newest first, from the same storage.

    `tune.get_checkpoint()` gives only the latest; the ones Tune kept beside it (checkpoint_NNNNNN in the
    trial directory, local or s3/gs alike) are the fallback when the latest is damaged. Listing failures
    give none: the trial then starts over rather than not at all.
    """
    import pyarrow.fs
    from ray import tune

    parent, name = os.path.split(checkpoint.path.rstrip("/"))
    pattern = re.compile(r"checkpoint_(\d+)$")
    current = pattern.match(name)
    if not current:
        return []
    try:
        infos = checkpoint.filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    except (OSError, ValueError):
        return []
    older = sorted((info.path for info in infos if info.type == pyarrow.fs.FileType.Directory
                    and (m := pattern.match(os.path.basename(info.path))) and int(m[1]) < int(current[1])),
                   reverse=True)
    return [tune.Checkpoint(path, filesystem=checkpoint.filesystem) for path in older[:keep]]


def train_one(config: dict, data=None, quiet: bool = False) -> None:
    if quiet:  # before hwclf imports Keras in this worker (a reused worker has it already: a no-op)
        import logging

        from hwclf.quiet import quiet_tensorflow_import

        quiet_tensorflow_import()
        for name in ("ray.train", "ray.tune"):  # 'Checkpoint successfully created at ...' every epoch
            logging.getLogger(name).setLevel(logging.WARNING)
    import ray
    from ray import tune

    from hwclf.config import TrialConfig
    from hwclf.trial import run_trial

    cfg = TrialConfig.from_dict(config)

    # which node and worker process ran each epoch: multi-node checks, and reused workers (reuse_actors)
    node_id = ray.get_runtime_context().get_node_id()

    last_report_s = None

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        nonlocal last_report_s
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        # report_s: how long the previous tune.report held this trial (persisting its checkpoint, then
        # waiting for the driver to take the result): time that is neither training nor testing
        t = time.perf_counter()
        tune.report({**metrics, "node_id": node_id, "pid": os.getpid(), "report_s": last_report_s},
                    checkpoint=checkpoint)
        last_report_s = time.perf_counter() - t
        if "done_training" not in metrics:
            _maybe_inject_fault(config, metrics["epoch"])

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run_trial(cfg, data, report=report)
        return
    with contextlib.ExitStack() as stack:  # remote checkpoints are downloaded, and cleaned up after
        resume_from = [stack.enter_context(checkpoint.as_directory())]
        for older in older_checkpoints(checkpoint):
            try:
                resume_from.append(stack.enter_context(older.as_directory()))
            except Exception:  # noqa: BLE001 - a fallback that cannot be fetched is no fallback; the latest decides
                pass
        run_trial(cfg, data, report=report, resume_from=resume_from)
