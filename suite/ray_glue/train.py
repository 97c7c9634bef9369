"""One run as a Ray Train V2 ``TorchTrainer`` (``world_size > 1``, or ``use_train``).

The worker loop (:func:`train_loop_per_worker`) calls the standalone :func:`suite.stages.runner.execute`
unchanged on every rank; rank 0 reports each epoch with a checkpoint (the run's own ``checkpoint_last.pt``,
``checkpoint_best.pt`` and ``metrics.csv``), ``TuneReportCallback`` forwards the metrics to Tune, and a
restarted worker group resumes from ``ray.train.get_checkpoint()`` *and* the run directory, whichever is newer
(so a run can move between launchers).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from suite.config import RunConfig
from suite.paths import ExperimentPaths, RunPaths
from suite.ray_glue.faults import maybe_crash
from suite.ray_glue.resources import TrialOptions, device_share, worker_resources

log = logging.getLogger("suite.ray_glue")

RAY_CHECKPOINT_FILES = ("checkpoint_last.pt", "checkpoint_best.pt", "metrics.csv")


def mark_launcher(kind: str) -> None:
    """``SUITE_LAUNCHER`` for env.json: ``ray-tune`` / ``ray-train`` (appended to e.g. ``slurm``)."""
    cur = os.environ.get("SUITE_LAUNCHER", "")
    if "ray-" in cur:
        return
    os.environ["SUITE_LAUNCHER"] = kind if cur in ("", "local") else f"{cur}+{kind}"


def epoch_report(metrics: dict[str, float], cfg: RunConfig) -> dict[str, Any]:
    """What one epoch reports to Tune or Train: the numeric run-level metrics, the epoch and the run id."""
    out: dict[str, Any] = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    out["epoch"] = int(metrics.get("epoch", -1))
    out["run_id"] = cfg.run_id
    return out


class TrainHooks:
    """Train workers: every rank reports (a barrier); rank 0 attaches the run's checkpoint files."""

    def __init__(self, cfg: RunConfig, gpus: float = 0.0) -> None:
        self.cfg = cfg
        self.device_share = device_share(gpus)  # each worker's share of a GPU (a fractional gpus per worker)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], paths: RunPaths) -> None:
        import ray.train

        rank = ray.train.get_context().get_world_rank()
        maybe_crash(epoch, paths, rank)
        report = epoch_report(metrics, self.cfg)
        if rank != 0:
            ray.train.report(report)
            return
        tmp = Path(tempfile.mkdtemp(prefix=f"suite-ckpt-{paths.run_id[:40]}-"))
        try:
            for name in RAY_CHECKPOINT_FILES:
                src = paths.root / name
                if src.exists():
                    shutil.copy2(src, tmp / name)
            (tmp / "meta.json").write_text(json.dumps({"run_id": paths.run_id, "epoch": epoch}) + "\n")
            ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(str(tmp)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_epoch(path: Path) -> int:
    """The epoch stored in a suite checkpoint (-1 when absent or unreadable)."""
    if not path.exists():
        return -1
    import torch

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        return int(ck.get("epoch", -1))
    except Exception:  # noqa: BLE001 - a corrupt file counts as absent
        return -1


def restore_from_checkpoint_dir(ckpt_dir: Path, paths: RunPaths) -> bool:
    """Copy a Ray checkpoint's files into the run directory when it is newer than the run's own checkpoint.

    Returns True when files were copied (the run then resumes from the Ray checkpoint's epoch; ``execute``
    cuts ``metrics.csv`` back to it).
    """
    meta_path = ckpt_dir / "meta.json"
    if not meta_path.exists():
        return False
    meta = json.loads(meta_path.read_text())
    if meta.get("run_id") != paths.run_id:
        log.warning(
            "%s: Ray checkpoint %s belongs to %s; ignored", paths.run_id, ckpt_dir, meta.get("run_id")
        )
        return False
    ray_epoch = int(meta.get("epoch", -1))
    own_epoch = checkpoint_epoch(paths.checkpoint_last)
    if ray_epoch <= own_epoch:
        return False
    from suite.atomic import atomic_path

    paths.root.mkdir(parents=True, exist_ok=True)
    for name in RAY_CHECKPOINT_FILES:
        src = ckpt_dir / name
        if src.exists():
            with atomic_path(paths.root / name) as tmp:
                shutil.copyfile(src, tmp)
    log.info(
        "%s: restored the Ray checkpoint of epoch %d (run directory had %d)",
        paths.run_id,
        ray_epoch,
        own_epoch,
    )
    return True


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train worker loop: the standalone ``execute`` on every rank (process group set up by Train)."""
    import ray.train
    import torch

    from suite.stages.runner import execute

    cfg = RunConfig.from_dict(config["run"], source="trial config")
    torch.set_num_threads(int(cfg.threads))
    mark_launcher("ray-train")
    root = Path(config["root"])
    paths = ExperimentPaths(root).run(cfg.run_id)
    rank = ray.train.get_context().get_world_rank()
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None and rank == 0:
        with ckpt.as_directory() as d:
            restore_from_checkpoint_dir(Path(d), paths)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    execute(cfg, root, hooks=TrainHooks(cfg, float(config.get("gpus", 0.0))))


def fit_with_train(cfg: RunConfig, opts: TrialOptions, *, in_tune: bool = True) -> Any:
    """Build and fit a ``TorchTrainer`` (``num_workers = cfg.world_size``) for one run; returns its Result.

    The Train run name is the run id and its storage ``<experiment>/ray/train``: a retried trial finds its
    Train checkpoints again.
    """
    # Ray Train V2's classes (what ``ray.train.RunConfig``, ``ray.train.torch.TorchTrainer`` etc. are at run
    # time with V2 on, which LoggingConfig needs), imported from where they live so that type checking sees
    # the classes that run
    from ray.train.v2.api.callback import UserCallback
    from ray.train.v2.api.config import (
        CheckpointConfig,
        FailureConfig,
        LoggingConfig,
        ScalingConfig,
    )
    from ray.train.v2.api.config import RunConfig as TrainRunConfig
    from ray.train.v2.torch.torch_trainer import TorchTrainer

    callbacks: list[UserCallback] = []
    if in_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    storage = ExperimentPaths(Path(opts.experiment_root)).ray_dir / "train"
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "run": cfg.to_dict(include_derived=False),
            "root": opts.experiment_root,
            "gpus": opts.gpus,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.world_size, use_gpu=opts.gpus > 0, resources_per_worker=worker_resources(opts)
        ),
        run_config=TrainRunConfig(
            name=cfg.run_id,
            storage_path=str(storage.resolve()),
            callbacks=callbacks,
            failure_config=FailureConfig(max_failures=opts.train_max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    return trainer.fit()
