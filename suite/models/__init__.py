"""Networks: the ENet segmenter and the ResNeXt size regressor, built from a ``RunConfig``.

Only torch and torchvision are imported here (``scripts/bench_gpu.py`` relies on it; ``suite.errors`` and
``suite.data.acdc``, for the LV label, import no more at module level).

- :func:`build_segmenter` → logits (B, C, H, W), C = ``cfg.seg_out_channels``: ``seg_arch=enet`` is Paszke et
  al.'s ENet (``enet.py``), ``enet-authors`` the authors' variant (``enet_authors.py``) with their init.
  With 4 channels the channel index is the ACDC label (LV = 3), with 2 it is background 0, LV 1:
  :func:`lv_channel` and :func:`channel_target` are the one place that says so.
- :func:`build_regressor` → (B,) LV size in pixels at ``cfg.image_size``: ``reg_arch=resnext`` is
  torchvision's ResNeXt (``resnext.py``), ``resnext-authors`` theirs (``resnext_authors.py``). With other
  constrained targets (``cfg.constrained``, ``cfg.constraint``) it returns (B, :func:`regressor_outputs`).
- :func:`constrained_labels` / :func:`constrained_channels`: which ACDC labels the constraints bound, and
  their output channels.
- :func:`load_authors_state_dict` loads a state_dict of the authors' networks into a replica.
- :func:`prepare_model` applies the runtime options ``channels_last`` and ``compile`` in place.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from suite.data.acdc import LV_LABEL
from suite.models.authors_weights import load_authors_state_dict
from suite.models.enet import ENet
from suite.models.enet_authors import ENetAuthors, init_authors_
from suite.models.resnext import SizeRegressor
from suite.models.resnext_authors import ResNeXtAuthors

__all__ = [
    "ENet",
    "ENetAuthors",
    "SizeRegressor",
    "ResNeXtAuthors",
    "build_segmenter",
    "build_regressor",
    "load_authors_state_dict",
    "channel_target",
    "count_parameters",
    "prepare_model",
    "prepare_input",
    "lv_channel",
    "constrained_labels",
    "constrained_channels",
    "regressor_outputs",
    "label_map",
]

ALL_CLASS_LABELS = (1, 2, 3)  # RV, myocardium, LV cavity: the ACDC labels


def build_segmenter(cfg: Any) -> nn.Module:
    """The segmenter of ``cfg.seg_arch`` for 1-channel slices with ``cfg.seg_out_channels`` outputs,
    initialised as that architecture is (``enet-authors``: the authors' ``weights_init``)."""
    if cfg.seg_arch == "enet":
        return ENet(num_classes=cfg.seg_out_channels, in_channels=1, width=float(cfg.seg_width))
    if cfg.seg_arch == "enet-authors":
        return init_authors_(ENetAuthors(in_channels=1, out_channels=cfg.seg_out_channels))
    raise ValueError(f"seg_arch={cfg.seg_arch!r} is not one of enet, enet-authors")


def build_regressor(cfg: Any) -> nn.Module:
    """ResNeXt(``cfg.reg_layers``, ``cfg.reg_groups`` × ``cfg.reg_width_per_group``d) of ``cfg.reg_arch``:
    1 channel → (B,) pixels."""
    layers, groups, width = tuple(cfg.reg_layers), int(cfg.reg_groups), int(cfg.reg_width_per_group)
    if cfg.reg_arch == "resnext":
        return SizeRegressor(
            layers=layers, groups=groups, width_per_group=width, outputs=regressor_outputs(cfg)
        )
    if cfg.reg_arch == "resnext-authors":  # 4 outputs, one per ACDC label: sizes only (the config says so)
        cols = constrained_labels(cfg)
        return ResNeXtAuthors(layers=layers, groups=groups, width_per_group=width, columns=cols)
    raise ValueError(f"reg_arch={cfg.reg_arch!r} is not one of resnext, resnext-authors")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def lv_channel(cfg: Any) -> int:
    """Index of the LV-cavity channel in the segmenter's output: 3 (its ACDC label) with 4 output channels,
    1 with 2."""
    return LV_LABEL if int(cfg.seg_out_channels) == 4 else 1


def constrained_labels(cfg: Any) -> tuple[int, ...]:
    """The ACDC labels the constraints bound: (3,) for ``constrained=lv``, (1, 2, 3) for ``all``."""
    return ALL_CLASS_LABELS if getattr(cfg, "constrained", "lv") == "all" else (LV_LABEL,)


def constrained_channels(cfg: Any) -> tuple[int, ...]:
    """The output channels of :func:`constrained_labels` (``all`` needs 4 channels: channel = label)."""
    if getattr(cfg, "constrained", "lv") == "all":
        if int(cfg.seg_out_channels) != 4:
            raise ValueError("constrained=all needs seg_out_channels=4")
        return ALL_CLASS_LABELS
    return (lv_channel(cfg),)


def regressor_outputs(cfg: Any) -> int:
    """Values the regressor predicts per slice: per constrained class its size, and with ``size+centroid``
    its centroid (2 coordinates) too. 1 = the paper's LV size (the network then returns (B,))."""
    per_class = 3 if getattr(cfg, "constraint", "size") == "size+centroid" else 1
    return len(constrained_labels(cfg)) * per_class


def channel_target(cfg: Any, labels: torch.Tensor) -> torch.Tensor:
    """The training target (class indices into the output channels) from the full ACDC label map.

    ``classes=lv``: LV → :func:`lv_channel`, everything else → 0 (with 4 channels the authors' {0, 3}: the
    cross-entropy over a 4-channel softmax then supervises channels 0 and 3 only). ``classes=multi``: the
    labels themselves (4 channels).
    """
    if cfg.classes == "multi":
        return labels.long()
    return (labels == LV_LABEL).long() * lv_channel(cfg)


def label_map(cfg: Any, channels: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`channel_target` on predictions: arg-max channel indices → ACDC labels (uint8).

    ``classes=multi`` or ``constrained=all`` (4 channels, RV and myocardium trained by their constraints): the
    channel is the label. ``classes=lv``: LV (:func:`lv_channel`) → 3, everything else → 0 (the other channels
    of a 4-channel head are not trained then).
    """
    if cfg.classes == "multi" or getattr(cfg, "constrained", "lv") == "all":
        return channels.to(torch.uint8)
    return (channels == lv_channel(cfg)).to(torch.uint8) * LV_LABEL


def prepare_model(model: nn.Module, cfg: Any) -> nn.Module:
    """Apply ``cfg.channels_last`` (NHWC weights) and ``cfg.compile`` (``nn.Module.compile``) in place.

    Call after ``model.to(device)`` and before building the optimiser. ``Module.compile`` keeps the
    module object and its ``state_dict`` keys unchanged, so checkpoints are the same with or without it.
    Feed inputs through :func:`prepare_input`. See BENCHMARKS.md for which options pay off where.
    """
    if getattr(cfg, "channels_last", False):
        model.to(memory_format=torch.channels_last)
    if getattr(cfg, "compile", False):
        model.compile()
    return model


def unit_slices(slices: torch.Tensor) -> torch.Tensor:
    """uint8 slices (B, S, S) → (B, 1, S, S) float32 in [0, 1]: what every network of the suite reads."""
    return slices.unsqueeze(1).float().div_(255.0)


def slices_input(slices: torch.Tensor, cfg: Any) -> torch.Tensor:
    """uint8 slices (B, S, S) → the network's input: :func:`unit_slices` in :func:`prepare_input`'s format."""
    return prepare_input(unit_slices(slices), cfg)


def prepare_input(x: torch.Tensor, cfg: Any) -> torch.Tensor:
    """The input in the memory format the model was prepared for (channels-last when configured)."""
    if getattr(cfg, "channels_last", False) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x
