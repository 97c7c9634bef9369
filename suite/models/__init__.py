"""Networks: the ENet segmenter and the ResNeXt size regressor, built from a ``RunConfig``.

Only torch and torchvision are imported here (``scripts/bench_gpu.py`` relies on it).

- :func:`build_segmenter` → ENet, logits (B, C, H, W), C = ``cfg.num_classes`` (2 for ``classes=lv``,
  4 for ``classes=multi``); the LV channel is :func:`lv_channel` (the last one in both cases).
- :func:`build_regressor` → ResNeXt, (B,) LV size in pixels at ``cfg.image_size``.
- :func:`prepare_model` applies the runtime options ``channels_last`` and ``compile`` in place.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from suite.models.enet import ENet
from suite.models.resnext import SizeRegressor

__all__ = [
    "ENet",
    "SizeRegressor",
    "build_segmenter",
    "build_regressor",
    "count_parameters",
    "prepare_model",
    "prepare_input",
    "lv_channel",
]


def build_segmenter(cfg: Any) -> nn.Module:
    """ENet for 1-channel slices, ``cfg.num_classes`` outputs, channel widths × ``cfg.seg_width``."""
    if getattr(cfg, "seg_arch", "enet") != "enet":
        raise ValueError(f"seg_arch={cfg.seg_arch!r} is not supported; use seg_arch=enet")
    return ENet(num_classes=cfg.num_classes, in_channels=1, width=float(cfg.seg_width))


def build_regressor(cfg: Any) -> nn.Module:
    """ResNeXt(``cfg.reg_layers``, ``cfg.reg_groups`` × ``cfg.reg_width_per_group``d), 1 channel → (B,)
    pixels."""
    if getattr(cfg, "reg_arch", "resnext") != "resnext":
        raise ValueError(f"reg_arch={cfg.reg_arch!r} is not supported; use reg_arch=resnext")
    return SizeRegressor(
        layers=tuple(cfg.reg_layers), groups=int(cfg.reg_groups), width_per_group=int(cfg.reg_width_per_group)
    )


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def lv_channel(cfg: Any) -> int:
    """Index of the LV-cavity channel in the segmenter's output (1 for ``lv``, 3 for ``multi``)."""
    return int(cfg.num_classes) - 1


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


def prepare_input(x: torch.Tensor, cfg: Any) -> torch.Tensor:
    """The input in the memory format the model was prepared for (channels-last when configured)."""
    if getattr(cfg, "channels_last", False) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x
