"""ENet (Paszke, Chaurasia, Kim, Culurciello 2016, arXiv:1606.02147), written from the paper's Table 1.

Layout (output sizes for a 1×256×256 input at width 1.0):

===================  =====================================  ================
stage                blocks                                 output
===================  =====================================  ================
initial              3×3/2 conv (15 ch) ‖ 2×2 max-pool       16 × 128 × 128
1                    bottleneck1.0 (downsampling), 1.1–1.4   64 × 64 × 64
2                    2.0 (downsampling), 2.1–2.8             128 × 32 × 32
3                    3.1–3.8 (stage 2 without 2.0)           128 × 32 × 32
4                    4.0 (upsampling), 4.1, 4.2              64 × 64 × 64
5                    5.0 (upsampling), 5.1                   16 × 128 × 128
fullconv             2×2/2 transposed conv                   C × 256 × 256
===================  =====================================  ================

Stages 2 and 3 repeat: regular, dilated 2, asymmetric 5, dilated 4, regular, dilated 8, asymmetric 5,
dilated 16. A bottleneck is a residual block: 1×1 projection (2×2/2 when downsampling) → main conv
(3×3 regular or dilated, 5×1 then 1×5 asymmetric, or 3×3/2 transposed when upsampling) → 1×1 expansion →
spatial dropout, added to the main branch (identity; max-pool + zero channel padding when downsampling;
1×1 conv + max-unpooling with the matching pooling indices when upsampling). The projection reduces the
channels 4× ("internal" width). Batch normalisation (eps 1e-3, as the reference Torch code) after every
convolution; PReLU in the encoder, ReLU in the decoder (as the reference code); projections have no bias.
Spatial dropout p = 0.01 in stage 1 and 0.1 afterwards (the upsampling blocks have none, as the
reference code).

``width`` multiplies the channel widths (16/64/128 at 1.0); ``in_channels`` is 1 for MR slices.
At width 1.0 with 1 input channel and 2 classes this network has 362,977 parameters (363,843 with 3 input
channels and 12 classes, as for CamVid); the ENet paper's Table 3 gives 0.37 M (tests/test_models.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-3

# (kind, arg) for bottlenecks 2.1–2.8 (and 3.1–3.8)
STAGE23 = (
    ("regular", 1),
    ("dilated", 2),
    ("asymmetric", 5),
    ("dilated", 4),
    ("regular", 1),
    ("dilated", 8),
    ("asymmetric", 5),
    ("dilated", 16),
)


def _act(channels: int, relu: bool) -> nn.Module:
    return nn.ReLU(inplace=True) if relu else nn.PReLU(channels)


def _branch(
    projection: nn.Module,
    main: Sequence[nn.Module],
    internal: int,
    out_channels: int,
    relu: bool,
    dropout: float | None,
) -> nn.Sequential:
    """A bottleneck's residual branch: projection, BN, activation, main conv(s), BN, activation, 1×1
    expansion, BN, then spatial dropout (none when ``dropout`` is None, as in the upsampling bottleneck).

    The convolutions are built by the caller, so each block keeps the order in which it draws their initial
    weights; the state-dict keys (``branch.0`` …) are those of the layers in this order."""
    layers = [
        projection,
        nn.BatchNorm2d(internal, eps=BN_EPS),
        _act(internal, relu),
        *main,
        nn.BatchNorm2d(internal, eps=BN_EPS),
        _act(internal, relu),
        nn.Conv2d(internal, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels, eps=BN_EPS),
    ]
    if dropout is not None:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class InitialBlock(nn.Module):
    """3×3 stride-2 convolution concatenated with a 2×2 max-pool of the input, then BN and PReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f"ENet initial block needs out_channels > in_channels, got {out_channels}")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class Bottleneck(nn.Module):
    """Regular, dilated or asymmetric bottleneck (no change of resolution or channels)."""

    def __init__(
        self,
        channels: int,
        internal: int,
        kind: str = "regular",
        arg: int = 1,
        dropout: float = 0.1,
        relu: bool = False,
    ) -> None:
        super().__init__()
        if kind == "regular":
            main: list[nn.Module] = [nn.Conv2d(internal, internal, 3, padding=1)]
        elif kind == "dilated":
            main = [nn.Conv2d(internal, internal, 3, padding=arg, dilation=arg)]
        elif kind == "asymmetric":
            pad = (arg - 1) // 2
            main = [
                nn.Conv2d(internal, internal, (arg, 1), padding=(pad, 0), bias=False),
                nn.Conv2d(internal, internal, (1, arg), padding=(0, pad)),
            ]
        else:
            raise ValueError(f"unknown ENet bottleneck kind {kind!r}")
        projection = nn.Conv2d(channels, internal, 1, bias=False)
        self.branch = _branch(projection, main, internal, channels, relu, dropout)
        self.out_act = _act(channels, relu)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_act(x + self.branch(x))


