"""The size regressor: ResNeXt (Xie et al. 2017) from torchvision's maintained ResNet implementation.

``ResNet(Bottleneck, layers, groups=G, width_per_group=W)`` is torchvision's ResNeXt (ResNeXt-101 32×4d is
``layers=[3, 4, 23, 3]``, ``groups=32``, ``width_per_group=4``: 44,177,704 parameters with the ImageNet stem
and 1000-class head). Here the stem takes 1 channel (MR slices) and the head has one output, the LV area in
pixels, so the network has 44,177,704 − 3·64·49 + 1·64·49 − (2048·1000 + 1000) + (2048 + 1)
= 42,124,481 parameters. Weights are randomly initialised (no pretrained download), as the authors'
regressor trained from scratch.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck, ResNet


def check_resnext_shape(layers: Sequence[int], groups: int, width_per_group: int) -> None:
    """Refuse a ResNeXt that cannot be built: 4 stage depths >= 1, groups and width per group >= 1."""
    if len(layers) != 4 or any(int(n) < 1 for n in layers):
        raise ValueError(f"ResNeXt needs 4 stage depths >= 1, got {list(layers)}")
    if groups < 1 or width_per_group < 1:
        raise ValueError(
            f"ResNeXt needs groups >= 1 and width_per_group >= 1, got {groups}, {width_per_group}"
        )


class SizeRegressor(nn.Module):
    """ResNeXt with a 1-channel stem and a linear head: (B, 1, H, W) → (B,) predicted LV size in pixels, or
    (B, outputs) for several constrained values (``suite.constraints``)."""

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 23, 3),
        groups: int = 32,
        width_per_group: int = 4,
        in_channels: int = 1,
        outputs: int = 1,
    ) -> None:
        super().__init__()
        check_resnext_shape(layers, groups, width_per_group)
        net = ResNet(
            Bottleneck,
            [int(n) for n in layers],
            num_classes=outputs,
            groups=groups,
            width_per_group=width_per_group,
        )
        # 1-channel stem with the same geometry as torchvision's (7×7, stride 2, padding 3, no bias),
        # initialised like torchvision initialises its convolutions
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.net = net
        self.outputs = outputs

    def forward(self, x: Tensor) -> Tensor:
        """(B,) with one output (the paper's LV size), else (B, outputs)."""
        out = self.net(x)
        return out.squeeze(-1) if self.outputs == 1 else out
