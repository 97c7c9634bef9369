"""One phantom patient (``make_patient``): subject, field of view, surroundings and image formation.

The subject's height and weight scale the heart; the acquisition draws the matrix, pixel size, slice spacing
and thickness, the frame numbers, the pose of the heart in the field of view and the tissue contrast. Around
the heart: torso outline, subcutaneous fat, lungs, spine, descending aorta, bright fluid blobs, and the liver
beside the apex. Each slice averages three sub-slices across its thickness (partial volume), then in-plane
blur, a smooth multiplicative bias field, Rician noise and int16 storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from suite.data.phantom.anatomy import (
    Contrast,
    Heart,
    Pose,
    draw_contrast,
    draw_heart,
    draw_pose,
    render_slice,
)
from suite.seeding import derive_seed

SLICE_SPACINGS = (5.0, 6.5, 7.0, 10.0)
SLICE_SPACING_P = (0.04, 0.06, 0.08, 0.82)

Blob = tuple[np.ndarray, float, float, float]  # centre (mm), radius (mm), intensity, an unused draw


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: int = 10) -> np.ndarray:
    """Smooth random field in [-1, 1] (bilinear upsampling of a coarse random grid)."""
    from scipy.ndimage import zoom

    coarse = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
    out = zoom(coarse, (shape[0] / cells, shape[1] / cells), order=1, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]]


@dataclass(frozen=True)
class Torso:
    """The body outline: an ellipse (mm) lined with subcutaneous fat."""

    centre: np.ndarray
    axes: np.ndarray
    rotation: float
    fat: float  # fat layer width (mm)


def _draw_torso(rng: np.random.Generator, pose: Pose, fov_x: float, fov_y: float) -> Torso:
    centre = pose.centre * rng.uniform(0.3, 0.7) + rng.normal(0, 8, size=2)
    axes = np.array(
        [rng.uniform(0.36, 0.47) * max(fov_x, fov_y), rng.uniform(0.28, 0.36) * max(fov_x, fov_y)]
    )
    axes = np.minimum(axes, [0.6 * fov_x + 40, 0.6 * fov_y + 40])
    rotation = float(rng.normal(0, 0.15))
    fat = float(rng.uniform(6, 20))
    return Torso(centre=centre, axes=axes, rotation=rotation, fat=fat)


def _surroundings(
    rng: np.random.Generator,
    X: np.ndarray,
    Y: np.ndarray,
    heart: Heart,
    pose: Pose,
    contrast: Contrast,
    torso: Torso,
    blobs: list[Blob],
) -> tuple[np.ndarray, np.ndarray]:
    """What lies around the heart (the same at every depth), textured: for the basal and mid slices, and for
    the apical slices (the liver added)."""
    # torso: fat under the skin, tissue inside
    cb, sb = math.cos(torso.rotation), math.sin(torso.rotation)
    bu = ((X - torso.centre[0]) * cb + (Y - torso.centre[1]) * sb) / torso.axes[0]
    bv = (-(X - torso.centre[0]) * sb + (Y - torso.centre[1]) * cb) / torso.axes[1]
    br = np.sqrt(bu**2 + bv**2)
    inner = np.sqrt(
        (bu * torso.axes[0] / (torso.axes[0] - torso.fat)) ** 2
        + (bv * torso.axes[1] / (torso.axes[1] - torso.fat)) ** 2
    )
    env = np.zeros_like(X)
    env[br < 1] = contrast.fat
    env[inner < 1] = contrast.tissue
    texture = 1.0 + 0.12 * _smooth_noise(rng, X.shape, 14)
    centre, heart_r = pose.centre, heart.radius + heart.wall
    # lungs either side of the heart, along the heart's lateral direction
    ct, st = math.cos(pose.theta), math.sin(pose.theta)
    lat = np.array([-st, ct])
    for side in (-1, 1):
        lc = centre + side * lat * heart_r * rng.uniform(1.8, 2.4) + rng.normal(0, 5, 2)
        la = np.array([rng.uniform(0.9, 1.3), rng.uniform(1.6, 2.2)]) * heart_r
        lu = ((X - lc[0]) * ct + (Y - lc[1]) * st) / la[0]
        lv = (-(X - lc[0]) * st + (Y - lc[1]) * ct) / la[1]
        env[(lu**2 + lv**2 < 1) & (inner < 1)] = contrast.lung
    # descending aorta and spine behind the heart
    post = np.array([ct, st])  # the heart frame's +u axis
    aorta_c = centre + post * heart_r * rng.uniform(1.5, 2.0) + lat * rng.normal(0, 6)
    aorta_r = float(rng.uniform(9, 13))
    spine_c = aorta_c + post * rng.uniform(18, 26) + lat * rng.uniform(-15, 15)
    env[(X - spine_c[0]) ** 2 + (Y - spine_c[1]) ** 2 < rng.uniform(14, 19) ** 2] = contrast.tissue * 1.3
    env[(X - aorta_c[0]) ** 2 + (Y - aorta_c[1]) ** 2 < aorta_r**2] = contrast.aorta
    for bc, br_, bi, _ in blobs:
        env[((X - bc[0]) ** 2 + (Y - bc[1]) ** 2 < br_**2) & (inner < 1)] = bi
    # liver beside the apex (used for the apical slices only)
    lc = centre + post * heart_r * rng.uniform(0.6, 1.4) + lat * heart_r * rng.uniform(1.0, 1.8)
    hu = ((X - lc[0]) * ct + (Y - lc[1]) * st) / (heart_r * rng.uniform(1.5, 2.0))
    hv = (-(X - lc[0]) * st + (Y - lc[1]) * ct) / (heart_r * rng.uniform(2.0, 3.0))
    liver = (hu**2 + hv**2 < 1) & (inner < 1)
    env_apex = env.copy()
    env_apex[liver] = contrast.liver
    env *= texture
    env_apex *= texture
    return env, env_apex


def make_patient(k: int, seed: int, group: str) -> dict:
    """Generate patient ``k``: ED/ES images (int16) and labels (uint8), spacing and Info.cfg fields.

    Returns a dict with ``info`` (Info.cfg values), ``spacing`` (3 floats) and ``frames`` = {number:
    (image, label)}. A pure function of ``(k, seed, group)``.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(derive_seed(seed, "phantom", k))

    # ---- subject and acquisition
    height = float(np.clip(rng.normal(171, 9), 148, 198))
    weight = float(np.clip(rng.normal(76, 14), 45, 135))
    body = (height / 171.0) ** 0.6 * (weight / 76.0) ** 0.25  # heart-size factor from body size
    nx = int(rng.integers(100, 131)) * 2  # 200..260
    ny = int(rng.integers(100, 131)) * 2 if rng.random() < 0.5 else nx
    sx = float(rng.uniform(1.2, 1.8))
    sy = sx
    dz = float(rng.choice(SLICE_SPACINGS, p=SLICE_SPACING_P))
    thickness = min(dz, float(rng.uniform(5.0, 8.0)))
    heart = draw_heart(rng, group, body)

    # ---- pose in the field of view, torso
    fov_x, fov_y = nx * sx, ny * sy
    pose = draw_pose(rng, fov_x, fov_y)
    torso = _draw_torso(rng, pose, fov_x, fov_y)

    # ---- contrast (blood = 1) and scale
    contrast = draw_contrast(rng)
    scale = float(np.exp(rng.uniform(np.log(250), np.log(3000))))
    noise_sd = float(rng.uniform(0.025, 0.09))
    blur = float(rng.uniform(0.4, 1.0))
    bias = rng.uniform(-0.6, 0.6, size=4)
    n_blobs = int(rng.integers(2, 6))
    blobs: list[Blob] = [
        (
            rng.uniform(-0.35, 0.35, size=2) * [fov_x, fov_y],
            float(rng.uniform(6, 16)),
            float(rng.uniform(0.65, 1.1)),
            float(rng.uniform(-40, 120)),
        )
        for _ in range(n_blobs)
    ]

    # slice positions t (mm from the ED base plane along the long axis, towards the apex)
    outer_len = heart.length + heart.wall * 0.8
    t0 = float(rng.uniform(-0.35, 0.3)) * dz
    nz = int(math.ceil((outer_len - t0) / dz)) - int(rng.random() < 0.4)  # often stops before the apex cap
    nz = int(np.clip(nz, 6, 18))
    ts = t0 + dz * np.arange(nz)

    # frame numbers as in ACDC: 28-40 frames per cycle, ED is frame 1, ES about a third into the cycle
    nb_frame = int(rng.integers(28, 41))
    es_frame = int(np.clip(round(nb_frame * rng.uniform(0.30, 0.45)), 2, nb_frame))

    # ---- grids
    gx = (np.arange(nx, dtype=np.float32) - nx / 2 + 0.5) * sx
    gy = (np.arange(ny, dtype=np.float32) - ny / 2 + 0.5) * sy
    X, Y = np.meshgrid(gx, gy, indexing="ij")
    env, env_apex = _surroundings(rng, X, Y, heart, pose, contrast, torso, blobs)
    half = (heart.radius + heart.wall) * (0.9 + 1.2 * max(1.0, heart.rv_scale))
    bias_field = np.exp(
        bias[0] * X / fov_x
        + bias[1] * Y / fov_y
        + bias[2] * ((X / fov_x) ** 2 + (Y / fov_y) ** 2) * 2
        + bias[3] * X * Y / (fov_x * fov_y) * 2
    )

    frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for fnum, es in ((1, False), (es_frame, True)):
        fl_ = heart.contraction(es)[1]
        base_shift = heart.base_shift(es)  # the base plane descends at ES
        shift = rng.normal(0, 1.5, size=2) if es else np.zeros(2)
        sub = np.array([-1 / 3, 0.0, 1 / 3]) * thickness
        img = np.zeros((nx, ny, nz), np.float32)
        lab = np.zeros((nx, ny, nz), np.uint8)
        for zi, t in enumerate(ts):
            base_env = env_apex if (t - base_shift) / (heart.length * fl_) > 0.55 else env
            acc = base_env * np.float32(len(sub))
            for si, dt in enumerate(sub):
                tt = t + dt
                # render the heart only inside a box around it (10x fewer pixels than the field of view)
                c = pose.centre + shift + pose.tilt * tt
                i0, i1 = np.searchsorted(gx, [c[0] - half, c[0] + half])
                j0, j1 = np.searchsorted(gy, [c[1] - half, c[1] + half])
                if i1 <= i0 or j1 <= j0:
                    continue
                box = (slice(i0, i1), slice(j0, j1))
                s_img, s_lab = render_slice(
                    heart,
                    pose,
                    contrast,
                    X[box],
                    Y[box],
                    base_env[box],
                    tt,
                    es=es,
                    shift=shift,
                    want_label=(si == 1),
                )
                acc[box] += s_img - base_env[box]
                if s_lab is not None:  # the middle sub-slice's labels are the slice's
                    lab[box + (zi,)] = s_lab
            img[:, :, zi] = gaussian_filter(acc / len(sub), blur)
        img *= bias_field[:, :, None]
        n1 = rng.standard_normal(size=img.shape, dtype=np.float32) * noise_sd
        n2 = rng.standard_normal(size=img.shape, dtype=np.float32) * noise_sd
        img = np.sqrt((img + n1) ** 2 + n2**2) * scale
        frames[fnum] = (np.clip(np.rint(img), 0, 32767).astype(np.int16), lab)

    info = {
        "ED": 1,
        "ES": es_frame,
        "Group": group,
        "Height": round(height, 1),
        "NbFrame": nb_frame,
        "Weight": round(weight, 1),
    }
    return {"info": info, "spacing": (sx, sy, dz), "frames": frames}
