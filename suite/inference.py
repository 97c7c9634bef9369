"""A trained segmenter on prepared slices: one home for loading a checkpoint's network and predicting.

The held-out evaluation (:mod:`suite.evaluation`), the NIfTI export (:mod:`suite.export`) and the
pseudo-labels of the ``proposals`` method (:mod:`suite.stages.proposals`) all predict through
:func:`predict_channels`, so they cannot disagree on input scaling, autocast, eval mode or batching, and all
load weights through :func:`read_checkpoint`, which reads a checkpoint file once for both its weights and its
epoch.

Checkpoint layouts (``suite.stages.checkpoint``): ``checkpoint_best.pt`` holds ``{"model", "epoch", ...}``;
``checkpoint_last.pt`` (the ``final`` one) holds the whole stage state, ``{"stage": {"model", ...}, "epoch",
...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from suite.errors import InputError
from suite.log import progress
from suite.models import build_segmenter, slices_input
from suite.paths import RunPaths
from suite.stages.base import autocast
from suite.stages.checkpoint import load_checkpoint

BATCH = 32  # slices per forward pass: one ACDC volume has 6-21; ENet at 256² in eval mode needs ~0.5 GB


@dataclass(frozen=True)
class Weights:
    """A segmenter checkpoint's weights, the epoch they were saved after, and which checkpoint they are."""

    checkpoint: str  # "final" (checkpoint_last.pt) | "best" (checkpoint_best.pt)
    epoch: int
    state_dict: dict[str, Any]


def checkpoint_path(paths: RunPaths, checkpoint: str) -> Any:
    """``checkpoint_last.pt`` for ``final``, ``checkpoint_best.pt`` for ``best``."""
    if checkpoint not in ("final", "best"):
        raise ValueError(f"checkpoint {checkpoint!r} is not final or best")
    return paths.checkpoint_last if checkpoint == "final" else paths.checkpoint_best


def read_checkpoint(paths: RunPaths, checkpoint: str, device: torch.device | str = "cpu") -> Weights:
    """The ``final`` or ``best`` checkpoint of a run, read once; a missing file is one line naming it."""
    path = checkpoint_path(paths, checkpoint)
    if not path.is_file():
        raise InputError(f"{path}: missing; the run has no {checkpoint} checkpoint")
    ck = load_checkpoint(path, map_location=device)
    state = ck["stage"]["model"] if checkpoint == "final" else ck["model"]
    return Weights(checkpoint, int(ck.get("epoch", -1)), state)


def network(cfg: Any, weights: Weights, device: torch.device) -> torch.nn.Module:
    """The segmenter of ``cfg`` with ``weights``, on ``device``, in eval mode."""
    net = build_segmenter(cfg).to(device)
    net.load_state_dict(weights.state_dict)
    return net.eval()


@torch.no_grad()
def predict_channels(
    net: torch.nn.Module,
    cfg: Any,
    images: np.ndarray,
    device: torch.device,
    index: np.ndarray | None = None,
    desc: str = "",
) -> np.ndarray:
    """Arg-max output channels (uint8 (N, S, S)) of ``net`` on the uint8 slices ``images`` (N, S, S), or on
    ``images[index]`` read a batch at a time (``images`` may be a memory map); a bar if ``desc``."""
    rows = np.arange(len(images)) if index is None else np.asarray(index)
    out = np.empty((len(rows), *images.shape[1:]), dtype=np.uint8)
    steps = range(0, len(rows), BATCH)
    for i in progress(steps, desc, enabled=bool(desc)):
        sel = rows[i : i + BATCH]
        # a fresh contiguous copy: a memory map's slice is read-only and torch wants writable memory
        x = slices_input(torch.from_numpy(np.array(images[sel], dtype=np.uint8)).to(device), cfg)
        with autocast(cfg, device):
            logits = net(x)
        out[i : i + len(sel)] = logits.float().argmax(dim=1).to(torch.uint8).cpu().numpy()
    return out
