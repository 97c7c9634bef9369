"""A synthetic cardiac cine-MR cohort written in exactly the ACDC release layout (``suite phantom``).

Each patient is a short-axis stack (6–18 slices, slice spacing 5/6.5/7/10 mm, in-plane 1.2–1.8 mm, matrix
200–260) at end-diastole (ED) and end-systole (ES), with ACDC's labels (1 RV cavity, 2 myocardium, 3 LV
cavity). It is meant as a fair test bed for size-constrained semi-supervised segmentation, so what makes
real ACDC hard for a segmenter trained on few patients is modelled, not only noise:

- anatomy: the LV cavity is a truncated ellipsoid (widest at the base, closing at the apex, papillary
  muscles inside the cavity label as in ACDC), wrapped by a myocardium whose thickness varies with the angle
  (regional thinning in infarcts), a crescent RV on one side; basal slices above the valve show the atrium
  (bright, unlabeled) and slices past the apex show only myocardium or nothing;
- ED → ES: radial contraction + long-axis shortening (the base descends, so a basal ES slice may lose its
  LV label) with myocardial area conserved (the wall thickens); the ejection fraction comes from the group;
- groups (ACDC names) NOR, DCM (large cavity, thin wall, low EF), HCM (small cavity, thick wall, high EF),
  MINF (enlarged, regional thinning, low EF), RV (enlarged RV, low RV EF);
- patient-to-patient variation: body size, heart size, position, orientation (± mirror) and tilt of the
  long axis in the field of view, the field of view itself, tissue contrast, intensity scale;
- confounders: the RV blood pool as bright as the LV's, the descending aorta and atrium (bright discs),
  pericardial and subcutaneous fat, bright fluid blobs; lungs and liver;
- acquisition: partial-volume averaging across the slice thickness, in-plane blur, a smooth multiplicative
  bias field, Rician noise, int16 storage.

Patient ``k`` is a pure function of ``(seed, k)`` (``derive_seed``), so a cohort of 30 patients is the first
30 of the cohort of 100. Groups are interleaved (NOR, DCM, HCM, MINF, RV, NOR, …) by default so that every
prefix is balanced; ``group_order="acdc"`` assigns them in blocks of 20 as the real release does (001–020
DCM, 021–040 HCM, 041–060 MINF, 061–080 NOR, 081–100 RV), which matters for the paper's "first n training
patients" labeled subsets (with the authors' seed, the n = 5 labeled patients of real ACDC are all DCM). The
``_4d.nii.gz`` cine files are not written (the reader ignores them). See ``docs/phantom.md`` for how its
statistics compare with real ACDC.
"""

from __future__ import annotations

import json
import logging
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from suite.errors import InputError
from suite.seeding import derive_seed

log = logging.getLogger("suite.data.phantom")

PHANTOM_VERSION = 1
GROUPS = ("NOR", "DCM", "HCM", "MINF", "RV")
ACDC_BLOCK_ORDER = ("DCM", "HCM", "MINF", "NOR", "RV")
SLICE_SPACINGS = (5.0, 6.5, 7.0, 10.0)
SLICE_SPACING_P = (0.04, 0.06, 0.08, 0.82)

# per group: ED cavity radius at the base (mm), wall thickness (mm), LV ejection fraction, cavity length (mm),
# RV size factor, RV ejection fraction.  (mean, sd) or (low, high) ranges; see docs/phantom.md.
GROUP_PARAMS: dict[str, dict[str, tuple[float, float]]] = {
    "NOR": {
        "radius": (27.0, 2.0),
        "wall": (7.5, 0.8),
        "ef": (0.55, 0.70),
        "length": (89.0, 6.0),
        "rv_scale": (1.00, 0.07),
        "rv_ef": (0.45, 0.65),
    },
    "DCM": {
        "radius": (35.0, 3.0),
        "wall": (6.3, 0.8),
        "ef": (0.10, 0.38),
        "length": (104.0, 7.0),
        "rv_scale": (1.05, 0.10),
        "rv_ef": (0.25, 0.50),
    },
    "HCM": {
        "radius": (23.5, 2.2),
        "wall": (15.0, 2.5),
        "ef": (0.62, 0.80),
        "length": (84.0, 6.0),
        "rv_scale": (0.95, 0.07),
        "rv_ef": (0.50, 0.70),
    },
    "MINF": {
        "radius": (32.0, 3.0),
        "wall": (7.5, 1.0),
        "ef": (0.15, 0.40),
        "length": (99.0, 7.0),
        "rv_scale": (1.00, 0.10),
        "rv_ef": (0.35, 0.60),
    },
    "RV": {
        "radius": (26.5, 2.0),
        "wall": (7.5, 0.8),
        "ef": (0.50, 0.68),
        "length": (89.0, 6.0),
        "rv_scale": (1.55, 0.12),
        "rv_ef": (0.20, 0.45),
    },
}


