"""The machinery every run shares: run directory, lock, config/env files, tidy metrics, checkpoints, resume.

One run = one :class:`~suite.paths.RunPaths` directory. :func:`execute` is the single entry point that every
launcher (``suite run``, Ray Train workers, SLURM jobs) calls:

1. build missing prerequisites first (``cfg.prerequisites()``: the regressor of a ``proposed`` run, the FS
   model of a ``proposals`` run), or reuse finished ones;
2. take a file lock on ``RunPaths.lock`` (rank 0 only) so that concurrent launchers never train the same run
   twice (a second launcher waits, then finds the run finished and skips it);
3. skip a finished run (``summary.json`` exists); resume a partial one from ``checkpoint_last.pt``, cutting
   ``metrics.csv`` back to the checkpoint's epoch so no epoch appears twice;
4. write ``config.json`` (before the first step) and ``env.json``; train epoch by epoch, appending tidy rows
   to ``metrics.csv`` and writing ``checkpoint_last.pt`` atomically after each epoch;
5. write the stage's predictions, then ``summary.json`` last; ``failed.json`` if anything raised.

Determinism: the global torch RNG of every rank is reseeded at the start of each epoch from
``derive_seed(cfg.seed, stage, "epoch", epoch, "rank", rank)`` and the data order is a pure function of the
seed and the epoch (:mod:`suite.stages.distributed_utils`), so a resumed run repeats the uninterrupted one
exactly on CPU. RNG states are stored in the checkpoint as well (tensors / plain types, loadable with
``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import random
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from suite.atomic import atomic_path, write_json_atomic, write_text_atomic
from suite.config import RunConfig
from suite.errors import InputError
from suite.paths import METRICS_COLUMNS, ExperimentPaths, RunPaths
from suite.provenance import environment
from suite.seeding import derive_seed
from suite.stages import distributed_utils as du

log = logging.getLogger("suite.stages")

# a test / signal-friendly stop: after this epoch's checkpoint the run returns (status "partial")
STOP_ENV = "SUITE_STOP_AFTER_EPOCH"

Row = tuple[int, str, str, str, float]


class Hooks(Protocol):
    """Callbacks of a run (the Ray glue reports to Train/Tune from here)."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], paths: RunPaths) -> None:
        """Called on every rank after the epoch's checkpoint is written (rank 0 writes, then a barrier).

        ``metrics`` holds the run-level values of the epoch, keyed ``<split>/<metric>`` (e.g.
        ``val/dice2d_slices``, ``train/loss_total``, ``regval/size_abs_err``), plus ``epoch``,
        ``best_value``, ``best_epoch`` and ``selection`` (the value the best epoch is chosen on).
        """


# ---------------------------------------------------------------------------------------------- metrics.csv
class MetricsWriter:
    """Append-only tidy ``metrics.csv`` (``epoch,split,volume,metric,value``); values written with ``repr``
    so that they round-trip exactly (resume-equals-uninterrupted compares them bit for bit)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def ensure_header(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            write_text_atomic(self.path, ",".join(METRICS_COLUMNS) + "\n")

    def append(self, rows: Iterable[Row]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for epoch, split, volume, metric, value in rows:
            w.writerow([int(epoch), split, volume, metric, repr(float(value))])
        with open(self.path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def cut_after(self, last_epoch: int) -> int:
        """Keep only the rows of epochs ``<= last_epoch`` (atomic rewrite); returns the rows dropped."""
        if not self.path.exists():
            self.ensure_header()
            return 0
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or tuple(rows[0]) != METRICS_COLUMNS:
            raise InputError(
                f"{self.path}: not a metrics.csv with columns {','.join(METRICS_COLUMNS)}; "
                "delete the run directory to start the run again"
            )
        keep = [r for r in rows[1:] if r and int(r[0]) <= last_epoch]
        dropped = len(rows) - 1 - len(keep)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(METRICS_COLUMNS)
        w.writerows(keep)
        write_text_atomic(self.path, buf.getvalue())
        return dropped


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.csv`` as dicts (epoch int, value float)."""
    with open(path, newline="") as f:
        return [{**r, "epoch": int(r["epoch"]), "value": float(r["value"])} for r in csv.DictReader(f)]


