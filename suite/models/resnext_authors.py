"""The authors' ResNeXt size regressor (``reg_arch: resnext-authors``), written from the facts of their code.

It is the ResNeXt of torchvision (``suite/models/resnext.py``: a 1-channel 7×7/2 stem, BN, ReLU, 3×3/2
max-pool, four stages of bottlenecks with grouped 3×3 convolutions, stride in the 3×3 convolution) except:

- every residual branch goes through element-wise dropout p = 0.5 in training, before the shortcut is added;
- the pooling is ``AvgPool2d(7)`` (stride 7), not a global average: at 256×256 the last map is 8×8 and only
  its top-left 7×7 is averaged; the map must be 7 to 13 pixels (image_size 200 to 416) for one output;
- the linear head has 4 outputs (one per ACDC label) of which index 3, the LV, is trained and read: the
  forward pass returns that column, (B,), like the suite's regressor (or, with ``columns``, the columns of
  the constrained labels, (B, K): ``constrained=all``); :meth:`ResNeXtAuthors.outputs` gives all 4;
- initialisation: convolutions N(0, 2 / (k·k·out_channels)) (He, fan-out), BN weight 1 and bias 0, the
  linear layer PyTorch's default.

State-dict keys are the authors' (``conv1``, ``bn1``, ``layerK.i.conv1`` …, ``downsample.0/1``, ``fc``).
ResNeXt-101 32×4d with this head has 42,130,628 parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

from suite.models.resnext import check_resnext_shape

OUTPUTS = 4  # one per ACDC label
LV_OUTPUT = 3  # the column their code trains (--idc 3) and reads
RESIDUAL_DROPOUT = 0.5
POOL = 7


class DropoutBottleneck(Bottleneck):
    """torchvision's ResNeXt bottleneck with dropout p = 0.5 on the residual branch before the sum."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.dropout(out, p=RESIDUAL_DROPOUT, training=self.training)
        return self.relu(out + shortcut)


class ResNeXtAuthors(nn.Module):
    """(B, 1, H, W) → (B,) LV size in pixels (output column 3 of 4)."""

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 23, 3),
        groups: int = 32,
        width_per_group: int = 4,
        columns: Sequence[int] = (LV_OUTPUT,),
    ) -> None:
        super().__init__()
        self.columns = [int(c) for c in columns]
        check_resnext_shape(layers, groups, width_per_group)
        self.groups, self.width_per_group, self.inplanes = int(groups), int(width_per_group), 64
        self.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._stage(64, int(layers[0]), 1)
        self.layer2 = self._stage(128, int(layers[1]), 2)
        self.layer3 = self._stage(256, int(layers[2]), 2)
        self.layer4 = self._stage(512, int(layers[3]), 2)
        self.avgpool = nn.AvgPool2d(POOL)
        self.fc = nn.Linear(512 * Bottleneck.expansion, OUTPUTS)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )
        kw = dict(groups=self.groups, base_width=self.width_per_group)
        layers = [DropoutBottleneck(self.inplanes, planes, stride, downsample, **kw)]
        self.inplanes = out
        layers += [DropoutBottleneck(out, planes, **kw) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def outputs(self, x: Tensor) -> Tensor:
        """All 4 outputs (B, 4), as the authors' network returns them."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        if not (POOL <= x.shape[-2] < 2 * POOL and POOL <= x.shape[-1] < 2 * POOL):
            raise ValueError(
                f"ResNeXtAuthors: AvgPool2d({POOL}) needs a {POOL}..{2 * POOL - 1} pixel map, got "
                f"{x.shape[-2]}×{x.shape[-1]}; the input side must be 200 to 416 pixels"
            )
        return self.fc(self.avgpool(x).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        out = self.outputs(x)
        return out[:, self.columns[0]] if len(self.columns) == 1 else out[:, self.columns]
