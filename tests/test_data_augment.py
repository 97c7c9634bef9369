"""Regressor augmentation: exact flips / mirrors / 90° rotations, identity copy 0, LV area recomputed,
determinism, probabilities and angle range, torch input, on-the-fly == materialised."""

from __future__ import annotations

import numpy as np
import torch

from suite.data.augment import AugmentedSet, apply_augment, augment_labeled, augment_params
from suite.data.dataset import PreparedData


def _toy(n=4, s=32, seed=0):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, s, s)).astype(np.uint8)
    labs = rng.integers(0, 4, (n, s, s)).astype(np.uint8)
    return imgs, labs


def test_flip_mirror_rot90_are_exact():
    imgs, labs = _toy(5)
    flip = np.array([1, 0, 0, 0, 1], bool)
    mirror = np.array([0, 1, 0, 0, 1], bool)
    angle = np.array([0, 0, 90.0, -90.0, 0])
    i, l_, a = apply_augment(imgs, labs, flip, mirror, angle)
    assert np.array_equal(i[0], imgs[0][::-1]) and np.array_equal(l_[0], labs[0][::-1])  # ImageOps.flip
    assert np.array_equal(i[1], imgs[1][:, ::-1]) and np.array_equal(
        l_[1], labs[1][:, ::-1]
    )  # ImageOps.mirror
    assert np.array_equal(i[2], np.rot90(imgs[2], 1)) and np.array_equal(
        l_[2], np.rot90(labs[2], 1)
    )  # PIL +90
    assert np.array_equal(l_[3], np.rot90(labs[3], -1))
    assert np.array_equal(l_[4], labs[4][::-1, ::-1])
    assert np.array_equal(a, (l_ == 3).sum(axis=(1, 2)))
    # inputs untouched
    assert np.array_equal(imgs, _toy(5)[0])


def test_rotation_keeps_an_interior_disc_area_and_zero_fills_corners():
    s = 64
    yy, xx = np.mgrid[:s, :s]
    disc = ((yy - 31.5) ** 2 + (xx - 31.5) ** 2 < 14**2).astype(np.uint8) * 3
    imgs = np.full((1, s, s), 200, np.uint8)
    i, l_, a = apply_augment(imgs, disc[None], np.array([False]), np.array([False]), np.array([30.0]))
    assert abs(int(a[0]) - int((disc == 3).sum())) <= 0.03 * (disc == 3).sum()
    assert i[0, 0, 0] == 0 and i[0, s // 2, s // 2] == 200  # outside the rotated field: 0


def test_params_copy0_identity_probabilities_and_range():
    p = augment_params(500, 10, seed=3)
    assert p.flip.shape == (500, 10)
    assert not p.flip[:, 0].any() and not p.mirror[:, 0].any() and not p.angle[:, 0].any()
    rest = np.s_[:, 1:]
    for arr in (p.flip[rest], p.mirror[rest], p.angle[rest] != 0):
        assert 0.46 < arr.mean() < 0.54
    assert np.abs(p.angle).max() <= 45.0 and p.angle.min() < -40 and p.angle.max() > 40
    # slice i's parameters do not depend on how many slices there are; seeds differ
    q = augment_params(7, 10, seed=3)
    assert np.array_equal(q.angle, p.angle[:7])
    assert not np.array_equal(augment_params(7, 10, seed=4).angle, q.angle)


def test_augment_labeled_deterministic_and_equal_on_the_fly():
    imgs, labs = _toy(6)
    a = augment_labeled(imgs, labs, copies=5, seed=11, chunk=7)
    b = augment_labeled(imgs, labs, copies=5, seed=11)
    c = augment_labeled(imgs, labs, copies=5, seed=12)
    assert a[0].shape == (30, 32, 32) and a[0].dtype == np.uint8 and a[1].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert np.array_equal(a[0][::5], imgs) and np.array_equal(a[1][::5], labs)  # copy 0 = original
    aug = AugmentedSet(imgs, labs, copies=5, seed=11)
    assert len(aug) == 30
    ks = np.array([29, 3, 10, 0])
    on_the_fly = aug.batch(ks)
    for j in range(3):
        assert np.array_equal(on_the_fly[j], a[j][ks])


def test_torch_tensors_in_and_out():
    imgs, labs = _toy(3)
    ti, tl, ta = augment_labeled(torch.from_numpy(imgs), torch.from_numpy(labs), copies=4, seed=2)
    ni, nl, na = augment_labeled(imgs, labs, copies=4, seed=2)
    assert isinstance(ti, torch.Tensor) and ti.dtype == torch.uint8
    assert (
        np.array_equal(ti.numpy(), ni) and np.array_equal(tl.numpy(), nl) and np.array_equal(ta.numpy(), na)
    )
    fi, _, _ = augment_labeled(torch.from_numpy(imgs).float() / 255, torch.from_numpy(labs), copies=2, seed=2)
    assert fi.dtype == torch.float32 and float(fi.max()) <= 1.0


def test_on_prepared_labeled_slices(prepared_small):
    d = PreparedData.open(prepared_small)
    idx = d.indices(d.split(10).labeled)
    imgs, labs, area = augment_labeled(d.images[idx], d.labels[idx], copies=10, seed=0)
    assert imgs.shape == (len(idx) * 10, 64, 64)
    assert np.array_equal(area[::10], d.lv_area_px[idx])
    assert np.array_equal(area, (labs == 3).sum(axis=(1, 2)))
    # flips keep areas exactly, rotations nearly: every copy is within 15% (+5 px) of its original
    orig = np.repeat(d.lv_area_px[idx], 10)
    assert np.all(np.abs(area - orig) <= 0.15 * orig + 5)


def test_nearest_interpolation_resamples_the_image_like_the_label():
    """interp="nearest" (the authors: PIL's default) only copies pixel values; bilinear blends them."""
    _, labs = _toy(3, 32, seed=1)
    imgs = (labs * 60 + 10).astype(np.uint8)  # four grey levels
    flip, mirror, angle = np.zeros(3, bool), np.zeros(3, bool), np.array([17.0, -33.0, 41.0])
    near, lab_n, area_n = apply_augment(imgs, labs, flip, mirror, angle, interp="nearest")
    bil, lab_b, area_b = apply_augment(imgs, labs, flip, mirror, angle)
    assert np.array_equal(lab_n, lab_b) and np.array_equal(area_n, area_b)  # labels: nearest either way
    assert set(np.unique(near)) <= {0, 10, 70, 130, 190}
    assert not set(np.unique(bil)) <= {0, 10, 70, 130, 190}
    assert np.array_equal(near, (lab_n * 60 + 10) * (near > 0))  # the label's source pixel, or the zero fill
    aug = AugmentedSet(imgs, labs, copies=11, seed=0, interp="nearest")
    assert len(aug) == 33  # 11 samples per slice: the original (copy 0) and 10 transformed copies
    assert np.array_equal(aug.batch([0, 11, 22])[0], imgs)
