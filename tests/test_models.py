"""ENet and ResNeXt: shapes, parameter counts against the published figures, config wiring."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from suite.config import RunConfig
from suite.models import (
    ENet,
    SizeRegressor,
    build_regressor,
    build_segmenter,
    count_parameters,
    lv_channel,
    prepare_input,
    prepare_model,
)
from suite.models.enet import Bottleneck as ENetBottleneck
from suite.models.enet import DownsamplingBottleneck, UpsamplingBottleneck

ENET_PARAMS = 362_977  # width 1.0, 1 input channel, 2 classes (counted by hand below)
RESNEXT101_32X4D_IMAGENET = 44_177_704  # torchvision ResNet(Bottleneck, [3,4,23,3], groups=32, width=4)


def test_enet_published_parameter_count():
    net = ENet(num_classes=2, in_channels=1, width=1.0)
    n = count_parameters(net)
    assert n == ENET_PARAMS
    # the ENet paper (Table 3) reports 0.37 M parameters (3-channel input, 12 CamVid classes here)
    camvid = count_parameters(ENet(num_classes=12, in_channels=3))
    # initial conv 3→13 instead of 1→15 (3×3), full conv to 12 instead of 2 classes (2×2 kernel + bias)
    assert camvid == ENET_PARAMS + (13 * 3 - 15 * 1) * 9 + 10 * (16 * 4 + 1) == 363_843
    assert abs(camvid - 0.37e6) / 0.37e6 < 0.03


def test_enet_hand_count_of_the_first_blocks():
    net = ENet(2, 1, 1.0)
    # initial: 3×3 conv 1→15 (no bias) + BN(16) + PReLU(16)
    assert count_parameters(net.initial) == 15 * 9 + 2 * 16 + 16
    # bottleneck 1.0: 2×2 conv 16→16, BN, PReLU, 3×3 conv 16→16 (+bias), BN, PReLU, 1×1 16→64, BN, PReLU(64)
    expected = (16 * 16 * 4 + 32 + 16) + (16 * 16 * 9 + 16 + 32 + 16) + (16 * 64 + 128) + 64
    assert count_parameters(net.down1) == expected


def test_enet_architecture_matches_table1():
    net = ENet(2, 1, 1.0)
    assert net.widths == (16, 64, 128)
    assert len(net.stage1) == 4 and len(net.stage2) == 8 and len(net.stage3) == 8
    assert len(net.stage4) == 2 and isinstance(net.stage5, ENetBottleneck)
    assert isinstance(net.down1, DownsamplingBottleneck) and isinstance(net.down2, DownsamplingBottleneck)
    assert isinstance(net.up4, UpsamplingBottleneck) and isinstance(net.up5, UpsamplingBottleneck)
    for stage in (net.stage2, net.stage3):
        convs = [
            next(m for m in b.branch if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)) for b in stage
        ]
        assert [c.dilation[0] for c in convs] == [1, 2, 1, 4, 1, 8, 1, 16]
        assert [c.kernel_size for c in convs][2] == (5, 1) and [c.kernel_size for c in convs][6] == (5, 1)
    drops = [m.p for m in net.modules() if isinstance(m, nn.Dropout2d)]
    # stage 1 (1.0–1.4) 0.01; stages 2–3 (2.0–2.8, 3.1–3.8) and the decoder's regular bottlenecks 0.1
    assert drops == [0.01] * 5 + [0.1] * 17 + [0.1] * 3
    assert sum(isinstance(m, nn.PReLU) for m in net.modules()) > 0


@pytest.mark.parametrize("size", [64, 256])
def test_enet_output_shape(size):
    torch.manual_seed(0)
    net = ENet(2, 1, 1.0).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, size, size))
    assert out.shape == (1, 2, size, size)
    assert torch.isfinite(out).all()


def test_enet_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = ENet(4, 1, 0.5)
    out = net(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 4, 64, 64)
    out.square().mean().backward()
    unused = [name for name, p in net.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert unused == []


def test_enet_rejects_bad_input():
    with pytest.raises(ValueError, match="multiples of 8"):
        ENet(2, 1, 0.25)(torch.zeros(1, 1, 60, 60))


def test_build_segmenter_from_presets():
    smoke = RunConfig.from_preset("smoke")
    net = build_segmenter(smoke)
    assert net.widths == (4, 16, 32)
    out = net(torch.zeros(2, 1, smoke.image_size, smoke.image_size))
    assert out.shape == (2, 2, 64, 64)
    multi = build_segmenter(smoke.replace(classes="multi", seg_out_channels=4))
    assert multi(torch.zeros(1, 1, 64, 64)).shape == (1, 4, 64, 64)
    assert lv_channel(smoke) == 1 and lv_channel(smoke.replace(classes="multi", seg_out_channels=4)) == 3
    assert (
        count_parameters(build_segmenter(RunConfig.from_preset("paper", seg_arch="enet", seg_out_channels=2)))
        == ENET_PARAMS
    )


def test_resnext101_32x4d_parameter_count():
    torch.manual_seed(0)
    reg = build_regressor(RunConfig.from_preset("paper"))
    assert isinstance(reg, SizeRegressor)
    n = count_parameters(reg)
    # torchvision's ResNeXt-101 32x4d: 44.18 M with the 3-channel stem and the 1000-class head
    imagenet = count_parameters(ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=4))
    assert imagenet == RESNEXT101_32X4D_IMAGENET
    assert n == imagenet - 3 * 64 * 49 + 1 * 64 * 49 - (2048 * 1000 + 1000) + (2048 + 1) == 42_124_481
    blocks = [m for m in reg.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 3 + 4 + 23 + 3
    assert blocks[0].conv2.groups == 32 and blocks[0].conv2.out_channels == 128  # 32 × 4d in stage 1
    with torch.no_grad():
        out = reg.eval()(torch.randn(2, 1, 32, 32))
    assert out.shape == (2,) and out.dtype == torch.float32


def test_small_regressor_trains_a_step():
    cfg = RunConfig.from_preset("smoke")
    torch.manual_seed(0)
    reg = build_regressor(cfg)
    x, y = torch.randn(4, 1, 64, 64), torch.tensor([10.0, 0.0, 200.0, 50.0])
    loss = (reg(x) - y).square().mean()
    loss.backward()
    assert all(p.grad is not None for p in reg.parameters())


def test_prepare_model_channels_last_keeps_the_numbers():
    cfg = RunConfig.from_preset("smoke")
    torch.manual_seed(0)
    a = build_segmenter(cfg).eval()
    b = build_segmenter(cfg).eval()
    b.load_state_dict(a.state_dict())
    prepare_model(b, cfg.replace(channels_last=True))
    x = torch.randn(2, 1, 64, 64)
    xb = prepare_input(x, cfg.replace(channels_last=True))
    with torch.no_grad():
        assert torch.allclose(a(x), b(xb), atol=1e-4)
    assert list(a.state_dict()) == list(b.state_dict())


@pytest.mark.slow
@pytest.mark.parametrize(
    "script,args",
    [
        ("bench_gpu.py", ["--cpu", "--procs", "1,2"]),
        ("bench_cpu.py", ["--quick", "--variants", "default,channels_last"]),
    ],
)
def test_bench_scripts_cpu_sanity(tmp_path, script, args):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(root / "scripts" / script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    if script == "bench_gpu.py":
        assert {(r["model"], r["batch"], r["dtype"]) for r in result["throughput"]} == {
            (m, b, d) for m in ("enet", "regressor") for b in (1, 8) for d in ("fp32", "bf16")
        }
        assert [r["k"] for r in result["concurrent_enet"]] == [1, 2]
        assert [r["world_size"] for r in result["ddp_regressor"]] == [1, 2]
    else:
        assert [r["variant"] for r in result["variants"]] == ["default", "channels_last"]
        assert result["variants"][0]["keeps_numbers"] is True
        assert result["summary"]["proposed_step_authors_s"] == pytest.approx(0.46)
