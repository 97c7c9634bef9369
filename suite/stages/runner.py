"""One run from start to finish: :func:`execute` (the entry point of every launcher) and the epoch loop.

One run = one :class:`~suite.paths.RunPaths` directory. :func:`execute` is what every launcher (``suite run``,
Ray Train workers, SLURM jobs) calls:

1. build missing prerequisites first (``cfg.prerequisites()``: the regressor of a ``proposed`` run, the FS
   model of a ``proposals`` run), or reuse finished ones;
2. take a file lock on ``RunPaths.lock`` (rank 0 only) so that concurrent launchers never train the same run
   twice (a second launcher waits, then finds the run finished and skips it);
3. skip a finished run (``summary.json`` exists); resume a partial one from ``checkpoint_last.pt``, cutting
   ``metrics.csv`` back to the checkpoint's epoch so no epoch appears twice;
4. write ``config.json`` (before the first step) and ``env.json``; train epoch by epoch (:func:`run_epochs`),
   appending tidy rows to ``metrics.csv`` and writing ``checkpoint_last.pt`` atomically after each epoch;
5. write the stage's predictions, evaluate a segmenter on the held-out test split
   (:func:`suite.evaluation.evaluate_after_training`), then ``summary.json`` last; ``failed.json`` if
   anything raised.

Determinism: the global RNGs are reseeded each epoch (:func:`suite.stages.checkpoint.seed_epoch`) and the data
order is a pure function of the seed and the epoch (:mod:`suite.stages.process_group`), so a resumed run
repeats the uninterrupted one exactly on CPU.

This module imports the stage modules; none of them imports it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from suite.atomic import write_json_atomic, write_text_atomic
from suite.config import RunConfig
from suite.data.dataset import PreparedData
from suite.errors import InputError
from suite.evaluation import evaluate_after_training
from suite.paths import ExperimentPaths, RunPaths
from suite.provenance import environment
from suite.run_lock import holding
from suite.stages import process_group as pg
from suite.stages.base import Hooks, RunContext, Stage, configure_torch, open_data, select_device
from suite.stages.checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_epoch, set_rng_state
from suite.stages.cost import CostMeter
from suite.stages.metrics_log import MetricsWriter
from suite.stages.regressor import RegressorStage
from suite.stages.segmenter import SegmenterStage

log = logging.getLogger("suite.stages")

# a test / signal-friendly stop: after this epoch's checkpoint the run returns (status "partial")
STOP_ENV = "SUITE_STOP_AFTER_EPOCH"


# ---------------------------------------------------------------------------------------------- execute
def execute(
    cfg: RunConfig,
    experiment_root: str | os.PathLike,
    hooks: Hooks | None = None,
    *,
    stop_after_epoch: int | None = None,
) -> RunPaths:
    """Run one stage instance (building prerequisites first); return its run directory.

    Works standalone (no process group) and on every rank of a ``torch.distributed`` job (Ray Train, torchrun)
    whose size equals ``cfg.world_size``. ``stop_after_epoch`` (or ``$SUITE_STOP_AFTER_EPOCH``, or SIGTERM /
    SIGUSR1) stops after that epoch's checkpoint, leaving a partial run that the same call resumes.
    Prerequisite runs are executed first with ``hooks=None`` (their epochs are not reported as this run's);
    under DDP they run on the same ranks. A run directory holding only ``checkpoint_last.pt`` (a run moved
    between launchers) resumes from it; ``metrics.csv`` then starts at the next epoch.
    """
    pg.maybe_init_from_env(cfg.world_size)
    pg.check_world_size(cfg.world_size)
    cfg, data = open_data(cfg)
    exp = ExperimentPaths(Path(experiment_root))
    for pre in cfg.prerequisites():
        pre_paths = execute(pre, experiment_root, hooks=None)
        if not pre_paths.is_finished():  # a prerequisite interrupted by a signal: nothing to build on
            raise RuntimeError(f"prerequisite run {pre_paths.root} did not finish")
    paths = exp.run(cfg.run_id)
    exp.runs_dir.mkdir(parents=True, exist_ok=True)
    if stop_after_epoch is None:
        stop_after_epoch = _stop_after_env()

    with holding(paths) if pg.is_main() else contextlib.nullcontext():
        finished = bool(pg.broadcast_object(paths.is_finished()))
        if finished:
            log.info("%s: already finished, skipping (%s)", cfg.run_id, paths.root)
            return paths
        return _execute_locked(cfg, paths, Path(experiment_root), data, hooks, stop_after_epoch)


def _execute_locked(
    cfg: RunConfig,
    paths: RunPaths,
    experiment_root: Path,
    data: PreparedData,
    hooks: Hooks | None,
    stop_after_epoch: int | None,
) -> RunPaths:
    device = select_device(cfg)
    configure_torch(cfg, device)
    ctx = RunContext(
        cfg=cfg,
        paths=paths,
        experiment_root=experiment_root,
        data=data,
        device=device,
        rank=pg.rank(),
        world=pg.world_size(),
        hooks=hooks,
        stop_after_epoch=stop_after_epoch,
    )
    handler = None
    if ctx.is_main:
        paths.root.mkdir(parents=True, exist_ok=True)
        if paths.config.exists():
            old = paths.read_json(paths.config)
            if old.get("run_id") != cfg.run_id:
                raise InputError(
                    f"{paths.config}: belongs to run {old.get('run_id')!r}, not {cfg.run_id!r}; "
                    "remove the directory"
                )
        else:
            write_text_atomic(paths.config, cfg.to_json())
        write_json_atomic(paths.env, {**environment(world_size=ctx.world), "device": str(device)})
        handler = _attach_run_log(paths.log)
    pg.barrier()
    stop_flag = _StopFlag()
    stop_flag.install()
    t0 = time.time()
    try:
        # before the stage is built: data and pseudo-labels count; a launcher that packs runs on a GPU says
        # which share of it this run holds (Hooks.device_share)
        meter = CostMeter(device, ctx.world, share=float(getattr(hooks, "device_share", 1.0)))
        stage = _make_stage(ctx)
        done = run_epochs(ctx, stage, stop_flag, meter)
        if done is None:
            return paths
        if ctx.is_main:
            log.info(
                "%s: finishing (best epoch %d, %s=%.4g)",
                cfg.run_id,
                done["best_epoch"],
                "selection",
                done["best_value"],
            )
        stage.finish(paths.checkpoint_best, done["final"])
        if cfg.stage == "segmenter" and ctx.is_main:
            # the held-out test split, now that the last epoch is done (never earlier: nothing selects on it)
            evaluate_after_training(cfg, paths, data, device)
        cost = meter.totals()  # after all of the run's work; a collective under DDP (every rank)
        if ctx.is_main:
            summary = {
                "run_id": cfg.run_id,
                "stage": cfg.stage,
                "method": cfg.method if cfg.stage == "segmenter" else "regressor",
                "epochs": cfg.epochs,
                "best_epoch": done["best_epoch"],
                "best_value": done["best_value"],
                "selection_metric": _selection_name(cfg),
                "final": done["final"],
                "wall_time_s": done["wall_time_s"] + time.time() - t0,
                "wall_time_this_session_s": time.time() - t0,
                "device": str(device),
                "world_size": ctx.world,
                "threads": cfg.threads,
                "n_labeled_effective": _labeled_patients(ctx),
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "cost": cost,
            }
            paths.failed.unlink(missing_ok=True)
            write_json_atomic(paths.summary, summary)
        pg.barrier()
        return paths
    except BaseException as e:
        if ctx.is_main and not isinstance(e, KeyboardInterrupt | SystemExit):
            write_json_atomic(
                paths.failed,
                {
                    "run_id": cfg.run_id,
                    "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(),
                    "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                },
            )
        raise
    finally:
        stop_flag.restore()
        if handler is not None:
            _detach_run_log(handler)


def _labeled_patients(ctx: RunContext) -> int | None:
    """How many labeled patients ``n_labeled`` (a paper-scale count) meant in this cohort (the report shows
    it: n = 10 is 3 patients in a 30-patient phantom)."""
    cfg = ctx.cfg
    try:
        return int(ctx.data.split(cfg.n_labeled, cfg.split_mode, cfg.split_seed).n_effective)
    except InputError:  # a cohort too small for splits: the run could not have trained
        return None


def _selection_name(cfg: RunConfig) -> str:
    if cfg.stage == "regressor":
        return "regval/size_abs_err"
    return "val/dice2d_slices" if cfg.best_metric == "dice2d" else "val/dice_mean"


def _make_stage(ctx: RunContext) -> Stage:
    if ctx.cfg.stage == "regressor":
        return RegressorStage(ctx)
    return SegmenterStage(ctx)


# ---------------------------------------------------------------------------------------------- epoch loop
def _is_better(value: float, best: float | None, higher: bool) -> bool:
    if math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best if higher else value < best


def run_epochs(
    ctx: RunContext, stage: Stage, stop_flag: _StopFlag | None = None, meter: CostMeter | None = None
) -> dict[str, Any] | None:
    """The epoch loop shared by every stage, with resume, best-checkpoint, hooks and clean stops.

    Returns the summary fields (``best_epoch``, ``best_value``, ``final``) when all epochs are done, or
    ``None`` when the run stopped early (``stop_after_epoch`` / a signal): the caller leaves it partial.
    ``meter``: the run's cost, resumed from and saved into ``checkpoint_last.pt``.
    """
    cfg, paths = ctx.cfg, ctx.paths
    writer = MetricsWriter(paths.metrics)
    start, best_value, best_epoch = 0, None, -1
    final: dict[str, float] = {}
    earlier_wall = 0.0  # wall time of earlier sessions of this run (resume), up to their last checkpoint
    t_session = time.perf_counter()
    if paths.checkpoint_last.exists():
        ck = load_checkpoint(paths.checkpoint_last, map_location=ctx.device)
        if ck.get("run_id") != cfg.run_id:
            raise InputError(
                f"{paths.checkpoint_last}: belongs to run {ck.get('run_id')!r}, not {cfg.run_id!r}; "
                "delete it or use the matching config"
            )
        stage.load_state_dict(ck["stage"])
        set_rng_state(ck["rng"])
        start = int(ck["epoch"]) + 1
        best_value = ck["best_value"]
        best_epoch = int(ck["best_epoch"])
        final = dict(ck.get("final", {}))
        earlier_wall = float(ck.get("wall_time_s", 0.0))
        if meter is not None:
            meter.resume(ck.get("cost"))
        if ctx.is_main:
            dropped = writer.cut_after(int(ck["epoch"]))
            log.info(
                "%s: resuming after epoch %d (dropped %d metric rows of later epochs)",
                cfg.run_id,
                ck["epoch"],
                dropped,
            )
    elif ctx.is_main:
        writer.cut_after(-1)  # a crash before the first checkpoint: start metrics.csv again
    pg.barrier()

    for epoch in range(start, cfg.epochs):
        seed_epoch(cfg, epoch)
        t0 = time.perf_counter()
        res = stage.epoch(epoch)
        elapsed = time.perf_counter() - t0
        improved = _is_better(res.selection, best_value, stage.higher_is_better)
        if improved:
            best_value, best_epoch = float(res.selection), epoch
        stage.after_epoch(epoch, improved, best_epoch)
        split0 = "train"
        rows = list(res.rows) + [(epoch, split0, "", "epoch_time_s", elapsed)]
        final = {**res.metrics, "train/epoch_time_s": elapsed}
        last = epoch == cfg.epochs - 1
        stop = _stop_requested(ctx, epoch, stop_flag)  # on every rank (a collective under DDP)
        save_last = last or (epoch + 1) % cfg.checkpoint_every == 0 or stop
        cost = meter.totals() if meter is not None and save_last else None  # every rank (collective)
        if ctx.is_main:
            writer.append(rows)
            if improved:
                save_checkpoint(
                    paths.checkpoint_best,
                    {"model": stage.model_state(), "epoch": epoch, "value": best_value, "run_id": cfg.run_id},
                )
            if save_last:
                save_checkpoint(
                    paths.checkpoint_last,
                    {
                        "stage": stage.state_dict(),
                        "rng": rng_state(),
                        "epoch": epoch,
                        "best_value": best_value,
                        "best_epoch": best_epoch,
                        "final": final,
                        "run_id": cfg.run_id,
                        "world_size": ctx.world,
                        "wall_time_s": earlier_wall + time.perf_counter() - t_session,
                        "cost": cost,
                    },
                )
        pg.barrier()
        log.info(  # 0-based like metrics.csv, summary.json's best_epoch and the report's figures
            "%s epoch %d (last %d): %s (%.1fs)",
            cfg.run_id,
            epoch,
            cfg.epochs - 1,
            ", ".join(f"{k}={v:.4g}" for k, v in res.metrics.items() if not k.startswith("train/lr")),
            elapsed,
        )
        if ctx.hooks is not None:
            ctx.hooks.on_epoch_end(
                epoch,
                {
                    **final,
                    "epoch": float(epoch),
                    "selection": float(res.selection),
                    "best_value": float("nan") if best_value is None else best_value,
                    "best_epoch": float(best_epoch),
                },
                paths,
            )
        if not last and stop:
            log.info(
                "%s: stopping after epoch %d as requested (resume with the same command)", cfg.run_id, epoch
            )
            return None
    if best_value is None:
        best_value = float("nan")
    # wall time of the earlier sessions; the caller adds this session's
    return {"best_epoch": best_epoch, "best_value": best_value, "final": final, "wall_time_s": earlier_wall}


# ---------------------------------------------------------------------------------------------- stopping
def _stop_after_env() -> int | None:
    v = os.environ.get(STOP_ENV, "").strip()
    if not v:
        return None
    try:
        return int(v)
    except ValueError:
        raise InputError(f"environment variable {STOP_ENV}={v!r} is not an integer epoch; unset it") from None


def _stop_requested(ctx: RunContext, epoch: int, stop_flag: _StopFlag | None) -> bool:
    stop = ctx.stop_after_epoch
    flag = stop_flag is not None and stop_flag.requested
    if pg.is_distributed():  # every rank must agree, or DDP hangs
        t = torch.tensor([1.0 if flag else 0.0])
        flag = bool(pg.all_reduce_sum(t).item() > 0)
    return (stop is not None and epoch >= stop) or flag


class _StopFlag:
    """Set by SIGTERM/SIGUSR1 (main thread only): the run stops cleanly after the current epoch's
    checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if sig is None:
                continue
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except (ValueError, OSError):
                pass

    def _handler(self, signum: int, frame: Any) -> None:
        log.warning("signal %d: stopping after the current epoch's checkpoint", signum)
        self.requested = True

    def restore(self) -> None:
        for sig, old in self._old.items():
            try:
                signal.signal(sig, old)
            except (ValueError, OSError):
                pass
        self._old.clear()


# ---------------------------------------------------------------------------------------------- run.log
class _RunLogHandler(logging.FileHandler):
    """``run.log``: INFO and above of the ``suite`` loggers, whatever the console's level."""

    saved: list[tuple[logging.Handler, int]]
    saved_level: int = logging.NOTSET


def _attach_run_log(path: Path) -> _RunLogHandler:
    lg = logging.getLogger("suite")
    handler = _RunLogHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    handler.saved, handler.saved_level = [], lg.level
    eff = lg.getEffectiveLevel()
    if eff > logging.INFO:  # keep the console (and other handlers) at their level, lower only the logger
        for h in lg.handlers:
            handler.saved.append((h, h.level))
            if h.level < eff:
                h.setLevel(eff)
        lg.setLevel(logging.INFO)
    lg.addHandler(handler)
    return handler


def _detach_run_log(handler: _RunLogHandler) -> None:
    lg = logging.getLogger("suite")
    lg.removeHandler(handler)
    handler.close()
    for h, level in handler.saved:
        h.setLevel(level)
    lg.setLevel(handler.saved_level)
