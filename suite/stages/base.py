"""What a stage is given and what it returns: the run context, the epoch result, the stage protocol and the
state both optimised stages share; the device and torch settings of a run.

The epoch loop that drives a :class:`Stage` is :func:`suite.stages.runner.run_epochs`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from suite.config import RunConfig
from suite.data.dataset import PreparedData
from suite.errors import InputError
from suite.paths import RunPaths
from suite.stages import process_group as pg
from suite.stages.lr_rules import LrRule, set_lr
from suite.stages.metrics_log import Row


class Hooks(Protocol):
    """Callbacks of a run (the Ray glue reports to Train/Tune from here).

    A launcher that runs several runs on one GPU may also set ``device_share`` (a float in (0, 1], read with
    ``getattr``, default 1): the fraction of the device this run holds, which discounts its device-seconds
    (``suite.stages.cost``)."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float], paths: RunPaths) -> None:
        """Called on every rank after the epoch's checkpoint is written (rank 0 writes, then a barrier).

        ``metrics`` holds the run-level values of the epoch, keyed ``<split>/<metric>`` (e.g.
        ``val/dice2d_slices``, ``train/loss_total``, ``regval/size_abs_err``), plus ``epoch``,
        ``best_value``, ``best_epoch`` and ``selection`` (the value the best epoch is chosen on).
        """


@dataclass
class RunContext:
    """Everything a stage needs for one run."""

    cfg: RunConfig
    paths: RunPaths
    experiment_root: Path
    data: PreparedData
    device: torch.device
    rank: int
    world: int
    hooks: Hooks | None = None
    stop_after_epoch: int | None = None

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
    """What :func:`suite.stages.runner.run_epochs` drives (``suite.stages.regressor.RegressorStage``,
    ``segmenter.SegmenterStage``)."""

    higher_is_better: bool

    def model_state(self) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def lr(self) -> float: ...
    def epoch(self, epoch: int) -> EpochResult: ...
    def after_epoch(self, epoch: int, improved: bool, best_epoch: int) -> None: ...
    def finish(self, best_checkpoint: Path, final: dict[str, float]) -> None: ...


class OptimisedStage:
    """What both stages share: a network ``net`` (maybe DDP-wrapped), an optimiser ``opt`` and an lr rule
    ``rule``; their state for the checkpoint, and the lr after each epoch."""

    net: torch.nn.Module
    opt: torch.optim.Optimizer
    rule: LrRule

    def model_state(self) -> dict[str, Any]:
        return pg.unwrap(self.net).state_dict()

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_state(),
            "optimizer": self.opt.state_dict(),
            "lr_rule": self.rule.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pg.unwrap(self.net).load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.rule.load_state_dict(state["lr_rule"])
        set_lr(self.opt, self.rule.lr)

    def lr(self) -> float:
        return self.rule.lr

    def after_epoch(self, epoch: int, improved: bool, best_epoch: int) -> None:
        set_lr(self.opt, self.rule.after_epoch(epoch, improved, best_epoch))


# ---------------------------------------------------------------------------------------------- runtime
def device_type(cfg: RunConfig) -> str:
    """``cuda`` or ``cpu``: what ``cfg.device`` means here (auto → CUDA when available)."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise InputError("config field device='cuda' but CUDA is not available here; use device=cpu or auto")
    return "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"


def select_device(cfg: RunConfig) -> torch.device:
    """``cfg.device``: auto → CUDA when available (one GPU per local rank), else CPU."""
    if device_type(cfg) == "cuda":
        idx = pg.local_rank() % torch.cuda.device_count()
        torch.cuda.set_device(idx)
        return torch.device("cuda", idx)
    return torch.device("cpu")


def configure_torch(cfg: RunConfig, device: torch.device) -> None:
    """Thread count from ``cfg.threads``; deterministic algorithms on CPU."""
    torch.set_num_threads(int(cfg.threads))
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        # deterministic mode also fills every new tensor with NaN (a guard against kernels that read memory
        # they never wrote); no kernel here does, so the numbers are bit for bit the same without it, and the
        # ~460 fills of each batch-1 64x64 ENet step cost about a tenth of the step
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        # ENet's max-unpooling has no flagged deterministic CPU kernel; it is deterministic on CPU (a scatter
        # with unique indices), so the warning says nothing here
        warnings.filterwarnings(
            "ignore", message=".*max_unpooling2d_forward_out does not have a deterministic"
        )


def optimizer_options(cfg: RunConfig) -> dict[str, bool]:
    """The keyword that picks the optimisers' update kernel (``cfg.optim_impl``): ``foreach`` is what torch
    defaults to on CUDA and, on the CPU, the same arithmetic as its per-parameter loop (bit for bit)."""
    return {"fused": True} if cfg.optim_impl == "fused" else {"foreach": True}


def open_data(
    cfg: RunConfig,
    expected: str = "the config field data_hash is",
    fix: str = "point --data at the dataset the config was made for or clear data_hash",
) -> tuple[RunConfig, PreparedData]:
    """Open ``cfg.data``; fill ``cfg.data_hash`` from it (identity) or check that it matches. A mismatch is
    one line: the data's hash, ``expected`` (whose hash it should be) and ``fix`` (what the caller's user can
    do: a finished run cannot clear its hash)."""
    if not cfg.data:
        raise InputError("config field data is empty; pass --data PREPARED (a folder made by suite prepare)")
    data = PreparedData.open(cfg.data)
    if not cfg.data_hash:
        cfg = cfg.replace(data_hash=data.data_hash)
    elif cfg.data_hash != data.data_hash:
        raise InputError(
            f"{cfg.data}: prepared data hash {data.data_hash}, but {expected} {cfg.data_hash}; {fix}"
        )
    return cfg, data


def autocast(cfg: RunConfig, device: torch.device):
    """bf16 autocast when ``cfg.amp == 'bf16'`` (a disabled context otherwise)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.amp == "bf16")


def resized_arrays(data: PreparedData, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels (uint8, (N, size, size)) at the training resolution."""
    images, labels = data.resized(int(size))
    # np.array: read memory-mapped arrays into (writable) memory once; no per-step decoding
    return np.array(images, dtype=np.uint8), np.array(labels, dtype=np.uint8)
