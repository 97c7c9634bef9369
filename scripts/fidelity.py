"""Does the method work at all? Run the ``fidelity`` space and report whether Oracle >= Proposed > FS.

    .venv/bin/python scripts/fidelity.py [--out /tmp/fidelity] [--patients 40] [--seeds 0 1 2] [--no-ray]

1. a ``--patients``-patient phantom (seed 0) prepared at 64x64 with a heart-centred crop (``--crop``, the
   central 60 % of the field of view: at the full field of view the LV is about one pixel at ENet's
   bottleneck and FS learns an all-background output);
2. the ``fidelity`` space (FS, Proposed, Oracle at the smallest n, each seed) with the ``fidelity`` preset,
   through Ray Tune (``search_spaces.driver.run_experiment``) or, with ``--no-ray``, standalone;
3. per seed and method the paper's statistic (mean over the last ``stat_window`` epochs of the per-epoch
   mean 3-D validation Dice), the last-epoch Dice, and diagnostics that tell the code from the phantom:
   the Oracle/Proposed penalty and the fraction of unlabeled slices inside their bounds over training (a sign
   error or a broken penalty shows as in-bounds falling and the penalty rising), and the regressor's size
   error and how often the true size lies inside its bounds (a poor regressor explains Proposed <= FS
   without any bug).

4. the paired 95 % t-intervals of Proposed − FS and Oracle − FS over seeds (the report's, from
   ``analysis``) and the power computation (``analysis.power``): the smallest difference the seeds detect and
   the seeds a difference of the observed size needs (``--alpha``, ``--power``);
5. the preset's departures from the paper, each with its measurement (``search_spaces.fidelity``).

Writes ``<out>/fidelity.json`` and prints a table. Exit code 0 whatever the ordering (it is a measurement);
``--strict`` exits 1 unless Oracle >= Proposed > FS on the across-seed means and the paired CI of
Proposed − FS lies above 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _run_level(metrics_csv: Path) -> dict[str, dict[int, float]]:
    """``{split/metric: {epoch: value}}`` of the run-level rows (empty volume)."""
    out: dict[str, dict[int, float]] = {}
    with open(metrics_csv, newline="") as f:
        for r in csv.DictReader(f):
            if r["volume"]:
                continue
            out.setdefault(f"{r['split']}/{r['metric']}", {})[int(r["epoch"])] = float(r["value"])
    return out


def _stat(series: dict[int, float], window: int) -> float:
    eps = sorted(series)[-window:]
    return statistics.fmean(series[e] for e in eps) if eps else float("nan")


def analyse(exp_root: Path) -> dict[str, Any]:
    """Per-seed numbers, orderings and diagnostics from the run directories of a fidelity experiment."""
    from suite.config import SEG_METHODS_WITH_PENALTY
    from suite.paths import ExperimentPaths

    rows: dict[int, dict[str, Any]] = {}
    regs: dict[int, dict[str, Any]] = {}
    for rp in ExperimentPaths(exp_root).all_runs():
        if not rp.summary.exists():
            continue
        cfg = json.loads(rp.config.read_text())
        m = _run_level(rp.metrics)
        seed = int(cfg["seed"])
        if cfg["stage"] == "regressor":
            last = max(m.get("regval/size_abs_err_pct", {0: float("nan")}))
            regs[seed] = {k: m[k][last] for k in ("regval/size_abs_err_pct", "regval/bounds_ok") if k in m}
            continue
        window = int(cfg.get("stat_window", 10))
        dice = m.get("val/dice_mean", {})
        entry = {
            "stat": _stat(dice, window),
            "last": dice[max(dice)] if dice else float("nan"),
            "best": max(dice.values()) if dice else float("nan"),
            "run_id": rp.run_id,
        }
        if cfg["method"] in SEG_METHODS_WITH_PENALTY:
            ib = m.get("train/in_bounds", {})
            pen = m.get("train/loss_penalty", {})
            if ib:
                entry["in_bounds_first_last"] = [ib[min(ib)], ib[max(ib)]]
            pen = {e: v for e, v in pen.items() if e in ib}  # warm-up epochs (no unlabeled pass) left out
            if pen:
                entry["penalty_first_last"] = [pen[min(pen)], pen[max(pen)]]
        rows.setdefault(seed, {})[cfg["method"]] = entry
    per_seed = {}
    for seed in sorted(rows):
        r = rows[seed]
        if not all(k in r for k in ("fs", "proposed", "oracle")):
            continue
        fs, pr, orc = r["fs"]["stat"], r["proposed"]["stat"], r["oracle"]["stat"]
        per_seed[seed] = {
            **{k: r[k] for k in ("fs", "proposed", "oracle")},
            "regressor": regs.get(seed, {}),
            "oracle_ge_proposed": orc >= pr,
            "proposed_gt_fs": pr > fs,
            "oracle_gt_fs": orc > fs,
            "ordering_holds": orc >= pr > fs,
        }
    means = (
        {k: statistics.fmean(v[k]["stat"] for v in per_seed.values()) for k in ("fs", "proposed", "oracle")}
        if per_seed
        else {}
    )
    return {
        "per_seed": per_seed,
        "mean": means,
        "ordering_holds_on_means": bool(means) and means["oracle"] >= means["proposed"] > means["fs"],
        "seeds_with_ordering": sum(v["ordering_holds"] for v in per_seed.values()),
        "n_seeds": len(per_seed),
    }


EVIDENCE_PAIRS = (("proposed", "fs"), ("oracle", "fs"))


def paired_evidence(exp_root: Path, alpha: float, power: float) -> list[dict[str, Any]]:
    """Proposed − FS and Oracle − FS: the report's paired 95 % t-intervals over seeds (same seed, same
    labeled set) and the power computation (``analysis.power``), from the run directories."""
    from analysis.load import load_experiment
    from analysis.power import power_statement
    from analysis.stats import analyse as analyse_experiment

    a = analyse_experiment(load_experiment(exp_root), alpha=alpha, power=power)
    out = []
    for m_a, m_b in EVIDENCE_PAIRS:
        sel = a.power.loc[(a.power["method_a"] == m_a) & (a.power["method_b"] == m_b)]
        for _, r in sel.iterrows():
            d = r.to_dict()
            keys = (
                "method_a",
                "method_b",
                "n_labeled",
                "n_pairs",
                "mean_diff",
                "sd_diff",
                "ci_low",
                "ci_high",
            )
            out.append(
                {
                    **{k: d[k] for k in keys},
                    **{k: d[k] for k in ("d_z", "mdd", "seeds_needed", "alpha", "power")},
                    "statement": d["statement"],
                    "power_statement": power_statement(d, a.scale),
                }
            )
    return out


def format_table(res: dict[str, Any]) -> str:
    lines = ["seed  FS      Proposed  Oracle   O>=P>F  | Oracle in-bounds first->last | reg |err|% bounds_ok"]
    for seed, v in res["per_seed"].items():
        ib = v["oracle"].get("in_bounds_first_last", [float("nan")] * 2)
        reg = v["regressor"]
        lines.append(
            f"{seed:>4}  {v['fs']['stat']:.3f}   {v['proposed']['stat']:.3f}     {v['oracle']['stat']:.3f}"
            f"    {'yes' if v['ordering_holds'] else 'no ':>4}   | {ib[0]:.2f} -> {ib[1]:.2f}"
            f"                 | {reg.get('regval/size_abs_err_pct', float('nan')):.1f}"
            f"  {reg.get('regval/bounds_ok', float('nan')):.2f}"
        )
    if res["mean"]:
        m = res["mean"]
        lines.append(
            f"mean  {m['fs']:.3f}   {m['proposed']:.3f}     {m['oracle']:.3f}    "
            f"{'yes' if res['ordering_holds_on_means'] else 'no'}"
        )
    for p in res.get("paired", []):
        lines += ["", p["statement"], p["power_statement"]]
    if res.get("departures"):
        lines += ["", "Departures from the paper (each measured; BENCHMARKS.md, fidelity):"]
        lines += [f"- {d}" for d in res["departures"]]
    return "\n".join(lines)


def strict_verdict(res: dict[str, Any]) -> tuple[bool, str]:
    """``--strict``: Oracle >= Proposed > FS on the means and the paired CI of Proposed − FS above 0."""
    if not res["ordering_holds_on_means"]:
        return False, "Oracle >= Proposed > FS does not hold on the across-seed means"
    pf = [p for p in res.get("paired", []) if (p["method_a"], p["method_b"]) == ("proposed", "fs")]
    if not pf or not pf[0]["ci_low"] > 0:
        low = f"{pf[0]['ci_low']:+.3f}" if pf else "undefined"
        return False, f"the paired 95% CI of Proposed − FS does not lie above 0 (its lower end: {low})"
    return True, "Oracle >= Proposed > FS on the means and the paired CI of Proposed − FS lies above 0"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/fidelity", help="scratch folder (default: %(default)s)")
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--size", type=int, default=64, help="prepared image size (default: %(default)s)")
    ap.add_argument(
        "--crop",
        type=float,
        default=0.6,
        help="central fraction of the field of view kept before resizing (default: %(default)s)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--preset", default="fidelity")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-ray", action="store_true", help="run the runs standalone, one after the other")
    ap.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 unless Oracle >= Proposed > FS on the means and the Proposed − FS paired CI is above 0",
    )
    ap.add_argument("--alpha", type=float, default=0.05, help="power computation: two-sided level")
    ap.add_argument("--power", type=float, default=0.8, help="power computation: the power asked for")
    args = ap.parse_args(argv)

    from suite.log import setup_logging

    setup_logging("INFO")
    from suite.data.dataset import PreparedData
    from suite.data.phantom.cohort import write_cohort
    from suite.data.prepare import prepare

    out = Path(args.out).resolve()
    t0 = time.perf_counter()
    write_cohort(out / "acdc", patients=args.patients, seed=0)
    prepare(out / "acdc", out / "prepared", size=args.size, crop=args.crop)
    exp_root = out / "results" / f"fidelity-{args.preset}"
    if args.no_ray:
        from search_spaces import get_space
        from suite.stages.runner import execute

        base = {"data": str(out / "prepared"), "data_hash": PreparedData.open(out / "prepared").data_hash}
        for cfg in get_space("fidelity").configs(
            args.preset, args.seeds, overrides=args.overrides, base=base
        ):
            execute(cfg, exp_root)
    else:
        from search_spaces.driver import run_experiment
        from suite.experiment_spec import ExperimentSpec

        spec = ExperimentSpec(
            data=str(out / "prepared"),
            space="fidelity",
            preset=args.preset,
            seeds=args.seeds,
            out=str(out / "results"),
            overrides=args.overrides,
        )
        s = run_experiment(spec)
        if not s["ok"]:
            print(
                f"warning: not every run finished: {s['failed'] or s['blocked'] or s['incomplete']}",
                file=sys.stderr,
            )
    from search_spaces.fidelity import DEPARTURES

    res = analyse(exp_root)
    res["paired"] = paired_evidence(exp_root, args.alpha, args.power)
    res["departures"] = list(DEPARTURES) if args.preset == "fidelity" else []
    res["departures"] += [f"--set {o} (this run, over the preset)" for o in args.overrides]
    res["wall_time_s"] = time.perf_counter() - t0
    res["patients"] = args.patients
    res["crop"] = args.crop
    res["size"] = args.size
    res["preset"] = args.preset
    res["overrides"] = args.overrides
    print(format_table(res))
    ok, why = strict_verdict(res)
    res["strict_ok"], res["strict_reason"] = ok, why
    (out / "fidelity.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"{'PASS' if ok else 'FAIL'} (--strict): {why}")
    print(f"wall time {res['wall_time_s']:.0f} s; details in {out / 'fidelity.json'}")
    if args.strict and not ok:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
