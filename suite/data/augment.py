"""The size regressor's augmentation (paper §4.1): each labeled slice ×``copies``.

As in the authors' ``utils.augment`` (``ImageOps.flip``, ``ImageOps.mirror``, ``rotate(uniform(-45, 45))``),
each augmented copy independently gets a vertical flip (p = 0.5), a mirror (p = 0.5) and a rotation about the
image centre by an angle uniform in [-45°, 45°] (p = 0.5); the LV area is recomputed from the transformed
label. Copy 0 of every slice is the original and counts as one of the ``copies``: ``copies = 10`` makes the
training set 10 times larger, as the paper says (the original and 9 transformed copies); the authors'
``--n_aug 10`` writes the original plus 10, i.e. ``copies = 11``. The label is resampled with nearest
neighbour, the image bilinearly (``interp="bilinear"``, the default) or with nearest neighbour
(``interp="nearest"``: the authors, PIL's default for both); outside the rotated field is 0.

Deterministic: the parameters of every (slice, copy) are drawn once from ``derive_seed(seed, "reg-augment")``,
so the augmented set is a fixed, "offline" set like the authors' — whether it is materialised at once
(:func:`augment_labeled`) or produced batch by batch (:class:`AugmentedSet`, the default for training:
no ×10 memory; the two give identical arrays). All transforms of a batch are one ``grid_sample`` call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from suite.data.acdc import LV_LABEL
from suite.seeding import numpy_rng

MAX_ANGLE = 45.0
INTERPOLATIONS = ("bilinear", "nearest")


@dataclass(frozen=True)
class AugmentParams:
    """Per (slice, copy) transform parameters, shape ``(n, copies)`` each; copy 0 is the identity."""

    flip: np.ndarray  # bool: vertical flip (rows reversed), ImageOps.flip
    mirror: np.ndarray  # bool: horizontal mirror (columns reversed), ImageOps.mirror
    angle: np.ndarray  # float degrees, counter-clockwise as displayed (PIL); 0 where not rotated


def augment_params(
    n: int, copies: int, seed: int, p: float = 0.5, max_angle: float = MAX_ANGLE
) -> AugmentParams:
    """Draw the parameters of ``n`` slices × ``copies`` (slice ``i``'s do not depend on ``n``)."""
    if copies < 1:
        raise ValueError(f"copies={copies}: must be >= 1")
    u = numpy_rng(seed, "reg-augment").random((n, copies, 4))
    flip = u[..., 0] < p
    mirror = u[..., 1] < p
    rot = u[..., 2] < p
    angle = np.where(rot, (u[..., 3] * 2.0 - 1.0) * max_angle, 0.0)
    flip[:, 0] = mirror[:, 0] = False
    angle[:, 0] = 0.0
    return AugmentParams(flip, mirror, angle)


def _theta(flip: np.ndarray, mirror: np.ndarray, angle: np.ndarray, h: int, w: int):
    """Affine matrices (B, 2, 3) for ``F.affine_grid``: output pixel -> input pixel, in normalised units."""
    import torch

    a = np.deg2rad(angle.astype(np.float64))
    c, s = np.cos(a), np.sin(a)
    # sampling matrix of a counter-clockwise rotation as displayed (PIL's convention; rows go down), with the
    # aspect ratio of normalised coordinates
    r = np.stack([np.stack([c, -s * h / w], -1), np.stack([s * w / h, c], -1)], -2)  # (B, 2, 2)
    d = np.stack([np.where(mirror, -1.0, 1.0), np.where(flip, -1.0, 1.0)], -1)  # x: mirror, y: flip
    m = d[:, :, None] * r
    theta = np.concatenate([m, np.zeros((len(a), 2, 1))], axis=2)
    return torch.from_numpy(theta.astype(np.float32))


def _affine_grid(theta, h: int, w: int):
    """``F.affine_grid(theta, (B, 1, h, w), align_corners=False)`` computed elementwise (no batched GEMM,
    which is slow on a busy CPU)."""
    import torch

    xs = (torch.arange(w, dtype=torch.float32, device=theta.device) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=torch.float32, device=theta.device) * 2 + 1) / h - 1
    t = theta[:, :, :, None, None]  # (B, 2, 3, 1, 1)
    x, y = xs[None, None, :], ys[None, :, None]
    gx = t[:, 0, 0] * x + t[:, 0, 1] * y + t[:, 0, 2]
    gy = t[:, 1, 0] * x + t[:, 1, 1] * y + t[:, 1, 2]
    return torch.stack([gx, gy], dim=-1)  # (B, h, w, 2)


