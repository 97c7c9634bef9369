"""What makes a CPU epoch faster without changing a number: the optimisers' multi-tensor update, and no
NaN-fill of new tensors under deterministic mode; and the one that does change numbers, ``optim_impl=fused``,
which therefore enters the run id."""

from __future__ import annotations

import copy

import torch

from suite.config import RunConfig
from suite.models import build_segmenter
from suite.stages.base import configure_torch, optimizer_options
from suite.stages.regressor import regressor_optimizer


def _adam_steps(opts: dict[str, bool], steps: int = 4) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = build_segmenter(RunConfig.from_preset("code", image_size=32, reg_arch="resnext")).train()
    opt = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.99), **opts)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        torch.manual_seed(2)  # the same dropout masks in every variant
        loss = net(torch.rand(1, 1, 32, 32, generator=g)).softmax(1)[:, 3].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def test_foreach_adam_is_the_per_parameter_loop_bit_for_bit_and_fused_is_not():
    loop = _adam_steps({"foreach": False})
    assert all(torch.equal(a, b) for a, b in zip(loop, _adam_steps({"foreach": True}), strict=True))
    # fused: the same algorithm in one kernel, other rounding: why it is an identity field
    assert not all(torch.equal(a, b) for a, b in zip(loop, _adam_steps({"fused": True}), strict=True))


def test_optimisers_take_the_configured_implementation():
    cfg = RunConfig.from_preset("smoke", stage="regressor", method="regressor")
    assert optimizer_options(cfg) == {"foreach": True}
    net = torch.nn.Linear(2, 1)
    assert regressor_optimizer(cfg, net).defaults["foreach"] is True
    fused = cfg.replace(optim_impl="fused")
    assert regressor_optimizer(fused, net).defaults["fused"] is True
    # foreach is the numbers of every run before the field: no run id changes; fused is another run
    assert "optim_impl" not in cfg.identity_keys()
    assert fused.run_id != cfg.run_id


def test_configure_torch_keeps_determinism_without_the_nan_fill():
    cfg = RunConfig.from_preset("smoke", threads=1)
    configure_torch(cfg, torch.device("cpu"))
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False  # type: ignore[attr-defined]


def test_the_nan_fill_changes_no_number():
    """Forward and backward of the authors' ENet with and without the fill: the same floats (no kernel
    reads memory it did not write)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(0)
    net = build_segmenter(RunConfig.from_preset("code", image_size=32, reg_arch="resnext")).train()
    x = torch.rand(2, 1, 32, 32)
    out = []
    for fill in (True, False):
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
        m = copy.deepcopy(net)
        torch.manual_seed(3)
        y = m(x)
        y.softmax(1)[:, 3].sum().backward()
        out.append([y.detach(), *[p.grad for p in m.parameters()]])
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    assert all(torch.equal(a, b) for a, b in zip(*out, strict=True))
