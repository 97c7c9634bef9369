"""The authors' ENet variant (``seg_arch: enet-authors``), written from the facts of their public code.

Kervadec et al. trained their own ENet, not the one of Paszke et al. (``suite/models/enet.py``). Layout for a
1×256×256 input (the widths are fixed: 16/64/128 channels, projection 4×):

=====================  ==============================================================  ==============
block                  what                                                            output
=====================  ==============================================================  ==============
initial                3×3/2 conv (15 ch, bias) ‖ 2×2 max-pool, concatenated (no BN)    16 × 128 × 128
down1, stage1 (×4)     downsampling bottleneck, 4 regular (dropout 0.01)               64 × 64 × 64
down2, stage2 (×8)     downsampling bottleneck; regular, dilated 2, asymmetric 5,      128 × 32 × 32
                       dilated 4, regular, dilated 8, asymmetric 5, dilated 16
stage3 (×8)            stage 2 without 2.0; the last block (dilated 16) goes 128→64     64 × 32 × 32
                       with a 3×3 convolution (bias) as its shortcut
up1, stage4 (×2)       max-unpool (indices of down2), concatenated with stage 1's       16 × 64 × 64
                       output → upsampling bottleneck; PReLU(unpooled + it); regular
                       64→64, regular 64→16 (shortcut 1×1 conv + BN + PReLU)
up2, stage5            max-unpool (indices of down1), concatenated with the initial     16 × 128 × 128
                       block → upsampling bottleneck → regular 16→16; PReLU(unpooled +
                       it)
head                   nearest ×2, 2 × (3×3 conv without bias + BN + PReLU), 1×1 conv   C × 256 × 256
=====================  ==============================================================  ==============

Every bottleneck branch is three units (conv + BN + PReLU; convolutions with bias): a projection (2×2/2 when
downsampling, 3×3 in the upsampling bottleneck, 1×1 otherwise), the main convolution (3×3, dilated 3×3, or 5×1
then 1×5), and a 1×1 expansion; then element-wise dropout (p = 0.1 in regular/asymmetric blocks of stages 2–5,
0.01 in stage 1 and, hard-coded, in every downsampling, dilated and upsampling bottleneck), the shortcut
added and a PReLU. Every PReLU has one parameter; BN eps is 1e-5. The upsampling bottleneck has no shortcut
and no activation of its own (the PReLU after the sum belongs to the decoder).

The authors' module also holds two convolutions it never calls (``out_025``, ``out_05``) and one unused PReLU
in each upsampling bottleneck: 463,475 parameters for 1 input and 4 output channels, 458,281 without them.
This replica omits them (DDP needs every parameter to receive a gradient); ``load_authors_state_dict``
accepts and ignores them.

:func:`init_authors_` is their ``weights_init``: xavier-normal weights of every convolution, BN weight
N(1, 0.02) and bias 0; convolution biases and PReLU slopes keep PyTorch's defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# (kind, dilation) of bottlenecks x.1–x.8 in stages 2 and 3: the same sequence as Paszke et al.'s ENet
from suite.models.enet import STAGE23

WIDTHS = (16, 64, 128)
PROJECTION = 4
DROPOUT_STAGE1 = 0.01
DROPOUT = 0.1
DROPOUT_FIXED = 0.01  # the downsampling, dilated and upsampling bottlenecks hard-code it


def unit(cin: int, cout: int, kernel: int = 1, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """conv (with bias) + BN + one-parameter PReLU; ``kernel`` 3 is padded to keep the size."""
    pad = dilation * (kernel // 2) if kernel > 2 else 0
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation),
        nn.BatchNorm2d(cout),
        nn.PReLU(),
    )


def asymmetric_unit(channels: int, k: int = 5) -> nn.Sequential:
    """k×1 conv, 1×k conv (both with bias), BN, PReLU."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, (k, 1), padding=(k // 2, 0)),
        nn.Conv2d(channels, channels, (1, k), padding=(0, k // 2)),
        nn.BatchNorm2d(channels),
        nn.PReLU(),
    )


class Bottleneck(nn.Module):
    """PReLU(shortcut(x) + dropout(branch(x))); the shortcut is the identity, or a module when cin ≠ cout."""

    def __init__(self, cin: int, cout: int, kind: str = "regular", dilation: int = 1, dropout: float = 0.1):
        super().__init__()
        mid = cin // PROJECTION
        if kind == "regular":
            main = unit(mid, mid, 3)
        elif kind == "dilated":
            main = unit(mid, mid, 3, dilation=dilation)
        elif kind == "asymmetric":
            main = asymmetric_unit(mid, 5)
        else:
            raise ValueError(f"unknown bottleneck kind {kind!r}")
        self.branch = nn.Sequential(unit(cin, mid), main, unit(mid, cout))
        self.dropout = nn.Dropout(dropout)
        self.shortcut: nn.Module
        if cin == cout:
            self.shortcut = nn.Identity()
        elif kind == "dilated":  # the last block of stage 3: a plain 3×3 convolution
            self.shortcut = nn.Conv2d(cin, cout, 3, padding=1)
        else:
            self.shortcut = unit(cin, cout)
        self.act = nn.PReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.shortcut(x) + self.dropout(self.branch(x)))


