"""The phantom's heart: each group's parameters, one patient's heart shape and pose, one rendered sub-slice.

The LV cavity is a truncated ellipsoid (widest at the base, closing at the apex, papillary muscles inside the
cavity label as in ACDC) in a myocardium whose thickness varies with the angle (regional thinning in
infarcts), with a crescent RV on the septal side. From ED to ES the cavity contracts radially and along the
long axis (the base plane descends) with the myocardial area conserved (the wall thickens).

Every draw takes the patient's generator as an argument: the order of the draws is part of what a seed means
(patient ``k`` of a cohort is byte-identical from one version to the next).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GROUPS = ("NOR", "DCM", "HCM", "MINF", "RV")

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
class Heart:
    """One patient's heart (mm, in the heart frame: +u points away from the septum) and its ED → ES change."""

    radius: float  # ED cavity radius at the base
    wall: float  # mean wall thickness
    length: float  # ED cavity length, base plane to apex
    ecc: float  # cavity ellipticity (minor / major axis)
    ecc_angle: float  # direction of the major axis
    wall_var: np.ndarray  # smooth angular wall-thickness variation: cos, cos 2φ and sin terms
    infarct: tuple[float, float, float] | None  # regional thinning: centre angle, width, depth (MINF only)
    pap: np.ndarray  # angles of the two papillary muscles
    rv_dir: float  # the RV's side
    rv_scale: float  # RV size factor
    fl: float  # ES long-axis shortening
    fr: float  # ES radial factor (ESV / EDV = 1 - EF together with fl)
    rv_f: float  # ES RV factor

    def contraction(self, es: bool) -> tuple[float, float, float]:
        """(radial, long-axis, RV) factors of the frame: all 1 at ED."""
        return (self.fr, self.fl, self.rv_f) if es else (1.0, 1.0, 1.0)

    def base_shift(self, es: bool) -> float:
        """How far the base plane has descended (mm): 0 at ED."""
        return (1.0 - self.contraction(es)[1]) * self.length * 0.9


def draw_heart(rng: np.random.Generator, group: str, body: float) -> Heart:
    """The heart of a patient of ``group`` whose body size gives the heart-size factor ``body``."""
    gp = GROUP_PARAMS[group]

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
    ecc = float(rng.uniform(0.82, 1.0))
    ecc_angle = float(rng.uniform(0, np.pi))
    wall_var = rng.uniform(-0.15, 0.15, size=3)
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
    return Heart(
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
        fl=fl,
        fr=fr,
        rv_f=rv_f,
    )


@dataclass(frozen=True)
class Pose:
    """Where the heart lies in the field of view (mm from its centre)."""

    centre: np.ndarray  # the long axis at the ED base plane
    tilt: np.ndarray  # centre drift (mm per mm along the long axis)
    theta: float  # direction of the heart frame's +u axis
    mirror: bool


def draw_pose(rng: np.random.Generator, fov_x: float, fov_y: float) -> Pose:
    """A pose in a ``fov_x`` × ``fov_y`` mm field of view: mostly the usual short-axis orientation."""
    theta = float(rng.uniform(-np.pi, np.pi)) if rng.random() < 0.3 else float(rng.normal(-2.4, 0.45))
    mirror = rng.random() < 0.2
    centre = np.array([rng.uniform(-0.17, 0.17) * fov_x, rng.uniform(-0.17, 0.17) * fov_y])
    tilt = rng.normal(0.0, 0.18, size=2)
    return Pose(centre=centre, tilt=tilt, theta=theta, mirror=mirror)


@dataclass(frozen=True)
class Contrast:
    """Tissue intensities relative to blood (= 1)."""

    myo: float
    rv: float  # the RV blood pool: as bright as the LV's, a confounder
    tissue: float
    fat: float
    lung: float
    liver: float
    aorta: float


def draw_contrast(rng: np.random.Generator) -> Contrast:
    return Contrast(
        myo=float(rng.uniform(0.16, 0.42)),
        rv=float(rng.uniform(0.88, 1.08)),
        tissue=float(rng.uniform(0.22, 0.45)),
        fat=float(rng.uniform(0.62, 1.0)),
        lung=float(rng.uniform(0.02, 0.09)),
        liver=float(rng.uniform(0.30, 0.50)),
        aorta=float(rng.uniform(0.75, 1.05)),
    )


