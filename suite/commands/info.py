"""``suite info PREPARED``: a summary of a prepared dataset (patients, slices, groups, LV areas, splits)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="summarise a prepared dataset",
        description="Print patients, volumes, slices, size, groups, LV area statistics "
        "and split counts of a folder written by `suite prepare`.",
    )
    p.add_argument("prepared", metavar="PREPARED", help="prepared dataset folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def summary(data) -> dict:
    """The facts printed by ``suite info`` (a dict, also used by the demo and tests)."""
    import numpy as np

    from suite.data.splits import PAPER_LABELED

    m = data.manifest
    groups: dict[str, int] = {}
    for p in m["patients"]:
        groups[p["group"] or "?"] = groups.get(p["group"] or "?", 0) + 1
    px = data.lv_area_px
    nz = px[px > 0]
    per_vol = [v["shape"][2] for v in m["volumes"]]
    ed = {v["patient"]: v["lv_volume_ml"] for v in m["volumes"] if v["frame"] == "ED"}
    es = {v["patient"]: v["lv_volume_ml"] for v in m["volumes"] if v["frame"] == "ES"}
    ratios = [es[p] / ed[p] for p in ed if p in es and ed[p] > 0]
    out = {
        "path": str(data.path),
        "data_hash": data.data_hash,
        "size": data.size,
        "patients": m["n_patients"],
        "volumes": m["n_volumes"],
        "slices": m["n_slices"],
        "slices_per_volume": {
            "min": int(min(per_vol)),
            "mean": float(np.mean(per_vol)),
            "max": int(max(per_vol)),
        },
        "groups": dict(sorted(groups.items())),
        "lv_area_px": {
            "empty_slices": int((px == 0).sum()),
            "mean_nonzero": float(nz.mean()) if nz.size else 0.0,
            "p5": float(np.percentile(nz, 5)) if nz.size else 0.0,
            "p95": float(np.percentile(nz, 95)) if nz.size else 0.0,
            "max": int(px.max()),
        },
        "lv_area_mm2_mean_nonzero": float(data.lv_area_mm2[px > 0].mean()) if nz.size else 0.0,
        "lv_volume_ml": {
            "ED_mean": float(np.mean(list(ed.values()))),
            "ES_mean": float(np.mean(list(es.values()))),
            "ES_over_ED_mean": float(np.mean(ratios)) if ratios else 0.0,
        },
    }
    s = data.splits
    if "unavailable" in s:
        out["splits"] = {"unavailable": s["unavailable"]}
    else:
        out["splits"] = {
            "paper_seed": s["paper_seed"],
            **s["counts"],
            "labeled_effective": s["labeled_effective"],
            "dropped": s["dropped"],
            "paper_n": list(PAPER_LABELED),
        }
    test = data.test_split()
    out["test"] = None if test is None else {"test_hash": test.data_hash, "patients": len(test.patients)}
    return out


def run(args: argparse.Namespace) -> int:
    import json

    from suite.data.dataset import PreparedData

    data = PreparedData.open(args.prepared)
    s = summary(data)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    spv = s["slices_per_volume"]
    lv = s["lv_area_px"]
    print(f"prepared dataset {s['path']}  (data_hash {s['data_hash']})")
    print(
        f"  patients {s['patients']}, volumes {s['volumes']}, slices {s['slices']} at {s['size']}x{s['size']}"
        f" (slices/volume {spv['min']}-{spv['max']}, mean {spv['mean']:.1f})"
    )
    print("  groups   " + ", ".join(f"{g} {n}" for g, n in s["groups"].items()))
    print(
        f"  LV area  mean {lv['mean_nonzero']:.0f} px ({s['lv_area_mm2_mean_nonzero']:.0f} mm2) on non-empty "
        f"slices, 5-95% {lv['p5']:.0f}-{lv['p95']:.0f} px, max {lv['max']}, empty slices {lv['empty_slices']}"
    )
    v = s["lv_volume_ml"]
    print(
        f"  LV volume ED {v['ED_mean']:.0f} ml, ES {v['ES_mean']:.0f} ml (ES/ED {v['ES_over_ED_mean']:.2f})"
    )
    sp = s["splits"]
    if "unavailable" in sp:
        print(f"  splits   unavailable: {sp['unavailable']}")
    else:
        lab = ", ".join(f"n={k}->{e}" for k, e in sp["labeled_effective"].items())
        print(
            f"  splits   train {sp['train']}, validation {sp['validation']} (segmenter {sp['val_seg']}, "
            f"regressor {sp['val_reg']}), paper seed {sp['paper_seed']}"
        )
        print(f"  labeled  {lab}" + (f"; dropped {sp['dropped']}" if sp["dropped"] else ""))
    t = s["test"]
    print(
        "  test     none (prepare a folder with testing/ for a held-out test split)"
        if t is None
        else f"  test     {t['patients']} held-out patients in OUT/test (test_hash {t['test_hash']})"
    )
    return 0