@dataclass(frozen=True)
class PhantomSpec:
    """What ``suite phantom`` was asked for (written to ``phantom.json`` beside the patient folders)."""

    patients: int = 100
    seed: int = 0
    group_order: str = "interleaved"  # interleaved | acdc
    version: int = PHANTOM_VERSION


def patient_group(k: int, order: str = "interleaved") -> str:
    """The group of patient ``k`` (1-based)."""
    if order == "interleaved":
        return GROUPS[(k - 1) % len(GROUPS)]
    if order == "acdc":  # the release: 001-020 DCM, 021-040 HCM, 041-060 MINF, 061-080 NOR, 081-100 RV
        return ACDC_BLOCK_ORDER[((k - 1) // 20) % len(ACDC_BLOCK_ORDER)]
    raise InputError(f"--group-order {order!r}: unknown; choose interleaved or acdc")


# ------------------------------------------------------------------------------------------ one patient
def _prof(s: np.ndarray) -> np.ndarray:
    """Radius profile of the LV along its long axis: 1 at the base (s=0), 0 at the apex (s=1)."""
    s = np.clip(s, 0.0, 1.0)
    return np.sqrt(np.clip(1.0 - s**2.4, 0.0, 1.0))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int = 10) -> np.ndarray:
    """Smooth random field in [-1, 1] (bilinear upsampling of a coarse random grid)."""
    from scipy.ndimage import zoom

    coarse = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
    out = zoom(coarse, (shape[0] / cells, shape[1] / cells), order=1, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]]


