"""A trained segmenter on prepared slices: one home for loading a checkpoint's network and predicting.

The held-out evaluation (:mod:`suite.evaluation`) and the NIfTI export (:mod:`suite.export`), through
:func:`predict_probabilities`, and the pseudo-labels of the ``proposals`` method
(:mod:`suite.stages.proposals`), through :func:`predict_channels`, share one forward pass, so they cannot
disagree on input scaling, autocast, eval mode or batching; all load weights through :func:`read_checkpoint`,
which reads a checkpoint file once for both its weights and its epoch.

Checkpoint layouts (``suite.stages.checkpoint``): ``checkpoint_best.pt`` holds ``{"model", "epoch", ...}``;
``checkpoint_last.pt`` (the ``final`` one) holds the whole stage state, ``{"stage": {"model", ...}, "epoch",
...}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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
    path: Path | None = None  # the file they were read from (named when they do not fit the network)


def checkpoint_path(paths: RunPaths, checkpoint: str) -> Any:
    """``checkpoint_last.pt`` for ``final``, ``checkpoint_best.pt`` for ``best``."""
    if checkpoint not in ("final", "best"):
        raise ValueError(f"checkpoint {checkpoint!r} is not final or best")
    return paths.checkpoint_last if checkpoint == "final" else paths.checkpoint_best


def not_weights(state: Any) -> str | None:
    """Why ``state`` is not a network's weights (a non-empty dict of tensors by name), or None when it is."""
    if not isinstance(state, dict) or not state:
        return f"holds {type(state).__name__}, not a network's weights (tensors by name)"
    bad = next(
        (k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))), None
    )
    return None if bad is None else f"entry {bad!r} is {type(state[bad]).__name__}, not a tensor"


def _refit(path: Path) -> str:
    """The fix for a run checkpoint that loads but does not fit the run: the run directory's, since a finished
    run whose checkpoint alone is deleted counts as finished and is never retrained."""
    return (
        "the run's config.json was changed or the file belongs to another run: delete the run directory "
        f"{path.parent} to train it again"
    )


def _foreign(path: Path, what: str) -> InputError:
    return InputError(
        f"{path}: not a checkpoint the suite wrote ({what}); delete the run directory {path.parent} to train "
        "it again"
    )


def read_checkpoint(paths: RunPaths, checkpoint: str, device: torch.device | str = "cpu") -> Weights:
    """The ``final`` or ``best`` checkpoint of a run, read once; a missing file, or one whose layout is not
    the suite's (no model dict of tensors, an epoch that is not an integer), is one line naming it."""
    path = checkpoint_path(paths, checkpoint)
    if not path.is_file():
        raise InputError(f"{path}: missing; the run has no {checkpoint} checkpoint")
    ck = load_checkpoint(path, map_location=device)
    if not isinstance(ck, dict):
        raise _foreign(path, f"holds a {type(ck).__name__}")
    keys = ("stage", "model") if checkpoint == "final" else ("model",)
    state: Any = ck
    for depth, key in enumerate(keys):
        if not isinstance(state, dict) or key not in state:
            where = "".join(f"[{k!r}]" for k in keys[:depth])
            raise _foreign(path, f"{where or 'it'} has no {key!r} entry")
        state = state[key]
    why = not_weights(state)
    if why is not None:
        raise _foreign(path, f"its {''.join(f'[{k!r}]' for k in keys)} {why}")
    epoch = ck.get("epoch", -1)
    if isinstance(epoch, torch.Tensor) and epoch.numel() == 1 and not epoch.is_floating_point():
        epoch = int(epoch.item())
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise _foreign(path, f"its ['epoch'] is {epoch!r}, not an integer")
    return Weights(checkpoint, epoch, state, path)


def load_weights(net: torch.nn.Module, state: dict[str, Any], path: Path | str, fix: str) -> None:
    """``net.load_state_dict(state)`` (strict); weights that do not fit ``net`` (missing or unexpected keys,
    another shape) are one line naming ``path``, the first mismatches and ``fix``."""
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError, AttributeError) as e:
        # torch lists every mismatch on its own line after a heading: keep them, on one line, a few at most
        lines = [ln.strip().rstrip(".") for ln in str(e).splitlines()[1:] if ln.strip()] or [str(e).strip()]
        detail = "; ".join(lines[:3]) + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")
        raise InputError(f"{path}: its weights do not fit the run's network ({detail}); {fix}") from None


def network(cfg: Any, weights: Weights, device: torch.device) -> torch.nn.Module:
    """The segmenter of ``cfg`` with ``weights``, on ``device``, in eval mode."""
    net = build_segmenter(cfg).to(device)
    if weights.path is None:
        load_weights(net, weights.state_dict, f"the {weights.checkpoint} checkpoint", "check its source")
    else:
        load_weights(net, weights.state_dict, weights.path, _refit(weights.path))
    return net.eval()


def _logits(
    net: torch.nn.Module, cfg: Any, images: np.ndarray, device: torch.device, rows: np.ndarray, desc: str
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(offset, float32 logits (B, C, S, S))`` of ``images[rows]``, a batch at a time (no grad)."""
    for i in progress(range(0, len(rows), BATCH), desc, enabled=bool(desc)):
        sel = rows[i : i + BATCH]
        # a fresh contiguous copy: a memory map's slice is read-only and torch wants writable memory
        x = slices_input(torch.from_numpy(np.array(images[sel], dtype=np.uint8)).to(device), cfg)
        with torch.no_grad(), autocast(cfg, device):
            logits = net(x)
        yield i, logits.float()


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
    for i, logits in _logits(net, cfg, images, device, rows, desc):
        out[i : i + len(logits)] = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
    return out


def predict_probabilities(
    net: torch.nn.Module, cfg: Any, images: np.ndarray, device: torch.device
) -> np.ndarray:
    """Softmax class probabilities (float32 (N, C, S, S)) of ``net`` on the uint8 slices ``images`` (one
    volume: what goes back to the original geometry through
    :func:`suite.data.geometry.probabilities_to_original`); their arg-max is :func:`predict_channels`."""
    batches = _logits(net, cfg, images, device, np.arange(len(images)), "")
    return np.concatenate([torch.softmax(logits, dim=1).cpu().numpy() for _, logits in batches])