def apply_augment(
    images, labels, flip: np.ndarray, mirror: np.ndarray, angle: np.ndarray, interp: str = "bilinear"
):
    """Transform a batch ``(B, H, W)`` (NumPy uint8 or torch tensors) with per-sample parameters (B,).

    ``interp`` resamples the image (``bilinear`` or ``nearest``); the label is always nearest.

    Returns ``(images, labels, lv_area)`` of the input kind (NumPy in -> NumPy uint8 out; torch in -> torch
    out on the input's device, images float if they were float) and the LV pixel count of each new label.
    """
    import torch
    import torch.nn.functional as F

    if interp not in INTERPOLATIONS:
        raise ValueError(f"interp={interp!r}: must be one of {', '.join(INTERPOLATIONS)}")
    is_np = isinstance(images, np.ndarray)
    img_t = torch.from_numpy(np.array(images, copy=True)) if is_np else images
    lab_t = torch.from_numpy(np.array(labels, copy=True)) if is_np else labels
    b, h, w = img_t.shape
    img_dtype = img_t.dtype
    out_img = img_t if is_np else img_t.clone()
    out_lab = lab_t if is_np else lab_t.clone()
    flip, mirror, angle = (np.asarray(x) for x in (flip, mirror, angle))
    todo = np.flatnonzero(flip | mirror | (angle != 0))
    if todo.size:
        idx = torch.from_numpy(todo).to(img_t.device)
        theta = _theta(flip[todo], mirror[todo], angle[todo], h, w).to(img_t.device)
        grid = _affine_grid(theta, h, w)
        src_i = img_t.index_select(0, idx).unsqueeze(1).float()
        src_l = lab_t.index_select(0, idx).unsqueeze(1).float()
        new_i = F.grid_sample(src_i, grid, mode=interp, padding_mode="zeros", align_corners=False)[:, 0]
        new_l = F.grid_sample(src_l, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
        if img_dtype == torch.uint8:
            new_i = new_i.round().clamp_(0, 255)
        out_img[idx] = new_i.to(img_dtype)
        out_lab[idx] = new_l.round().to(lab_t.dtype)
    area = (out_lab == LV_LABEL).sum(dim=(1, 2))
    if is_np:
        return out_img.numpy(), out_lab.numpy(), area.numpy().astype(np.int64)
    return out_img, out_lab, area


class AugmentedSet:
    """The fixed augmented set of ``n`` labeled slices × ``copies``, produced batch by batch (no ×copies
    memory).

    Sample ``k`` is copy ``k % copies`` of slice ``k // copies`` (copy 0 = the original). ``batch(ks)``
    returns ``(images, labels, lv_area)`` for those samples; the same ``ks`` always give the same arrays.
    ``interp`` resamples the images (see :func:`apply_augment`).
    """

    def __init__(self, images, labels, copies: int, seed: int, interp: str = "bilinear"):
        self.images, self.labels, self.copies, self.seed = images, labels, int(copies), int(seed)
        self.interp = interp
        self.params = augment_params(len(images), self.copies, self.seed)

    def __len__(self) -> int:
        return len(self.images) * self.copies

    def batch(self, ks):
        ks = np.asarray(ks, dtype=np.int64)
        si, ci = ks // self.copies, ks % self.copies
        if isinstance(self.images, np.ndarray):
            imgs, labs = np.asarray(self.images[si]), np.asarray(self.labels[si])
        else:
            import torch

            t = torch.from_numpy(si).to(self.images.device)
            imgs, labs = self.images.index_select(0, t), self.labels.index_select(0, t)
        p = self.params
        return apply_augment(imgs, labs, p.flip[si, ci], p.mirror[si, ci], p.angle[si, ci], self.interp)


def augment_labeled(images, labels, copies: int, seed: int, chunk: int = 256, interp: str = "bilinear"):
    """Materialise the whole augmented set: ``(images, labels, lv_area)`` with ``len(images) * copies`` rows.

    Row ``i * copies + c`` is copy ``c`` of slice ``i`` (copy 0 = the original). Works on NumPy uint8 arrays
    or torch tensors (returns the same kind).
    """
    aug = AugmentedSet(images, labels, copies, seed, interp)
    parts = [aug.batch(np.arange(k, min(k + chunk, len(aug)))) for k in range(0, len(aug), chunk)]
    if isinstance(images, np.ndarray):
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))
    import torch

    return tuple(torch.cat([p[j] for p in parts]) for j in range(3))