class DownsamplingBottleneck(nn.Module):
    """Halves the resolution: 2×2/2 projection in the branch, max-pool (+ zero channels) on the main path.

    Returns the output and the pooling indices (used by the matching upsampling bottleneck).
    """

    def __init__(
        self, in_channels: int, out_channels: int, internal: int, dropout: float, relu: bool = False
    ) -> None:
        super().__init__()
        self.extra = out_channels - in_channels
        if self.extra < 0:
            raise ValueError("ENet downsampling bottleneck cannot reduce channels")
        projection = nn.Conv2d(in_channels, internal, 2, stride=2, bias=False)
        main = [nn.Conv2d(internal, internal, 3, padding=1)]
        self.branch = _branch(projection, main, internal, out_channels, relu, dropout)
        self.out_act = _act(out_channels, relu)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        main, indices = F.max_pool2d(x, 2, stride=2, return_indices=True)
        if self.extra:
            main = F.pad(main, (0, 0, 0, 0, 0, self.extra))
        return self.out_act(main + self.branch(x)), indices


class UpsamplingBottleneck(nn.Module):
    """Doubles the resolution: 1×1 conv + max-unpooling on the main path, 3×3/2 transposed conv in the
    branch."""

    def __init__(self, in_channels: int, out_channels: int, internal: int, relu: bool = True) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS),
        )
        projection = nn.Conv2d(in_channels, internal, 1, bias=False)
        main = [nn.ConvTranspose2d(internal, internal, 3, stride=2, padding=1, output_padding=1)]
        self.branch = _branch(projection, main, internal, out_channels, relu, dropout=None)
        self.out_act = _act(out_channels, relu)

    def forward(self, x: Tensor, indices: Tensor) -> Tensor:
        main = self.main(x)
        # max_unpool2d needs contiguous (NCHW) input; the indices index into the NCHW plane
        main = F.max_unpool2d(
            main.contiguous(), indices, (2, 2), stride=(2, 2), output_size=(x.shape[-2] * 2, x.shape[-1] * 2)
        )
        return self.out_act(main + self.branch(x))


def scaled(channels: int, width: float) -> int:
    """A channel width scaled by ``width``, at least 1."""
    return max(1, int(round(channels * width)))


class ENet(nn.Module):
    """ENet for ``in_channels``-channel input; returns logits (B, num_classes, H, W); H, W multiples of 8."""

    def __init__(self, num_classes: int = 2, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1 or width <= 0:
            raise ValueError(f"ENet: bad num_classes={num_classes}, in_channels={in_channels}, width={width}")
        c0 = max(in_channels + 1, scaled(16, width))
        c1, c2 = scaled(64, width), scaled(128, width)
        c1, c2 = max(c1, c0), max(c2, c1)
        i1, i2, i0 = max(1, c1 // 4), max(1, c2 // 4), max(1, c0 // 4)
        self.widths = (c0, c1, c2)

        self.initial = InitialBlock(in_channels, c0)
        # stage 1
        self.down1 = DownsamplingBottleneck(c0, c1, i1, dropout=0.01)
        self.stage1 = nn.Sequential(*[Bottleneck(c1, i1, dropout=0.01) for _ in range(4)])
        # stage 2
        self.down2 = DownsamplingBottleneck(c1, c2, i2, dropout=0.1)
        self.stage2 = nn.Sequential(*[Bottleneck(c2, i2, k, a, dropout=0.1) for k, a in STAGE23])
        # stage 3
        self.stage3 = nn.Sequential(*[Bottleneck(c2, i2, k, a, dropout=0.1) for k, a in STAGE23])
        # stage 4
        self.up4 = UpsamplingBottleneck(c2, c1, i1)
        self.stage4 = nn.Sequential(*[Bottleneck(c1, i1, dropout=0.1, relu=True) for _ in range(2)])
        # stage 5
        self.up5 = UpsamplingBottleneck(c1, c0, i0)
        self.stage5 = Bottleneck(c0, i0, dropout=0.1, relu=True)
        self.fullconv = nn.ConvTranspose2d(c0, num_classes, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"ENet expects (B, C, H, W) with H and W multiples of 8, got {tuple(x.shape)}")
        x = self.initial(x)
        x, idx1 = self.down1(x)
        x = self.stage1(x)
        x, idx2 = self.down2(x)
        x = self.stage3(self.stage2(x))
        x = self.stage4(self.up4(x, idx2))
        x = self.stage5(self.up5(x, idx1))
        return self.fullconv(x)
