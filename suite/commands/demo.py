"""``suite demo``: the main job end to end on built-in synthetic ACDC-format data (what ``make demo`` runs).

1. ``suite phantom``  a synthetic cohort in the ACDC release layout (default 30 patients, seed 0);
2. ``suite prepare``  slices, normalises, resizes (64×64 for the demo), writes the splits;
3. ``suite tune``     the ``smoke`` space through Ray Tune: FS, Proposals, Proposed and Oracle at two n,
                      one seed (regressors and FS models first, then the runs that need them);
4. the last-epoch validation Dice of every segmenter run;
5. ``suite report``   Table 1, statistics, figures and the report of the demo experiment.

Each step is cached or resumable: running the demo again reuses the cohort and the prepared data and skips
finished runs. ``--no-ray`` runs the same grid with the standalone runner (no Ray start-up).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("suite.demo")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole suite on the built-in synthetic data (what `make demo` runs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", default="demo-results", help="folder for data, runs and report (default: %(default)s)"
    )
    p.add_argument("--patients", type=int, default=30, help="phantom patients (>= 30; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="prepared image size (default: %(default)s)")
    p.add_argument("--preset", default="smoke", help="run preset (default: %(default)s)")
    p.add_argument("--space", default="smoke", help="search space (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    p.add_argument(
        "--no-ray", action="store_true", help="run the grid with the standalone runner instead of Ray"
    )
    p.set_defaults(func=run)


def _banner(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    from suite.commands.info import summary
    from suite.data.dataset import PreparedData
    from suite.data.phantom.cohort import write_cohort
    from suite.data.prepare import prepare

    t_start = time.perf_counter()
    out = Path(args.out)
    cohort_dir, prepared_dir, results = out / "data" / "phantom", out / "data" / "prepared", out / "results"

    _banner(f"1/5 phantom: {args.patients} patients, seed {args.seed} -> {cohort_dir}")
    t = time.perf_counter()
    write_cohort(cohort_dir, patients=args.patients, seed=args.seed)
    print(f"   {time.perf_counter() - t:.1f} s")

    _banner(f"2/5 prepare at {args.size}x{args.size} -> {prepared_dir}")
    t = time.perf_counter()
    prepare(cohort_dir, prepared_dir, size=args.size)
    data = PreparedData.open(prepared_dir)
    s = summary(data)
    print(
        f"   {time.perf_counter() - t:.1f} s; {s['patients']} patients, {s['volumes']} volumes, "
        f"{s['slices']} slices, groups {s['groups']}"
    )
    if "unavailable" not in s["splits"]:
        sp = s["splits"]
        print(
            f"   splits: labeled n (effective) {sp['labeled_effective']}; dropped {sp['dropped'] or 'none'}"
        )

    _banner(
        f"3/5 space {args.space!r}, preset {args.preset!r}, seeds {args.seeds} "
        f"({'standalone' if args.no_ray else 'Ray Tune'})"
    )
    t = time.perf_counter()
    from suite.experiment_spec import ExperimentSpec

    spec = ExperimentSpec(
        data=str(prepared_dir), space=args.space, preset=args.preset, seeds=args.seeds, out=str(results)
    )
    if args.no_ray:
        exp_root = _run_standalone(spec)
    else:
        from search_spaces.driver import run_experiment

        res = run_experiment(spec)
        exp_root = Path(res["experiment"])
        print(
            f"   {res['total']} runs: {res['already_finished']} already finished, {res['finished_now']} "
            f"finished now; Ray start-up {res['ray_start_s']:.1f} s"
        )
        for f in res["failed"]:
            print(f"   FAILED {f.get('run_id')}: {f.get('error')} (log: {f.get('log')})")
        if not res["ok"]:
            print(f"   incomplete: blocked {res['blocked']}, incomplete {res['incomplete']}")
    print(f"   {time.perf_counter() - t:.1f} s")

    _banner("4/5 last-epoch validation Dice (mean over volumes) per segmenter run")
    _print_last_epoch(exp_root)

    _banner("5/5 report")
    from analysis.report import build_report

    rep = build_report(exp_root)
    print(rep.table1_text.rstrip())
    print(f"\nreport: {rep.markdown}\nhtml:   {rep.html}")
    print(f"\ndemo finished in {time.perf_counter() - t_start:.0f} s")
    return 0


def _run_standalone(spec: Any) -> Path:
    from search_spaces.expand import expand
    from suite.stages import execute

    planned = expand(spec)
    for rid in planned.plan.requested:  # execute builds each run's prerequisites first
        execute(planned.plan.runs[rid], planned.exp.root)
    return planned.exp.root


def _print_last_epoch(exp_root: Path) -> None:
    import csv
    import json

    from suite.paths import ExperimentPaths

    rows = []
    for rp in ExperimentPaths(exp_root).all_runs():
        if not rp.config.exists() or not rp.metrics.exists():
            continue
        cfg = json.loads(rp.config.read_text())
        if cfg.get("stage") != "segmenter":
            continue
        by_epoch: dict[int, list[float]] = {}
        with rp.metrics.open() as f:
            for r in csv.DictReader(f):
                if r["split"] == "val" and r["metric"] == "dice" and r["volume"]:
                    by_epoch.setdefault(int(r["epoch"]), []).append(float(r["value"]))
        if by_epoch:
            last = max(by_epoch)
            vals = by_epoch[last]
            rows.append(
                (cfg["method"], cfg["n_labeled"], cfg["seed"], last, sum(vals) / len(vals), rp.status())
            )
    print(f"   {'method':<10} {'n':>3} {'seed':>4} {'epoch':>5} {'dice':>7}  status")
    for m, n, seed, ep, dice, st in sorted(rows):
        print(f"   {m:<10} {n:>3} {seed:>4} {ep:>5} {dice:>7.3f}  {st}")
