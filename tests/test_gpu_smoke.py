"""GPU smoke test: one training step of each network at the paper's sizes on CUDA (skipped without CUDA).

The CPU suite never reaches the CUDA kernels (cuDNN convolutions, max-unpooling, grouped convolutions of the
ResNeXt); this checks that both networks build, run forward and backward, and update on a GPU, with the
optimiser and loss the stages use.
"""

from __future__ import annotations

import pytest
import torch

from suite.config import RunConfig
from suite.losses import partial_ce
from suite.models import build_regressor, build_segmenter

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU visible to torch)"),
]

BATCH = 4


def one_training_step(network: str, device: torch.device) -> tuple[float, torch.Tensor, bool]:
    """One optimiser step of ``network`` (``segmenter`` | ``regressor``) on random inputs at the paper's
    resolution; returns the loss, the output and whether any parameter changed."""
    cfg = RunConfig.from_preset("paper", method="fs")
    size = cfg.image_size
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x = torch.rand(BATCH, 1, size, size, generator=gen).to(device)
    if network == "segmenter":
        model = build_segmenter(cfg).to(device)
        target = torch.randint(0, cfg.num_classes, (BATCH, size, size), generator=gen).to(device)
        opt: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=cfg.seg_lr, betas=(cfg.seg_betas[0], cfg.seg_betas[1])
        )

        def loss_of(out: torch.Tensor) -> torch.Tensor:
            return partial_ce(out, target)
    else:
        model = build_regressor(cfg).to(device)
        sizes = (torch.rand(BATCH, generator=gen) * 2000.0).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.reg_lr, momentum=cfg.reg_momentum)

        def loss_of(out: torch.Tensor) -> torch.Tensor:
            return (out.float() - sizes).square().mean()

    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    out = model(x)
    loss = loss_of(out)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    changed = any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters(), strict=True))
    assert all(torch.isfinite(p).all() for p in model.parameters()), f"{network}: non-finite weights"
    return float(loss.detach()), out.detach(), changed


@pytest.mark.parametrize("network", ["segmenter", "regressor"])
def test_one_training_step_on_cuda(network: str) -> None:
    device = torch.device("cuda")
    loss, out, changed = one_training_step(network, device)
    cfg = RunConfig.from_preset("paper", method="fs")
    expected = (
        (BATCH, cfg.num_classes, cfg.image_size, cfg.image_size) if network == "segmenter" else (BATCH,)
    )
    assert out.device.type == "cuda" and tuple(out.shape) == expected
    assert torch.isfinite(torch.tensor(loss)) and changed
