"""Checkpoints and the RNG state they carry.

``checkpoint_last.pt`` holds everything a resumed run needs to repeat the uninterrupted one bit for bit on
CPU: the stage's state (a segmenter's with its ``ssl`` term's networks and optimiser,
:mod:`suite.stages.ssl_terms`), the Python / NumPy / torch RNG states and the bookkeeping of the epoch loop.
Every value is a tensor or a plain type, so it loads with ``torch.load(weights_only=True)``.

Determinism: the global RNGs of every rank are reseeded at the start of each epoch from
``derive_seed(cfg.seed, stage, "epoch", epoch, "rank", rank)`` (:func:`seed_epoch`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.atomic import atomic_path
from suite.config import RunConfig
from suite.errors import InputError
from suite.seeding import derive_seed
from suite.stages import process_group as pg


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


def epoch_seed(cfg: RunConfig, epoch: int, rank: int) -> int:
    """The seed of the global RNGs for one epoch of one rank (dropout etc.): a pure function of (seed, stage,
    epoch, rank)."""
    return derive_seed(cfg.seed, cfg.stage, "epoch", epoch, "rank", rank)


def seed_epoch(cfg: RunConfig, epoch: int) -> None:
    """Reseed the global RNGs with :func:`epoch_seed` for this process's rank."""
    s = epoch_seed(cfg, epoch, pg.rank())
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename (never a half-written checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain types only)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt/truncated file: one clear line
        # the whole run directory: deleting only a finished run's checkpoint_best.pt would leave a run that
        # counts as finished (summary.json) and is never retrained
        raise InputError(
            f"{path}: cannot load checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}); "
            f"delete the run directory {path.parent} to train that run again"
        ) from e