# ---------------------------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors / plain types (``weights_only``-loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npst["bit_generator"],
            "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": npst["pos"]},
            "has_gauss": npst["has_gauss"],
            "gauss": npst["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_epoch(cfg: RunConfig, epoch: int) -> None:
    """Reseed the global RNGs for one epoch of one rank (dropout etc.): a pure function of (seed, epoch,
    rank)."""
    s = derive_seed(cfg.seed, cfg.stage, "epoch", epoch, "rank", du.rank())
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


# ---------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename (never a half-written checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain types only)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt/truncated file: one clear line
        raise InputError(
            f"{path}: cannot load checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "delete it to restart the run from scratch"
        ) from e


# ---------------------------------------------------------------------------------------------- lr rules
class LrRule:
    """A learning-rate rule whose whole state is plain data (saved in the checkpoint)."""

    def __init__(self, base_lr: float) -> None:
        self.lr = float(base_lr)

    def after_epoch(
        self, epoch: int, improved: bool, best_epoch: int
    ) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for k, v in d.items():
            setattr(self, k, v)


class MultiStepRule(LrRule):
    """lr = base · factor^(number of milestones ≤ next epoch) (``torch.optim.lr_scheduler.MultiStepLR``)."""

    def __init__(self, base_lr: float, milestones: Sequence[int], factor: float) -> None:
        super().__init__(base_lr)
        self.base_lr = float(base_lr)
        self.milestones = [int(m) for m in milestones]
        self.factor = float(factor)

    def after_epoch(self, epoch: int, improved: bool, best_epoch: int) -> float:
        nxt = epoch + 1
        self.lr = self.base_lr * self.factor ** sum(1 for m in self.milestones if m <= nxt)
        return self.lr


class PlateauRule(LrRule):
    """The paper: halve after ``patience`` epochs in a row without improvement of the validation metric."""

    def __init__(self, base_lr: float, patience: int, factor: float) -> None:
        super().__init__(base_lr)
        self.patience = int(patience)
        self.factor = float(factor)
        self.bad_epochs = 0

    def after_epoch(self, epoch: int, improved: bool, best_epoch: int) -> float:
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        if self.bad_epochs >= self.patience:
            self.lr *= self.factor
            self.bad_epochs = 0
        return self.lr


class CodeRule(LrRule):
    """The authors' public code: after epoch e, halve when ``e % (best_epoch + patience) == 0``.

    Evaluated after the best epoch has been updated with epoch e, so it halves after epoch 0
    (0 % anything == 0) and then at the multiples of ``best_epoch + 20`` (DESIGN.md section 4).
    """

    def __init__(self, base_lr: float, patience: int, factor: float) -> None:
        super().__init__(base_lr)
        self.patience = int(patience)
        self.factor = float(factor)

    def after_epoch(self, epoch: int, improved: bool, best_epoch: int) -> float:
        if epoch % (best_epoch + self.patience) == 0:
            self.lr *= self.factor
        return self.lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


# ---------------------------------------------------------------------------------------------- runtime
def select_device(cfg: RunConfig) -> torch.device:
    """``cfg.device``: auto → CUDA when available (one GPU per local rank), else CPU."""
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError(
                "config field device='cuda' but CUDA is not available here; use device=cpu or auto"
            )
        idx = du.local_rank() % torch.cuda.device_count()
        torch.cuda.set_device(idx)
        return torch.device("cuda", idx)
    return torch.device("cpu")


def configure_torch(cfg: RunConfig, device: torch.device) -> None:
    """Thread count from ``cfg.threads``; deterministic algorithms on CPU."""
    torch.set_num_threads(int(cfg.threads))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        # ENet's max-unpooling has no flagged deterministic CPU kernel; it is deterministic on CPU (a scatter
        # with unique indices), so the warning says nothing here
        warnings.filterwarnings(
            "ignore", message=".*max_unpooling2d_forward_out does not have a deterministic"
        )


def autocast(cfg: RunConfig, device: torch.device):
    """bf16 autocast when ``cfg.amp == 'bf16'`` (a disabled context otherwise)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16")


def _stop_after_env() -> int | None:
    v = os.environ.get(STOP_ENV, "").strip()
    if not v:
        return None
    try:
        return int(v)
    except ValueError:
        raise InputError(f"environment variable {STOP_ENV}={v!r} is not an integer epoch; unset it") from None


class OptimisedStage:
    """What both stages share: a network ``net`` (maybe DDP-wrapped), an optimiser ``opt`` and an lr rule
    ``rule``; their state for the checkpoint, and the lr after each epoch."""

    net: torch.nn.Module
    opt: torch.optim.Optimizer
    rule: LrRule

    def model_state(self) -> dict[str, Any]:
        return du.unwrap(self.net).state_dict()

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_state(),
            "optimizer": self.opt.state_dict(),
            "lr_rule": self.rule.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        du.unwrap(self.net).load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.rule.load_state_dict(state["lr_rule"])
        set_lr(self.opt, self.rule.lr)

    def lr(self) -> float:
        return self.rule.lr

    def after_epoch(self, epoch: int, improved: bool, best_epoch: int) -> None:
        set_lr(self.opt, self.rule.after_epoch(epoch, improved, best_epoch))


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


# ---------------------------------------------------------------------------------------------- context
@dataclass
class RunContext:
    """Everything a stage needs for one run."""

    cfg: RunConfig
    paths: RunPaths
    experiment_root: Path
    data: Any  # suite.data.prepared.PreparedData
    device: torch.device
    rank: int
    world: int
    hooks: Hooks | None = None
    stop_after_epoch: int | None = None
    stop_flag: _StopFlag = field(default_factory=_StopFlag)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class EpochResult:
    """What a stage returns for one epoch: tidy rows, run-level metrics and the selection value."""

    rows: list[Row]
    metrics: dict[str, float]
    selection: float


class Stage(Protocol):
    """What :func:`run_epochs` drives (``suite.stages.regressor.RegressorStage``,
    ``segmenter.SegmenterStage``)."""

    higher_is_better: bool

    def model_state(self) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def lr(self) -> float: ...
    def epoch(self, epoch: int) -> EpochResult: ...
    def after_epoch(self, epoch: int, improved: bool, best_epoch: int) -> None: ...
    def finish(self, best_checkpoint: Path, final: dict[str, float]) -> None: ...


def _is_better(value: float, best: float | None, higher: bool) -> bool:
    if math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value > best if higher else value < best


def run_epochs(ctx: RunContext, stage: Stage) -> dict[str, Any] | None:
    """The epoch loop shared by every stage, with resume, best-checkpoint, hooks and clean stops.

    Returns the summary fields (``best_epoch``, ``best_value``, ``final``) when all epochs are done, or
    ``None`` when the run stopped early (``stop_after_epoch`` / a signal): the caller leaves it partial.
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
    du.barrier()

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
        stop = _stop_requested(ctx, epoch)  # on every rank (a collective under DDP)
        if ctx.is_main:
            writer.append(rows)
            if improved:
                save_checkpoint(
                    paths.checkpoint_best,
                    {"model": stage.model_state(), "epoch": epoch, "value": best_value, "run_id": cfg.run_id},
                )
            if last or (epoch + 1) % cfg.checkpoint_every == 0 or stop:
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
                    },
                )
        du.barrier()
        log.info(
            "%s epoch %d/%d: %s (%.1fs)",
            cfg.run_id,
            epoch + 1,
            cfg.epochs,
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


def _stop_requested(ctx: RunContext, epoch: int) -> bool:
    stop = ctx.stop_after_epoch
    flag = ctx.stop_flag.requested
    if du.is_distributed():  # every rank must agree, or DDP hangs
        t = torch.tensor([1.0 if flag else 0.0])
        flag = bool(du.all_reduce_sum(t).item() > 0)
    return (stop is not None and epoch >= stop) or flag


# ---------------------------------------------------------------------------------------------- data
def open_data(cfg: RunConfig) -> tuple[RunConfig, Any]:
    """Open ``cfg.data``; fill ``cfg.data_hash`` from it (identity) or check that it matches."""
    from suite.data.prepared import PreparedData

    if not cfg.data:
        raise InputError("config field data is empty; pass --data PREPARED (a folder made by suite prepare)")
    data = PreparedData.open(cfg.data)
    if not cfg.data_hash:
        cfg = cfg.replace(data_hash=data.data_hash)
    elif cfg.data_hash != data.data_hash:
        raise InputError(
            f"{cfg.data}: prepared data hash {data.data_hash} differs from config field "
            f"data_hash={cfg.data_hash}; point --data at the dataset the config was made for "
            "or clear data_hash"
        )
    return cfg, data


def resized_arrays(data: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels (uint8, (N, size, size)) at the training resolution."""
    images, labels = data.resized(int(size))
    # np.array: read memory-mapped arrays into (writable) memory once; no per-step decoding
    return np.array(images, dtype=np.uint8), np.array(labels, dtype=np.uint8)


def lv_mask(labels: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The LV cavity (label 3) of a full label map."""
    return labels == 3


def class_target(cfg: RunConfig, labels: torch.Tensor) -> torch.Tensor:
    """Training target from the full label map: {0, 1} (LV vs rest) for ``lv``, 0..3 for ``multi``."""
    if cfg.classes == "lv":
        return (labels == 3).long()
    return labels.long()


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
    du.maybe_init_from_env(cfg.world_size)
    du.check_world_size(cfg.world_size)
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

    lock = None
    if du.is_main():
        from filelock import FileLock

        lock = FileLock(str(paths.lock))
        try:
            lock.acquire(timeout=0.5)
        except Exception:  # noqa: BLE001 - filelock.Timeout: another launcher is training this run
            log.info("%s: another process holds %s; waiting for it", cfg.run_id, paths.lock)
            lock.acquire()
    try:
        finished = bool(du.broadcast_object(paths.is_finished()))
        if finished:
            log.info("%s: already finished, skipping (%s)", cfg.run_id, paths.root)
            return paths
        return _execute_locked(cfg, paths, Path(experiment_root), data, hooks, stop_after_epoch)
    finally:
        if lock is not None:
            lock.release()


def _execute_locked(
    cfg: RunConfig,
    paths: RunPaths,
    experiment_root: Path,
    data: Any,
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
        rank=du.rank(),
        world=du.world_size(),
        hooks=hooks,
        stop_after_epoch=stop_after_epoch,
    )
    handler = None
    if ctx.is_main:
        paths.root.mkdir(parents=True, exist_ok=True)
        if paths.config.exists():
            old = json.loads(paths.config.read_text())
            if old.get("run_id") != cfg.run_id:
                raise InputError(
                    f"{paths.config}: belongs to run {old.get('run_id')!r}, not {cfg.run_id!r}; "
                    "remove the directory"
                )
        else:
            write_text_atomic(paths.config, cfg.to_json())
        write_json_atomic(paths.env, {**environment(world_size=ctx.world), "device": str(device)})
        handler = _attach_run_log(paths.log)
    du.barrier()
    ctx.stop_flag.install()
    t0 = time.time()
    try:
        stage = _make_stage(ctx)
        done = run_epochs(ctx, stage)
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
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            paths.failed.unlink(missing_ok=True)
            write_json_atomic(paths.summary, summary)
        du.barrier()
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
        ctx.stop_flag.restore()
        if handler is not None:
            _detach_run_log(handler)


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


def _selection_name(cfg: RunConfig) -> str:
    if cfg.stage == "regressor":
        return "regval/size_abs_err"
    return "val/dice2d_slices" if cfg.best_metric == "dice2d" else "val/dice_mean"


def _make_stage(ctx: RunContext) -> Stage:
    if ctx.cfg.stage == "regressor":
        from suite.stages.regressor import RegressorStage

        return RegressorStage(ctx)
    from suite.stages.segmenter import SegmenterStage

    return SegmenterStage(ctx)


def metric_dict(rows: Iterable[Row]) -> dict[str, float]:
    """Run-level rows (empty volume) of one epoch as ``{split/metric: value}``."""
    return {f"{split}/{metric}": float(v) for _, split, volume, metric, v in rows if not volume}


__all__ = [
    "execute",
    "Hooks",
    "RunContext",
    "EpochResult",
    "MetricsWriter",
    "read_metrics",
    "save_checkpoint",
    "load_checkpoint",
    "rng_state",
    "set_rng_state",
    "MultiStepRule",
    "PlateauRule",
    "CodeRule",
    "set_lr",
    "select_device",
    "configure_torch",
    "autocast",
    "open_data",
    "resized_arrays",
    "class_target",
    "lv_mask",
    "metric_dict",
    "run_epochs",
    "STOP_ENV",
]