def _prof(s: np.ndarray) -> np.ndarray:
    """Radius profile of the LV along its long axis: 1 at the base (s=0), 0 at the apex (s=1)."""
    s = np.clip(s, 0.0, 1.0)
    return np.sqrt(np.clip(1.0 - s**2.4, 0.0, 1.0))


def render_slice(
    heart: Heart,
    pose: Pose,
    contrast: Contrast,
    X: np.ndarray,
    Y: np.ndarray,
    env: np.ndarray,
    t: float,
    *,
    es: bool,
    shift: np.ndarray,
    want_label: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """One sub-slice at depth ``t`` (mm from the ED base plane) of grid ``X``, ``Y`` over the surroundings
    ``env``: intensity (blood = 1) and, if ``want_label``, ACDC's labels. ``shift`` moves the heart (mm)."""
    radius, wall, length = heart.radius, heart.wall, heart.length
    fr, fl, rv_f = heart.contraction(es)
    base_shift = heart.base_shift(es)
    img = env.copy()
    c = pose.centre + shift + pose.tilt * t
    ct, st = math.cos(pose.theta), math.sin(pose.theta)
    dx, dy = X - c[0], Y - c[1]
    u = dx * ct + dy * st
    v = -dx * st + dy * ct
    if pose.mirror:
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
        ce, se = math.cos(heart.ecc_angle), math.sin(heart.ecc_angle)
        ca, sa = cphi * ce + sphi * se, sphi * ce - cphi * se  # cos/sin(phi - ecc_angle)
        a, b = radius * fr, radius * fr * heart.ecc
        r_ell = a * b / np.sqrt((b * ca) ** 2 + (a * sa) ** 2)
        wv = heart.wall_var
        w = wall * (1 + wv[0] * cphi + wv[1] * (cphi * cphi - sphi * sphi) + wv[2] * sphi)
        infarct = heart.infarct
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
            rvp = float(_prof(np.array(max(t, 0.0) / rv_len))) * heart.rv_scale
            outer_ed, outer_now = radius + wall, radius * fr + wall
            thick_ed = outer_ed * 0.4 * rvp
            thick = thick_ed * rv_f
            sept = cphi < -0.95  # the LV's outer wall on the septal side (thick in HCM, thickening at ES)
            r_sept = float(r_o[sept].max()) if sept.any() else outer_now
            far, near = r_sept + 2.5 + thick, 0.1 * outer_now
            ru, rt = (far - near) / 2, (outer_ed + thick_ed) * 1.05 * rv_f
            d = (far + near) / 2
            cr, sr = math.cos(heart.rv_dir), math.sin(heart.rv_dir)
            uu = (u + d * cr) * cr + (v + d * sr) * sr
            vv = -(u + d * cr) * sr + (v + d * sr) * cr
            rv = (uu / max(ru, 1e-3)) ** 2 + (vv / max(rt, 1e-3)) ** 2 < 1
            rv &= rho >= r_o + 2.5
            img[rv] = contrast.rv
            if lab is not None:
                lab[rv] = 1
        img[myo] = contrast.myo
        img[cav] = 1.0
        # papillary muscles: dark, inside the cavity label (as in ACDC)
        if 0.15 < s_cav < 0.8:
            pr = radius * 0.16 * (1.25 if es else 1.0)
            for pa in heart.pap:
                pc = radius * fr * prof_c * 0.62
                pu, pv = pc * math.cos(pa), pc * math.sin(pa)
                pm = ((u - pu) ** 2 + (v - pv) ** 2 < pr**2) & cav
                img[pm] = contrast.myo * 1.1
        if lab is not None:
            lab[myo] = 2
            lab[cav] = 3
    else:
        # above the valve: left atrium (bright, unlabeled) and the aortic root
        la = rho < radius * 0.85
        img[la] = 0.95
        ar = (u + radius * 0.2) ** 2 + (v - radius * 0.9) ** 2 < (radius * 0.45) ** 2
        img[ar] = contrast.aorta
    return img, lab
