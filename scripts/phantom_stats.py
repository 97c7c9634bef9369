#!/usr/bin/env python3
"""Statistics of an ACDC-format cohort (the phantom, or real ACDC) for docs/phantom.md.

    python scripts/phantom_stats.py SRC PREPARED

SRC: the ACDC-format folder; PREPARED: ``suite prepare SRC PREPARED`` output (LV areas at its resolution).
Prints Markdown: acquisition (spacings, slices), LV area per slice, ED/ES, and per-group volumes, ejection
fraction, wall thickness and RV/LV ratio (volumes indexed by body surface area, Mosteller, from Info.cfg).
Runs the same on a real ACDC training folder, so the two can be compared line by line.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np


def main(src: str, prepared: str) -> int:
    from suite.data import acdc
    from suite.data.dataset import PreparedData

    pats = acdc.scan(src)
    d = PreparedData.open(prepared)
    per_group: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    inplane, thick, nslices, matrix = [], [], [], []
    for p in pats:
        vals = {}
        for fr in p.frames:
            f = acdc.load_frame(fr)
            sx, sy, sz = f.spacing
            vox = sx * sy * sz / 1000.0
            lab = f.label
            vals[fr.frame] = {k: float((lab == k).sum() * vox) for k in (1, 2, 3)}
            if fr.frame == "ED":
                inplane.append(sx)
                thick.append(sz)
                nslices.append(lab.shape[2])
                matrix.append(lab.shape[0])
                # mean wall thickness on slices with both cavity and myocardium (annulus of equal areas)
                a_c = (lab == acdc.LV_LABEL).sum(axis=(0, 1)) * sx * sy
                a_m = (lab == 2).sum(axis=(0, 1)) * sx * sy
                ok = (a_c > 0) & (a_m > 0)
                wt = np.sqrt((a_c[ok] + a_m[ok]) / np.pi) - np.sqrt(a_c[ok] / np.pi)
                per_group[p.group]["wall_mm"].append(float(wt.mean()) if ok.any() else np.nan)
        bsa = np.sqrt((p.height or 170) * (p.weight or 70) / 3600.0)
        g = per_group[p.group]
        edv, esv = vals["ED"][3], vals["ES"][3]
        g["n"].append(1)
        g["lv_edv"].append(edv)
        g["lv_edv_index"].append(edv / bsa)
        g["lv_esv"].append(esv)
        g["lv_ef"].append(100 * (1 - esv / edv) if edv else np.nan)
        g["rv_edv"].append(vals["ED"][1])
        g["rv_ef"].append(100 * (1 - vals["ES"][1] / vals["ED"][1]) if vals["ED"][1] else np.nan)
        g["myo_mass_g"].append(vals["ED"][2] * 1.05)

    px, mm2 = d.lv_area_px, d.lv_area_mm2
    nz = px > 0
    print(
        f"cohort {src}: {len(pats)} patients, {len(d.volumes)} volumes, {len(d)} slices "
        f"(prepared at {d.size}x{d.size})\n"
    )
    print("| quantity | value |\n|---|---|")
    print(
        f"| in-plane spacing (mm) | {min(inplane):.2f}–{max(inplane):.2f}, median {np.median(inplane):.2f} |"
    )
    ths, cnt = np.unique(thick, return_counts=True)
    print("| slice spacing (mm) | " + ", ".join(f"{t:g}: {c}" for t, c in zip(ths, cnt, strict=True)) + " |")
    print(f"| matrix (first axis) | {min(matrix)}–{max(matrix)} |")
    print(f"| slices per volume | {min(nslices)}–{max(nslices)}, mean {np.mean(nslices):.1f} |")
    print(f"| slices without LV (label 3) | {100 * (~nz).mean():.1f} % |")
    print(
        f"| LV area per non-empty slice, px at {d.size}² | mean {px[nz].mean():.0f}, median "
        f"{np.median(px[nz]):.0f}, 5–95 % {np.percentile(px[nz], 5):.0f}–{np.percentile(px[nz], 95):.0f}, "
        f"max {px.max()} |"
    )
    print(
        f"| LV area per non-empty slice, mm² | mean {mm2[nz].mean():.0f}, 5–95 % "
        f"{np.percentile(mm2[nz], 5):.0f}–{np.percentile(mm2[nz], 95):.0f} |"
    )
    ed, es = d.frame == "ED", d.frame == "ES"
    print(f"| mean LV area ES / ED (all slices) | {px[es].mean() / px[ed].mean():.2f} |")
    print()
    print(
        "| group | n | LV EDV (ml) | LV EDV / BSA (ml/m²) | LV ESV (ml) | LV EF (%) | ED wall (mm) | "
        "myo mass (g) | RV EDV (ml) | RV EF (%) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")

    def ms(v):
        v = np.asarray(v, float)
        return f"{np.nanmean(v):.0f} ± {np.nanstd(v):.0f}"

    for gname in sorted(per_group):
        g = per_group[gname]
        print(
            f"| {gname or '?'} | {len(g['n'])} | {ms(g['lv_edv'])} | {ms(g['lv_edv_index'])} | "
            f"{ms(g['lv_esv'])} | {ms(g['lv_ef'])} | {np.nanmean(g['wall_mm']):.1f} | {ms(g['myo_mass_g'])} "
            f"| {ms(g['rv_edv'])} | {ms(g['rv_ef'])} |"
        )
    calibration(pats, d)
    return 0


def calibration(pats: list, d) -> None:
    """What decides size-constrained learning: LV area base -> apex at ED and ES, slices without LV per
    frame, and the blood-pool / myocardium / RV contrast of the source images."""
    from suite.data import acdc

    px = np.asarray(d.lv_area_px, dtype=np.float64)
    frame, vol, sl = np.asarray(d.frame), np.asarray(d.volume), np.asarray(d.slice_index)
    print(f"\nLV area per slice (% of the {d.size}x{d.size} image) from base (first slice) to apex (last):\n")
    bins = ("base", "basal-mid", "mid", "mid-apical", "apex")
    print("| frame | " + " | ".join(bins) + " | slices without LV |")
    print("|---" * (len(bins) + 2) + "|")
    for fr in ("ED", "ES"):
        rel = np.zeros(len(px))
        sel = frame == fr
        for v in np.unique(vol[sel]):
            m = vol == v
            rel[m] = sl[m] / max(sl[m].max(), 1)
        b = np.minimum((rel * len(bins)).astype(int), len(bins) - 1)
        cells = []
        for i in range(len(bins)):
            a = px[sel & (b == i)]
            cells.append(f"{100 * a.mean() / d.size**2:.2f} ({100 * (a == 0).mean():.0f} % empty)")
        print(f"| {fr} | " + " | ".join(cells) + f" | {100 * (px[sel] == 0).mean():.1f} % |")
    lv, myo, rv, cnr = [], [], [], []
    for p in pats:
        f = acdc.load_frame(next(fr for fr in p.frames if fr.frame == "ED"))
        img, lab = f.image.astype(np.float64), f.label
        if not ((lab == 3).any() and (lab == 2).any() and (lab == 1).any()):
            continue
        m_lv, m_myo, m_rv = (float(np.median(img[lab == k])) for k in (3, 2, 1))
        lv.append(m_lv)
        myo.append(m_myo / m_lv)
        rv.append(m_rv / m_lv)
        cnr.append((m_lv - m_myo) / max(float(img[lab == 3].std()), 1e-9))
    q = lambda v: f"{np.median(v):.2f} (5–95 % {np.percentile(v, 5):.2f}–{np.percentile(v, 95):.2f})"  # noqa: E731
    print("\nContrast at ED (per patient: median intensity of each structure, relative to the LV pool):\n")
    print("| myocardium / LV pool | RV pool / LV pool | (LV − myo) / sd within the LV pool | patients |")
    print("|---|---|---|---|")
    print(f"| {q(myo)} | {q(rv)} | {q(cnr)} | {len(lv)} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
