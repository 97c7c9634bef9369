"""Dice (2-D, 3-D, edge cases) and LV volume against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from suite.metrics import (
    VOLUME_STATS,
    dice,
    dice_per_slice,
    overlap_counts,
    per_volume,
    run_metrics,
    volume_metrics,
    volume_stats,
)


def mask(shape, *coords):
    m = np.zeros(shape, dtype=bool)
    for c in coords:
        m[c] = True
    return m


def test_dice_edge_cases():
    empty = np.zeros((4, 4), dtype=bool)
    one = mask((4, 4), (0, 0))
    assert dice(empty, empty) == 1.0
    assert dice(one, empty) == 0.0
    assert dice(empty, one) == 0.0
    assert dice(one, one) == 1.0
    assert isinstance(dice(one, one), float)


def test_dice_hand_computed():
    pred = np.zeros((4, 4), dtype=bool)
    pred[0, :] = True  # 4 pixels
    target = np.zeros((4, 4), dtype=bool)
    target[0, :2] = True  # 2 pixels, both inside pred
    assert dice(pred, target) == pytest.approx(2 * 2 / (4 + 2))
    target2 = np.zeros((4, 4), dtype=bool)
    target2[1, :] = True  # disjoint
    assert dice(pred, target2) == 0.0


def test_dice_torch_and_numeric_inputs():
    pred = torch.tensor([[1, 1], [0, 0]], dtype=torch.uint8)
    target = torch.tensor([[True, False], [False, False]])
    assert dice(pred, target) == pytest.approx(2 / 3)
    assert dice(pred.bool(), target.numpy()) == pytest.approx(2 / 3)


def test_dice_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((4, 4), bool), np.zeros((4, 5), bool))


def test_dice_per_slice():
    pred = np.zeros((3, 2, 2), dtype=bool)
    target = np.zeros((3, 2, 2), dtype=bool)
    pred[0, 0, :] = True
    target[0, 0, 0] = True  # 2·1/(2+1)
    # slice 1: both empty → 1.0
    pred[2, 1, 1] = True  # slice 2: only the prediction → 0.0
    out = dice_per_slice(pred, target)
    assert out.shape == (3,)
    assert out.tolist() == pytest.approx([2 / 3, 1.0, 0.0])
    inter, sp, st = overlap_counts(pred, target)
    assert inter.tolist() == [1, 0, 0] and sp.tolist() == [2, 0, 1] and st.tolist() == [1, 0, 0]


def test_per_volume_pools_voxels():
    pred = np.zeros((4, 2, 2), dtype=bool)
    target = np.zeros((4, 2, 2), dtype=bool)
    # volume A = slices 0, 2: slice 0 perfect (2 px), slice 2 predicted 1 px where target is empty
    pred[0, 0, :] = target[0, 0, :] = True
    pred[2, 1, 1] = True
    # volume B = slices 1, 3: empty everywhere → 1.0
    ids = ["A", "B", "A", "B"]
    per_vol = per_volume(pred, target, ids)
    assert {v: m["dice"] for v, m in per_vol.items()} == pytest.approx({"A": 2 * 2 / (3 + 2), "B": 1.0})
    # the mean of the 2-D Dice of A's slices is (1 + 0) / 2 = 0.5: a different number
    assert per_vol["A"]["dice2d"] == pytest.approx(0.5) and per_vol["B"]["dice2d"] == 1.0
    assert float(dice_per_slice(pred, target)[[0, 2]].mean()) == pytest.approx(0.5)
    assert per_volume(pred, target, np.array(ids))["A"]["dice"] == pytest.approx(
        dice(pred[[0, 2]], target[[0, 2]])
    )
    with pytest.raises(ValueError, match="one entry per slice"):
        per_volume(pred, target, ["A", "B"])


def test_volume_stats_and_run_metrics_hand_computed():
    pred = np.zeros((3, 2, 2), dtype=bool)
    target = np.zeros((3, 2, 2), dtype=bool)
    pred[0, 0, :] = True  # slice 0: |P| 2, |T| 1, overlap 1 -> 2/3
    target[0, 0, 0] = True
    target[2, 1, 1] = True  # slice 2: only the target -> 0; slice 1 empty -> 1
    s = volume_stats(torch.as_tensor(pred), torch.as_tensor(target))
    assert s.dtype == torch.float64 and len(s) == len(VOLUME_STATS)
    assert s.tolist() == pytest.approx([1, 2, 2, 2 / 3 + 1 + 0, 3])
    empty = volume_stats(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool))
    stats = np.stack([s.numpy(), empty.numpy()])
    vm = volume_metrics(stats, np.array([0.5, 2.0]))
    assert vm["dice"].tolist() == pytest.approx([2 * 1 / (2 + 2), 1.0])
    assert vm["dice2d"].tolist() == pytest.approx([(2 / 3 + 1) / 3, 1.0])
    assert vm["lv_volume_pred_ml"].tolist() == [1.0, 0.0] and vm["lv_volume_true_ml"].tolist() == [1.0, 0.0]
    run = run_metrics(stats)
    # all 5 slices: (2/3 + 1 + 0 + 1 + 1) / 5; volumes: (0.5 + 1) / 2
    assert run == pytest.approx({"dice2d_slices": (2 / 3 + 3) / 5, "dice_mean": 0.75})


def test_volume_ml():
    m = np.zeros((3, 4, 4), dtype=bool)
    m[0, :2, :2] = True  # 4 px
    m[1, 0, 0] = True  # 1 px
    m[2] = True  # 16 px
    ids = ["v1", "v1", "v2"]
    # 1.5 × 1.5 × 10 mm = 22.5 mm³ per voxel
    per_vol = per_volume(m, m, ids, 22.5 / 1000)
    assert per_vol["v1"]["lv_volume_pred_ml"] == pytest.approx(5 * 22.5 / 1000)
    assert per_vol["v2"]["lv_volume_true_ml"] == pytest.approx(16 * 22.5 / 1000)
    # one voxel volume per volume (sorted id order)
    per_vol = per_volume(m, np.zeros_like(m), ids, np.array([0.01, 0.02]))
    assert per_vol["v1"]["lv_volume_pred_ml"] == pytest.approx(0.05)
    assert per_vol["v2"]["lv_volume_pred_ml"] == pytest.approx(0.32)
    assert per_vol["v2"]["lv_volume_true_ml"] == 0.0