def make_patient(k: int, seed: int, group: str) -> dict:
    """Generate patient ``k``: ED/ES images (int16) and labels (uint8), spacing and Info.cfg fields.

    Returns a dict with ``info`` (Info.cfg values), ``spacing`` (3 floats) and ``frames`` = {number:
    (image, label)}. A pure function of ``(k, seed, group)``.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(derive_seed(seed, "phantom", k))
    gp = GROUP_PARAMS[group]

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

    # ---- LV / RV geometry (mm, heart frame)
    def normal(key: str) -> float:
        m, s = gp[key]
        return float(rng.normal(m, s))

    def uniform(key: str) -> float:
        lo, hi = gp[key]
        return float(rng.uniform(lo, hi))

    radius = max(14.0, normal("radius") * body)
    wall = max(4.0, normal("wall"))
    length = max(55.0, normal("length") * body)
    ef = uniform("ef")
    rv_scale = max(0.7, normal("rv_scale"))
    rv_ef = uniform("rv_ef")
    ecc = float(rng.uniform(0.82, 1.0))  # cavity ellipticity
    ecc_angle = float(rng.uniform(0, np.pi))
    wall_var = rng.uniform(-0.15, 0.15, size=3)  # smooth angular wall-thickness variation
    infarct = None
    if group == "MINF":
        infarct = (
            float(rng.uniform(-np.pi, np.pi)),
            float(rng.uniform(0.6, 1.4)),
            float(rng.uniform(0.4, 0.6)),
        )
    if group == "HCM":  # asymmetric septal hypertrophy
        wall_var = wall_var + np.array([-0.35, 0.0, 0.0])  # cos(phi) = -1 on the septal (RV, -u) side
    pap = rng.uniform(-np.pi, np.pi) + np.array([0.0, rng.uniform(1.8, 2.6)])
    rv_dir = float(rng.normal(0.0, 0.15))  # RV side, in the heart frame (septum towards +u)

    # ED -> ES: long-axis shortening fl, radial factor so that ESV/EDV = 1 - EF
    fl = (1.0 - ef) ** 0.18
    fr = math.sqrt((1.0 - ef) / fl)
    rv_f = (1.0 - rv_ef) ** 0.25  # the crescent area scales about as rv_f ** 4 (measured)

    # ---- pose in the field of view
    fov_x, fov_y = nx * sx, ny * sy
    theta = float(rng.uniform(-np.pi, np.pi)) if rng.random() < 0.3 else float(rng.normal(-2.4, 0.45))
    mirror = rng.random() < 0.2
    centre = np.array([rng.uniform(-0.17, 0.17) * fov_x, rng.uniform(-0.17, 0.17) * fov_y])
    tilt = rng.normal(0.0, 0.18, size=2)  # centre drift (mm per mm along the long axis)
    body_c = centre * rng.uniform(0.3, 0.7) + rng.normal(0, 8, size=2)
    body_ax = np.array(
        [rng.uniform(0.36, 0.47) * max(fov_x, fov_y), rng.uniform(0.28, 0.36) * max(fov_x, fov_y)]
    )
    body_ax = np.minimum(body_ax, [0.6 * fov_x + 40, 0.6 * fov_y + 40])
    body_rot = float(rng.normal(0, 0.15))
    fat_w = float(rng.uniform(6, 20))

    # ---- contrast (blood = 1) and scale
    c_myo = float(rng.uniform(0.16, 0.42))
    c_rv = float(rng.uniform(0.88, 1.08))
    c_tissue = float(rng.uniform(0.22, 0.45))
    c_fat = float(rng.uniform(0.62, 1.0))
    c_lung = float(rng.uniform(0.02, 0.09))
    c_liver = float(rng.uniform(0.30, 0.50))
    c_aorta = float(rng.uniform(0.75, 1.05))
    scale = float(np.exp(rng.uniform(np.log(250), np.log(3000))))
    noise_sd = float(rng.uniform(0.025, 0.09))
    blur = float(rng.uniform(0.4, 1.0))
    bias = rng.uniform(-0.6, 0.6, size=4)
    n_blobs = int(rng.integers(2, 6))
    blobs = [
        (
            rng.uniform(-0.35, 0.35, size=2) * [fov_x, fov_y],
            float(rng.uniform(6, 16)),
            float(rng.uniform(0.65, 1.1)),
            float(rng.uniform(-40, 120)),
        )
        for _ in range(n_blobs)
    ]

    # slice positions t (mm from the ED base plane along the long axis, towards the apex)
    outer_len = length + wall * 0.8
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
    # environment (z-independent part)
    cb, sb = math.cos(body_rot), math.sin(body_rot)
    bu = ((X - body_c[0]) * cb + (Y - body_c[1]) * sb) / body_ax[0]
    bv = (-(X - body_c[0]) * sb + (Y - body_c[1]) * cb) / body_ax[1]
    br = np.sqrt(bu**2 + bv**2)
    inner = np.sqrt(
        (bu * body_ax[0] / (body_ax[0] - fat_w)) ** 2 + (bv * body_ax[1] / (body_ax[1] - fat_w)) ** 2
    )
    env = np.zeros_like(X)
    env[br < 1] = c_fat
    env[inner < 1] = c_tissue
    texture = 1.0 + 0.12 * _smooth_noise(rng, (nx, ny), 14)
    # lungs either side of the heart, along the heart's lateral direction
    ct, st = math.cos(theta), math.sin(theta)
    lat = np.array([-st, ct])
    for side in (-1, 1):
        lc = centre + side * lat * (radius + wall) * rng.uniform(1.8, 2.4) + rng.normal(0, 5, 2)
        la = np.array([rng.uniform(0.9, 1.3), rng.uniform(1.6, 2.2)]) * (radius + wall)
        lu = ((X - lc[0]) * ct + (Y - lc[1]) * st) / la[0]
        lv = (-(X - lc[0]) * st + (Y - lc[1]) * ct) / la[1]
        env[(lu**2 + lv**2 < 1) & (inner < 1)] = c_lung
    # descending aorta and spine behind the heart
    post = np.array([ct, st])  # the heart frame's +u axis
    aorta_c = centre + post * (radius + wall) * rng.uniform(1.5, 2.0) + lat * rng.normal(0, 6)
    aorta_r = float(rng.uniform(9, 13))
    spine_c = aorta_c + post * rng.uniform(18, 26) + lat * rng.uniform(-15, 15)
    env[(X - spine_c[0]) ** 2 + (Y - spine_c[1]) ** 2 < rng.uniform(14, 19) ** 2] = c_tissue * 1.3
    env[(X - aorta_c[0]) ** 2 + (Y - aorta_c[1]) ** 2 < aorta_r**2] = c_aorta
    for bc, br_, bi, _ in blobs:
        env[((X - bc[0]) ** 2 + (Y - bc[1]) ** 2 < br_**2) & (inner < 1)] = bi
    # liver beside the apex (used for the apical slices only)
    lc = (
        centre
        + post * (radius + wall) * rng.uniform(0.6, 1.4)
        + lat * (radius + wall) * rng.uniform(1.0, 1.8)
    )
    hu = ((X - lc[0]) * ct + (Y - lc[1]) * st) / ((radius + wall) * rng.uniform(1.5, 2.0))
    hv = (-(X - lc[0]) * st + (Y - lc[1]) * ct) / ((radius + wall) * rng.uniform(2.0, 3.0))
    liver = (hu**2 + hv**2 < 1) & (inner < 1)
    env_apex = env.copy()
    env_apex[liver] = c_liver
    env *= texture
    env_apex *= texture
    half = (radius + wall) * (0.9 + 1.2 * max(1.0, rv_scale))
    bias_field = np.exp(
        bias[0] * X / fov_x
        + bias[1] * Y / fov_y
        + bias[2] * ((X / fov_x) ** 2 + (Y / fov_y) ** 2) * 2
        + bias[3] * X * Y / (fov_x * fov_y) * 2
    )

    frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for fnum, es in ((1, False), (es_frame, True)):
        fr_, fl_ = (fr, fl) if es else (1.0, 1.0)
        base_shift = (1.0 - fl_) * length * 0.9  # the base plane descends at ES
        shift = rng.normal(0, 1.5, size=2) if es else np.zeros(2)
        sub = np.array([-1 / 3, 0.0, 1 / 3]) * thickness
        img = np.zeros((nx, ny, nz), np.float32)
        lab = np.zeros((nx, ny, nz), np.uint8)
        for zi, t in enumerate(ts):
            base_env = env_apex if (t - base_shift) / (length * fl_) > 0.55 else env
            acc = base_env * np.float32(len(sub))
            for si, dt in enumerate(sub):
                tt = t + dt
                # render the heart only inside a box around it (10x fewer pixels than the field of view)
                c = centre + shift + tilt * tt
                i0, i1 = np.searchsorted(gx, [c[0] - half, c[0] + half])
                j0, j1 = np.searchsorted(gy, [c[1] - half, c[1] + half])
                if i1 <= i0 or j1 <= j0:
                    continue
                box = (slice(i0, i1), slice(j0, j1))
                s_img, s_lab = _render_slice(
                    X[box],
                    Y[box],
                    base_env[box],
                    tt,
                    es=es,
                    fr=fr_,
                    fl=fl_,
                    base_shift=base_shift,
                    centre=centre + shift,
                    tilt=tilt,
                    theta=theta,
                    mirror=mirror,
                    radius=radius,
                    wall=wall,
                    length=length,
                    ecc=ecc,
                    ecc_angle=ecc_angle,
                    wall_var=wall_var,
                    infarct=infarct,
                    pap=pap,
                    rv_dir=rv_dir,
                    rv_scale=rv_scale,
                    rv_f=rv_f if es else 1.0,
                    c_myo=c_myo,
                    c_rv=c_rv,
                    c_aorta=c_aorta,
                    want_label=(si == 1),
                )
                acc[box] += s_img - base_env[box]
                if si == 1:
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


def _render_slice(
    X,
    Y,
    env,
    t,
    *,
    es,
    fr,
    fl,
    base_shift,
    centre,
    tilt,
    theta,
    mirror,
    radius,
    wall,
    length,
    ecc,
    ecc_angle,
    wall_var,
    infarct,
    pap,
    rv_dir,
    rv_scale,
    rv_f,
    c_myo,
    c_rv,
    c_aorta,
    want_label,
):
    """One sub-slice at depth ``t`` (mm from the ED base plane): intensity (blood = 1) and labels."""
    img = env.copy()
    c = centre + tilt * t
    ct, st = math.cos(theta), math.sin(theta)
    dx, dy = X - c[0], Y - c[1]
    u = dx * ct + dy * st
    v = -dx * st + dy * ct
    if mirror:
        v = -v
    rho = np.sqrt(u * u + v * v)
    # depth inside the (contracted) LV: 0 at the base plane, 1 at the cavity apex
    tl = t - base_shift
    len_c = length * fl
    s_cav = tl / len_c
    s_out = tl / (len_c + wall * 0.8)
    lab = np.zeros(X.shape, np.uint8) if want_label else None
    if tl >= 0:
        # angle functions without trig calls: cos(phi) = u / rho, sin(phi) = v / rho
        inv = 1.0 / np.maximum(rho, 1e-6)
        cphi, sphi = u * inv, v * inv
        ce, se = math.cos(ecc_angle), math.sin(ecc_angle)
        ca, sa = cphi * ce + sphi * se, sphi * ce - cphi * se  # cos/sin(phi - ecc_angle)
        a, b = radius * fr, radius * fr * ecc
        r_ell = a * b / np.sqrt((b * ca) ** 2 + (a * sa) ** 2)
        w = wall * (1 + wall_var[0] * cphi + wall_var[1] * (cphi * cphi - sphi * sphi) + wall_var[2] * sphi)
        if infarct is not None:  # von Mises bump of regional thinning centred on infarct[0]
            cd = cphi * math.cos(infarct[0]) + sphi * math.sin(infarct[0])
            kappa = 2.0 / infarct[1] ** 2
            w = w * (1 - infarct[2] * np.exp(kappa * (cd - 1)))
        if es:  # myocardial area conserved: thicker wall at ES
            r_out_ed = r_ell / fr + w
            w = np.sqrt(np.maximum((r_out_ed**2 - (r_ell / fr) ** 2) / fl + r_ell**2, 0)) - r_ell
        prof_c = float(_prof(np.array(s_cav))) if s_cav < 1 else 0.0
        r_c = r_ell * prof_c
        r_o = (r_ell + w) * float(_prof(np.array(s_out)))
        myo = rho < r_o
        cav = rho < r_c
        # RV: a crescent on the septal side, shorter than the LV
        rv_len = length * 0.85
        if t < rv_len:
            # the RV is sized from ED geometry and contracts by rv_f (its own ejection fraction),
            # independently of the LV: an ellipse on the anterior (-u) side reaching ``thick`` mm beyond the
            # LV's outer wall (+ septum gap), long axis tangential; minus the LV it is a crescent wrapping the
            # septum
            rvp = float(_prof(np.array(max(t, 0.0) / rv_len))) * rv_scale
            outer_ed, outer_now = radius + wall, radius * fr + wall
            thick_ed = outer_ed * 0.4 * rvp
            thick = thick_ed * rv_f
            sept = cphi < -0.95  # the LV's outer wall on the septal side (thick in HCM, thickening at ES)
            r_sept = float(r_o[sept].max()) if sept.any() else outer_now
            far, near = r_sept + 2.5 + thick, 0.1 * outer_now
            ru, rt = (far - near) / 2, (outer_ed + thick_ed) * 1.05 * rv_f
            d = (far + near) / 2
            cr, sr = math.cos(rv_dir), math.sin(rv_dir)
            uu = (u + d * cr) * cr + (v + d * sr) * sr
            vv = -(u + d * cr) * sr + (v + d * sr) * cr
            rv = (uu / max(ru, 1e-3)) ** 2 + (vv / max(rt, 1e-3)) ** 2 < 1
            rv &= rho >= r_o + 2.5
            img[rv] = c_rv
            if lab is not None:
                lab[rv] = 1
        img[myo] = c_myo
        img[cav] = 1.0
        # papillary muscles: dark, inside the cavity label (as in ACDC)
        if 0.15 < s_cav < 0.8:
            pr = radius * 0.16 * (1.25 if es else 1.0)
            for pa in pap:
                pc = radius * fr * prof_c * 0.62
                pu, pv = pc * math.cos(pa), pc * math.sin(pa)
                pm = ((u - pu) ** 2 + (v - pv) ** 2 < pr**2) & cav
                img[pm] = c_myo * 1.1
        if lab is not None:
            lab[myo] = 2
            lab[cav] = 3
    else:
        # above the valve: left atrium (bright, unlabeled) and the aortic root
        la = rho < radius * 0.85
        img[la] = 0.95
        ar = (u + radius * 0.2) ** 2 + (v - radius * 0.9) ** 2 < (radius * 0.45) ** 2
        img[ar] = c_aorta
    return img, lab


# ------------------------------------------------------------------------------------------ cohort
def _write_patient(args: tuple[int, int, str, str]) -> str:
    import nibabel as nib

    k, seed, group, out = args
    pid = f"patient{k:03d}"
    p = make_patient(k, seed, group)
    folder = Path(out) / pid
    folder.mkdir(parents=True, exist_ok=True)
    sx, sy, sz = p["spacing"]
    affine = np.diag([sx, sy, sz, 1.0])
    for number, (img, lab) in p["frames"].items():
        for arr, suffix, dtype in ((img, "", np.int16), (lab, "_gt", np.uint8)):
            nii = nib.Nifti1Image(arr, affine)
            nii.header.set_data_dtype(dtype)
            nii.header.set_zooms((sx, sy, sz))
            nii.header.set_xyzt_units("mm", "sec")
            nib.save(nii, str(folder / f"{pid}_frame{number:02d}{suffix}.nii.gz"))
    info = p["info"]
    (folder / "Info.cfg").write_text("".join(f"{k_}: {v}\n" for k_, v in info.items()))
    return pid


def write_cohort(
    out: str | os.PathLike,
    patients: int = 100,
    seed: int = 0,
    group_order: str = "interleaved",
    force: bool = False,
    workers: int | None = None,
) -> Path:
    """Write a phantom cohort to ``out`` atomically (built in a temporary folder beside it, then renamed).

    If ``out`` already holds the same cohort (same ``phantom.json``) nothing is done; a different cohort or
    any other folder is an :class:`InputError` unless ``force`` (which only replaces an earlier phantom).
    """
    from suite.atomic import atomic_dir, write_json_atomic

    out = Path(out)
    if patients < 1 or patients > 999:
        raise InputError(f"--patients {patients}: must be between 1 and 999")
    spec = PhantomSpec(patients=patients, seed=seed, group_order=group_order)
    groups = [patient_group(k, group_order) for k in range(1, patients + 1)]
    marker = out / "phantom.json"
    if out.exists():
        if marker.is_file():
            try:
                old = json.loads(marker.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            if old == asdict(spec):
                log.info(
                    "phantom %s already holds this cohort (%d patients, seed %d): skipped",
                    out,
                    patients,
                    seed,
                )
                return out
            if not force:
                raise InputError(
                    f"{out}: holds a different phantom cohort ({old}); use --force to replace it "
                    "or choose another folder"
                )
        elif any(out.iterdir()):
            raise InputError(f"{out}: exists and is not a phantom cohort; choose a new or empty folder")
    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(k, seed, groups[k - 1], "") for k in range(1, patients + 1)]
    with atomic_dir(out) as tmp:
        jobs = [(k, s, g, str(tmp)) for k, s, g, _ in jobs]
        if workers > 1 and patients > 2:
            import multiprocessing as mp

            # forkserver/spawn: never fork a caller that may hold threads (torch, Ray, gRPC)
            ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                list(ex.map(_write_patient, jobs, chunksize=max(1, patients // (4 * workers))))
        else:
            for j in jobs:
                _write_patient(j)
        write_json_atomic(tmp / "phantom.json", asdict(spec))
    log.info("wrote %d phantom patients to %s", patients, out)
    return out
