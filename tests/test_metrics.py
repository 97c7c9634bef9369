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


# ---------------------------------------------------------------------------------------------- 3-D, in mm
def _ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    grid = np.indices(shape).astype(np.float64)
    d2 = sum(((grid[i] - centre[i]) * spacing[i]) ** 2 for i in range(3))
    return d2 <= radius**2


def _cube(shape, lo, hi):
    m = np.zeros(shape, dtype=bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return m


def test_concentric_spheres_are_the_radius_difference_apart():
    from suite.metrics import class_metrics

    true = _ball((48, 48, 48), (24, 24, 24), 15)
    pred = _ball((48, 48, 48), (24, 24, 24), 11)
    m = class_metrics(pred, true, (1.0, 1.0, 1.0))
    # every surface point of one sphere is 4 mm from the other's, within a voxel (the surfaces are voxelised)
    assert abs(m["hd95_mm"] - 4.0) <= 1.0 and abs(m["assd_mm"] - 4.0) <= 1.0
    assert m["dice"] == pytest.approx(2 * pred.sum() / (pred.sum() + true.sum()))


def test_offset_spheres_hd95_and_assd_are_the_analytic_values():
    """Two spheres of radius R, centres d apart: a surface point at angle θ to the offset lies ≈ d·|cos θ|
    from the other sphere, and |cos θ| is uniform on [0, 1] over the sphere: HD95 ≈ 0.95 d, ASSD ≈ d / 2."""
    from suite.metrics import class_metrics

    d = 6
    true = _ball((64, 48, 48), (28, 24, 24), 14)
    pred = _ball((64, 48, 48), (28 + d, 24, 24), 14)
    m = class_metrics(pred, true, (1.0, 1.0, 1.0))
    assert abs(m["hd95_mm"] - 0.95 * d) <= 1.0
    assert abs(m["assd_mm"] - d / 2) <= 1.0


def test_anisotropic_spacing_weighs_a_through_plane_shift_by_the_slice_spacing():
    from suite.metrics import class_metrics

    shape, spacing = (40, 40, 16), (1.0, 1.0, 5.0)
    true = _cube(shape, (10, 10, 4), (20, 20, 10))
    in_plane = class_metrics(_cube(shape, (12, 10, 4), (22, 20, 10)), true, spacing)
    through = class_metrics(_cube(shape, (10, 10, 6), (20, 20, 12)), true, spacing)
    # a cube shifted by 2 voxels: the faces across the shift are 2 voxels apart, > 5 % of the surface voxels
    assert in_plane["hd95_mm"] == pytest.approx(2.0)
    assert through["hd95_mm"] == pytest.approx(10.0)
    assert through["assd_mm"] > 3 * in_plane["assd_mm"]
    # overlaps 8 of 10 voxels in-plane, 4 of 6 through-plane
    assert in_plane["dice"] == pytest.approx(0.8) and through["dice"] == pytest.approx(2 / 3)
    # volumes use the voxel's own volume: 10 x 10 x 6 voxels of 5 mm^3
    assert through["volume_true_ml"] == pytest.approx(600 * 5 / 1000)


def test_surface_distances_match_a_brute_force_point_set_computation():
    from scipy.ndimage import binary_erosion
    from scipy.spatial.distance import cdist

    from suite.metrics import surface_distances

    rng = np.random.default_rng(0)
    spacing = (1.3, 0.9, 6.5)
    a = np.zeros((14, 12, 6), dtype=bool)
    b = np.zeros_like(a)
    a[3:10, 2:9, 1:5] = True
    b[5:13, 4:11, 2:6] = True
    a ^= rng.random(a.shape) < 0.05
    d_ab, d_ba = surface_distances(a, b, spacing)

    def points(m):
        s = m & ~binary_erosion(m, border_value=0)
        return np.argwhere(s) * np.asarray(spacing)

    full = cdist(points(a), points(b))
    assert np.allclose(np.sort(d_ab), np.sort(full.min(axis=1)))
    assert np.allclose(np.sort(d_ba), np.sort(full.min(axis=0)))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # monai's own deprecation notice inside its metrics
def test_hd95_and_assd_agree_with_monai():
    """The pinned reference (monai 1.6.1, a dev dependency): same numbers on random shapes, anisotropic."""
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    from suite.metrics import class_metrics

    rng = np.random.default_rng(1)
    for spacing in ((1.0, 1.0, 1.0), (1.5, 1.5, 10.0), (0.7, 1.9, 5.0)):
        true = _ball((30, 30, 12), (15, 14, 6), 8, (1, 1, 2.5)) ^ (rng.random((30, 30, 12)) < 0.02)
        pred = _ball((30, 30, 12), (17, 14, 7), 7, (1, 1, 2.5))
        m = class_metrics(pred, true, spacing)
        p = torch.from_numpy(pred)[None, None].float()
        t = torch.from_numpy(true)[None, None].float()
        hd = compute_hausdorff_distance(p, t, percentile=95, spacing=list(spacing))
        asd = compute_average_surface_distance(p, t, symmetric=True, spacing=list(spacing))
        assert m["hd95_mm"] == pytest.approx(float(hd), rel=1e-5)
        assert m["assd_mm"] == pytest.approx(float(asd), rel=1e-5)


def test_empty_cases_follow_metrics_reloaded():
    from suite.metrics import class_metrics

    empty = np.zeros((8, 8, 3), dtype=bool)
    some = _cube((8, 8, 3), (2, 2, 1), (5, 5, 2))
    both = class_metrics(empty, empty, (1, 1, 1))
    assert both["dice"] == 1.0 and both["hd95_mm"] == 0.0 and both["assd_mm"] == 0.0
    assert both["empty_true"] and both["empty_pred"]
    for pred, true in ((empty, some), (some, empty)):
        m = class_metrics(pred, true, (1, 1, 1))
        assert m["dice"] == 0.0 and np.isnan(m["hd95_mm"]) and np.isnan(m["assd_mm"])
        assert m["empty_pred"] == (pred is empty) and m["empty_true"] == (true is empty)


def test_ejection_fraction():
    from suite.metrics import ejection_fraction

    assert ejection_fraction(100.0, 40.0) == pytest.approx(60.0)
    assert np.isnan(ejection_fraction(0.0, 0.0))
    assert np.allclose(ejection_fraction([200.0, 50.0], [150.0, 10.0]), [25.0, 80.0])