class DownsamplingBottleneck(nn.Module):
    """PReLU(max-pool(x) zero-padded to cout channels + dropout(branch(x))), and the pooling indices."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cin // PROJECTION
        self.branch = nn.Sequential(unit(cin, mid, 2, stride=2), unit(mid, mid, 3), unit(mid, cout))
        self.dropout = nn.Dropout(DROPOUT_FIXED)
        self.act = nn.PReLU()
        self.extra = cout - cin

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pooled, indices = F.max_pool2d(x, 2, return_indices=True)
        pooled = F.pad(pooled, (0, 0, 0, 0, 0, self.extra))
        return self.act(pooled + self.dropout(self.branch(x))), indices


class UpsamplingBottleneck(nn.Module):
    """dropout(branch(x)) with a 3×3 projection; no shortcut, no activation (the decoder adds both)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cin // PROJECTION
        self.branch = nn.Sequential(unit(cin, mid, 3), unit(mid, mid, 3), unit(mid, cout))
        self.dropout = nn.Dropout(DROPOUT_FIXED)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.branch(x))


def stage23(last_out: int | None = None) -> nn.Sequential:
    """Bottlenecks x.1–x.8 of stage 2 or 3 (128 channels); ``last_out`` narrows the last one (stage 3)."""
    c = WIDTHS[2]
    blocks = []
    for i, (kind, dilation) in enumerate(STAGE23):
        cout = last_out if (last_out and i == len(STAGE23) - 1) else c
        dropout = DROPOUT_FIXED if kind == "dilated" else DROPOUT
        blocks.append(Bottleneck(c, cout, kind, dilation, dropout))
    return nn.Sequential(*blocks)


class ENetAuthors(nn.Module):
    """The authors' ENet: (B, in_channels, H, W) → logits (B, out_channels, H, W); H, W multiples of 8."""

    def __init__(self, in_channels: int = 1, out_channels: int = 4) -> None:
        super().__init__()
        c0, c1, c2 = WIDTHS
        if not 1 <= in_channels < c0:
            raise ValueError(f"ENetAuthors: in_channels={in_channels} must be 1..{c0 - 1}")
        self.initial = nn.Conv2d(in_channels, c0 - in_channels, 3, stride=2, padding=1)
        self.down1 = DownsamplingBottleneck(c0, c1)
        self.stage1 = nn.Sequential(*[Bottleneck(c1, c1, dropout=DROPOUT_STAGE1) for _ in range(4)])
        self.down2 = DownsamplingBottleneck(c1, c2)
        self.stage2 = stage23()
        self.stage3 = stage23(last_out=c1)
        self.up1 = UpsamplingBottleneck(2 * c1, c1)
        self.up1_act = nn.PReLU()
        self.stage4 = nn.Sequential(Bottleneck(c1, c1, dropout=DROPOUT), Bottleneck(c1, c0, dropout=DROPOUT))
        self.up2 = UpsamplingBottleneck(2 * c0, c0)
        self.stage5 = Bottleneck(c0, c0, dropout=DROPOUT)
        self.up2_act = nn.PReLU()
        self.head = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            _head_unit(c0),
            _head_unit(c0),
            nn.Conv2d(c0, out_channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"ENet expects (B, C, H, W) with H and W multiples of 8, got {tuple(x.shape)}")
        x0 = torch.cat([self.initial(x), F.max_pool2d(x, 2)], dim=1)
        x1, idx1 = self.down1(x0)
        x1 = self.stage1(x1)
        x2, idx2 = self.down2(x1)
        x3 = self.stage3(self.stage2(x2))
        u1 = F.max_unpool2d(x3, idx2, (2, 2))
        y = self.up1_act(u1 + self.up1(torch.cat([u1, x1], dim=1)))
        y = self.stage4(y)
        u2 = F.max_unpool2d(y, idx1, (2, 2))
        y = self.up2_act(u2 + self.stage5(self.up2(torch.cat([u2, x0], dim=1))))
        return self.head(y)


def _head_unit(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.PReLU()
    )


@torch.no_grad()
def init_authors_(model: nn.Module) -> nn.Module:
    """The authors' ``weights_init`` over every submodule (in place): xavier-normal (transposed) convolution
    weights, BN weight ~ N(1, 0.02) and bias 0; biases of convolutions and PReLU slopes are left as built."""
    for m in model.modules():
        if type(m) in (nn.Conv2d, nn.ConvTranspose2d):
            assert isinstance(m, nn.Conv2d | nn.ConvTranspose2d)  # for the type checker
            nn.init.xavier_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d) and type(m) is nn.BatchNorm2d:
            m.weight.normal_(1.0, 0.02)
            m.bias.zero_()
    return model
