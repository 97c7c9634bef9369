"""Size penalty, bounds and partial cross-entropy against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from suite.config import RunConfig
from suite.losses import (
    REF_PIXELS,
    fg_probs_from_logits,
    in_bounds,
    partial_ce,
    penalty_for_config,
    penalty_from_logits,
    size_bounds,
    size_penalty,
    size_penalty_fraction,
)


def const_probs(values: list[float], side: int = 4) -> torch.Tensor:
    """(B, side, side) probability maps, image i filled with values[i] (so s_i = values[i]·side²)."""
    return torch.stack([torch.full((side, side), v, dtype=torch.float32) for v in values]).requires_grad_(
        True
    )


# 4×4 images with p = 0.5 everywhere: s = 8, H·W = 16
CASES = [
    # name, lower, upper, expected penalty, expected dC/dp per pixel = 2(s − bound)/(H·W)
    ("inside", 6.0, 10.0, 0.0, 0.0),
    ("below", 10.0, 12.0, (8 - 10) ** 2 / 16, 2 * (8 - 10) / 16),
    ("above", 2.0, 5.0, (8 - 5) ** 2 / 16, 2 * (8 - 5) / 16),
    ("zero-size", 0.0, 0.0, 8**2 / 16, 2 * 8 / 16),
]


@pytest.mark.parametrize("name,lower,upper,expected,grad", CASES, ids=[c[0] for c in CASES])
def test_size_penalty_value_and_gradient(name, lower, upper, expected, grad):
    fg = const_probs([0.5])
    pen = size_penalty(fg, torch.tensor([lower]), torch.tensor([upper]))
    assert pen.dim() == 0
    assert pen.item() == pytest.approx(expected, abs=1e-7)
    pen.backward()
    assert torch.allclose(fg.grad, torch.full_like(fg, grad), atol=1e-7)


def test_size_bounds_clamp_zero_and_negative_sizes():
    lower, upper = size_bounds(torch.tensor([100.0, 0.0, -5.0, 50.0]), 0.1)
    assert lower.tolist() == pytest.approx([90.0, 0.0, 0.0, 45.0])
    assert upper.tolist() == pytest.approx([110.0, 0.0, 0.0, 55.0])
    assert bool((lower >= 0).all() and (upper >= 0).all())
    with pytest.raises(ValueError, match="gamma"):
        size_bounds(torch.tensor([1.0]), 1.5)


@pytest.mark.parametrize("r", [0.0, -5.0, -1000.0])
def test_zero_and_negative_predicted_size_pushes_to_empty(r):
    # bounds (0, 0): C = s² / (H·W) = 64 / 16 = 4, dC/dp = 2·8/16 = 1 at every pixel
    fg = const_probs([0.5])
    lower, upper = size_bounds(torch.tensor([r]), 0.1)
    pen = size_penalty(fg, lower, upper)
    assert pen.item() == pytest.approx(4.0)
    pen.backward()
    assert torch.allclose(fg.grad, torch.ones_like(fg))


def test_batch_of_mixed_cases_equals_sum_of_single_images():
    values = [0.5, 0.5, 0.5, 0.5, 0.25]
    lows = torch.tensor([6.0, 10.0, 2.0, 0.0, 3.0])
    ups = torch.tensor([10.0, 12.0, 5.0, 0.0, 3.5])
    fg = const_probs(values)
    total = size_penalty(fg, lows, ups)
    # hand: 0 + 4/16 + 9/16 + 64/16 + (4 − 3.5)²/16
    assert total.item() == pytest.approx((0 + 4 + 9 + 64 + 0.25) / 16)
    singles = sum(
        size_penalty(const_probs([v]), lows[i : i + 1], ups[i : i + 1]).item() for i, v in enumerate(values)
    )
    assert total.item() == pytest.approx(singles)
    total.backward()
    expected = torch.tensor([0.0, -0.25, 0.375, 1.0, 2 * 0.5 / 16]).view(-1, 1, 1).expand_as(fg)
    assert torch.allclose(fg.grad, expected, atol=1e-7)


def test_normalised_by_pixel_count():
    # the same soft size s = 8 below lower = 10 on a 4×4 and an 8×8 image: (8 − 10)² / H·W
    small = size_penalty(const_probs([0.5], side=4), torch.tensor([10.0]), torch.tensor([12.0]))
    big = size_penalty(const_probs([0.125], side=8), torch.tensor([10.0]), torch.tensor([12.0]))
    assert small.item() == pytest.approx(4 / 16)
    assert big.item() == pytest.approx(4 / 64)


def test_gradient_matches_analytic_on_random_maps():
    g = torch.Generator().manual_seed(0)
    fg = torch.rand(6, 8, 8, generator=g).requires_grad_(True)
    s = fg.detach().sum((1, 2))
    lower = s + torch.tensor([-5.0, 3.0, -1.0, 7.0, -20.0, 0.5])  # mixes inside (-) and below (+)
    upper = s + torch.tensor([-2.0, 9.0, 4.0, 8.0, -10.0, 1.0])
    pen = size_penalty(fg, lower, upper)
    pen.backward()
    below = (s - lower).clamp(max=0)
    above = (s - upper).clamp(min=0)
    analytic = 2 * (below + above) / 64
    assert torch.allclose(fg.grad, analytic.view(-1, 1, 1).expand_as(fg), atol=1e-6)
    assert pen.item() == pytest.approx(float(((below**2 + above**2) / 64).sum()), rel=1e-6)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        size_penalty(torch.rand(2, 1, 4, 4), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        size_penalty(torch.rand(2, 4, 4), torch.zeros(3), torch.zeros(3))


def test_in_bounds():
    fg = const_probs([0.5, 0.5, 0.5, 0.5])  # s = 8 each
    lows, ups = torch.tensor([6.0, 10.0, 2.0, 8.0]), torch.tensor([10.0, 12.0, 5.0, 8.0])
    assert in_bounds(fg, lows, ups).tolist() == [True, False, False, True]


def test_fraction_units_equal_pixels_at_reference_and_resolution_free():
    # p = 0.25 everywhere; upper bound 1/8 of the image
    at256 = const_probs([0.25], side=256)
    px = size_penalty(at256, torch.tensor([0.0]), torch.tensor([REF_PIXELS / 8]))
    # hand: (16384 − 8192)² / 65536 = 1024
    assert px.item() == pytest.approx(1024.0)
    fr256 = size_penalty_fraction(at256, torch.tensor([0.0]), torch.tensor([1 / 8]))
    assert fr256.item() == pytest.approx(1024.0, rel=1e-6)
    at64 = const_probs([0.25], side=64)
    fr64 = size_penalty_fraction(at64, torch.tensor([0.0]), torch.tensor([1 / 8]))
    assert fr64.item() == pytest.approx(1024.0, rel=1e-6)
    # whereas the pixel penalty at 64×64 is 16× smaller: (1024 − 512)² / 4096 = 64
    px64 = size_penalty(at64, torch.tensor([0.0]), torch.tensor([4096 / 8]))
    assert px64.item() == pytest.approx(64.0)


def test_penalty_for_config_both_units():
    fg = const_probs([0.25], side=64)  # s = 1024 pixels
    sizes = torch.tensor([400.0])  # bounds (360, 440): s is above by 584
    pix = RunConfig.from_preset("smoke", gamma=0.1, size_units="pixels")
    frac = RunConfig.from_preset("smoke", gamma=0.1, size_units="fraction")
    assert penalty_for_config(pix, fg, sizes).item() == pytest.approx(584**2 / 4096, rel=1e-6)
    assert penalty_for_config(frac, fg, sizes).item() == pytest.approx(
        REF_PIXELS * (584 / 4096) ** 2, rel=1e-5
    )


def test_penalty_from_logits_gradient_through_softmax():
    cfg = RunConfig.from_preset("smoke", gamma=0.1, size_units="pixels")
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)  # p_LV = 0.5, s = 8
    pen, inside = penalty_from_logits(cfg, logits, torch.tensor([0.0]))
    assert pen.item() == pytest.approx(4.0) and inside.tolist() == [False]
    pen.backward()
    # dC/dp = 1, dp/dz_LV = p(1 − p) = 0.25, dp/dz_bg = −0.25
    assert torch.allclose(logits.grad[:, 1], torch.full((1, 4, 4), 0.25))
    assert torch.allclose(logits.grad[:, 0], torch.full((1, 4, 4), -0.25))
    multi = torch.zeros(1, 4, 2, 2)
    multi[:, 3] = math.log(3.0)  # p_LV = 3 / (3 + 3) = 0.5
    assert torch.allclose(fg_probs_from_logits(multi), torch.full((1, 2, 2), 0.5))


# ---------------------------------------------------------------- partial cross-entropy
def test_partial_ce_averages_over_supervised_pixels_only():
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1, 0, 1] = math.log(3.0)  # p(class 1) = 3/4 at (0, 1)
    logits[0, 0, 1, :] = 10.0  # confident background at row 1...
    target = torch.tensor([[[1, 1], [1, 1]]])  # ...where the target says LV: CE = ln(1 + e¹⁰) ≈ 10 there
    mask = torch.tensor([[[True, True], [False, False]]])
    logits.requires_grad_(True)
    loss = partial_ce(logits, target, mask)
    assert loss.item() == pytest.approx((math.log(2.0) + math.log(4 / 3)) / 2, rel=1e-6)
    loss.backward()
    assert torch.count_nonzero(logits.grad[..., 1, :]) == 0  # unsupervised pixels get no gradient
    assert torch.count_nonzero(logits.grad[..., 0, :]) == 4
    # no mask: the mean over all four pixels includes the two confident mistakes
    full = partial_ce(logits.detach(), target)
    assert full.item() == pytest.approx(
        (math.log(2) + math.log(4 / 3) + 2 * (10 + math.log1p(math.exp(-10)))) / 4, rel=1e-5
    )


def test_partial_ce_mask_over_batch_counts_pixels_not_images():
    logits = torch.zeros(2, 2, 2, 2)  # CE = ln 2 everywhere
    logits[1, 1] = math.log(3.0)  # image 1: CE(target 1) = ln(4/3)
    target = torch.ones(2, 2, 2, dtype=torch.long)
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[0, 0, 0] = True  # one pixel of image 0
    mask[1] = True  # four pixels of image 1
    loss = partial_ce(logits, target, mask)
    assert loss.item() == pytest.approx((math.log(2) + 4 * math.log(4 / 3)) / 5, rel=1e-6)


def test_partial_ce_empty_mask_is_zero_with_graph():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = partial_ce(logits, torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_partial_ce_shape_errors():
    with pytest.raises(ValueError, match="target shape"):
        partial_ce(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="mask shape"):
        partial_ce(
            torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), torch.ones(2, 4, 4).bool()
        )
