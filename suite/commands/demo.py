"""``suite demo``: the main job end to end on built-in synthetic ACDC-format data (what ``make demo`` runs).

1. ``suite phantom``  a synthetic cohort in the ACDC release layout (default 30 patients, seed 0) and 5
                      held-out test patients (``testing/``: each run's final checkpoint is evaluated on
                      them once, after training, in mm and in the original geometry);
2. ``suite prepare``  slices, normalises, crops to the central 60 % of the view (the LV must be more than a
                      pixel at ENet's bottleneck at 64×64), resizes to 64×64, writes the splits;
3. ``suite tune``     the ``fidelity`` space through Ray Tune: FS, Proposed and Oracle at the smallest n over
                      3 seeds, the ``fidelity`` preset shortened to fit 5 minutes on 2 cores
                      (:data:`DEMO_OVERRIDES`; regressors first, then the runs that need them);
4. the last-epoch validation Dice of every segmenter run, and for Proposed and the Oracle the penalty and
   the in-bounds share from the first to the last epoch with the penalty (what a short run can show);
5. ``suite report``   the report, whose first screen says what the experiment is and the ordering it found
                      (per-seed values, intervals); printed here too.

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

# the fidelity preset (the authors' ENet, whose FS learns on every seed here) cut to fit 5 minutes on 2 idle
# cores with 3 seeds: 6 segmenter epochs (3 of them FS warm-up), statistic over the last 3, a 6-epoch
# regressor. The same grid at 10 epochs (4 warm-up) and a 10-epoch regressor took 500 s (804 CPU-s: FS 38 s,
# Oracle and Proposed 89-112 s, regressor 26-34 s a run; BENCHMARKS.md, demo). Proposals is left out: it
# was the first to drop (about 100 s per seed). The report's first sentence names every departure.
DEMO_OVERRIDES = (
    "seg_epochs=6",
    "penalty_warmup=3",
    "stat_window=3",
    "reg_epochs=6",
    "reg_milestones=[4, 5]",
)


# the demo's first screen: what a run of its budget can and cannot show, and where the long result is
CAN_SHOW = (
    "What a 5-minute demo can show: the whole pipeline on your machine (phantom, preparation, Ray Tune, the\n"
    "held-out evaluation, the report), FS learning the LV on every seed and the size penalty falling epoch\n"
    "by epoch (step 4 prints both)."
)
CANNOT_SHOW = (
    "What it cannot show: whether the size constraint beats full supervision. On a CPU that takes the\n"
    "paper's 100 epochs over >= 5 seeds, hours per seed; the recorded result is in BENCHMARKS.md,\n"
    "'Evidence: the paper's schedule over seeds' (`suite tune --space repro`)."
)


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
    p.add_argument(
        "--test-patients",
        type=int,
        default=5,
        help="held-out test patients (evaluated once after training; 0 = none; default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="prepared image size (default: %(default)s)")
    p.add_argument(
        "--crop", type=float, default=0.6, help="central fraction of the view kept (default: %(default)s)"
    )
    p.add_argument("--preset", default="fidelity", help="run preset (default: %(default)s)")
    p.add_argument("--space", default="fidelity", help="search space (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="config overrides (default: the demo's shortening of the preset, "
        + " ".join(DEMO_OVERRIDES)
        + ")",
    )
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
    print(f"{CAN_SHOW}\n{CANNOT_SHOW}", flush=True)
    out = Path(args.out)
    cohort_dir, prepared_dir, results = out / "data" / "phantom", out / "data" / "prepared", out / "results"

    _banner(
        f"1/5 phantom: {args.patients} patients + {args.test_patients} held-out test patients, "
        f"seed {args.seed} -> {cohort_dir}"
    )
    t = time.perf_counter()
    write_cohort(cohort_dir, patients=args.patients, seed=args.seed, test_patients=args.test_patients)
    print(f"   {time.perf_counter() - t:.1f} s")

    _banner(f"2/5 prepare at {args.size}x{args.size} -> {prepared_dir}")
    t = time.perf_counter()
    prepare(cohort_dir, prepared_dir, size=args.size, crop=args.crop)
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

    overrides = tuple(DEMO_OVERRIDES if args.overrides is None else args.overrides)
    spec = ExperimentSpec(
        data=str(prepared_dir),
        space=args.space,
        preset=args.preset,
        seeds=args.seeds,
        out=str(results),
        overrides=overrides,
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
    md = rep.markdown.read_text()
    first = md[md.find("**What this is:**") :]
    print(first[: first.find("\n## ")].rstrip() if "**What this is:**" in md else rep.table1_text.rstrip())
    print(f"\nreport: {rep.markdown}\nhtml:   {rep.html}")
    print(f"\n{CANNOT_SHOW}")
    print(f"\ndemo finished in {time.perf_counter() - t_start:.0f} s")
    return 0


def _run_standalone(spec: Any) -> Path:
    from search_spaces.expand import expand
    from suite.stages.runner import execute

    planned = expand(spec)
    for rid in planned.plan.requested:  # execute builds each run's prerequisites first
        execute(planned.plan.runs[rid], planned.exp.root)
    return planned.exp.root


def _print_last_epoch(exp_root: Path) -> None:
    """Per segmenter run the last epoch's validation Dice and, for the penalty methods, the penalty and the
    share of unlabeled slices inside their bounds at the first and the last epoch with the penalty: what a
    run of the demo's length can show."""
    import json

    from analysis.escape import COLLAPSED  # a penalty run below it: the start-up collapse explained below
    from analysis.short_run import penalty_course, run_level_metrics
    from suite.config import SEG_METHODS_WITH_PENALTY
    from suite.paths import ExperimentPaths

    rows = []
    for rp in ExperimentPaths(exp_root).all_runs():
        if not rp.config.exists() or not rp.metrics.exists():
            continue
        cfg = json.loads(rp.config.read_text())
        if cfg.get("stage") != "segmenter":
            continue
        m = run_level_metrics(rp.metrics)
        dice = m.get("val/dice_mean", {})  # the mean over the validation volumes, per epoch
        if not dice:
            continue
        last = max(dice)
        course = penalty_course(m) if cfg["method"] in SEG_METHODS_WITH_PENALTY else {}
        line = ""
        if "penalty_first_last" in course:
            (p0, p1), (b0, b1), (e0, e1) = (
                course["penalty_first_last"],
                course["in_bounds_first_last"],
                course["penalty_epochs"],
            )
            line = f"penalty {p0:.3g} -> {p1:.3g}, in bounds {b0:.2f} -> {b1:.2f} (epochs {e0}-{e1})"
        rows.append((cfg["method"], cfg["n_labeled"], cfg["seed"], last, dice[last], rp.status(), line))
    print(f"   {'method':<10} {'n':>3} {'seed':>4} {'epoch':>5} {'dice':>7}  {'status':<9} penalty runs")
    for method, n, seed, ep, last_dice, st, line in sorted(rows):
        print(f"   {method:<10} {n:>3} {seed:>4} {ep:>5} {last_dice:>7.3f}  {st:<9} {line}".rstrip())
    if any(r[0] in SEG_METHODS_WITH_PENALTY and r[4] < COLLAPSED for r in rows):
        print(
            "   A penalty run at Dice ~0 after its warm-up is the known start-up collapse, not a broken\n"
            "   pipeline: the first penalty steps shrink the LV channel below 0.5 everywhere while its soft\n"
            "   size is still above the bounds. Over the paper's 100 epochs, with this network, the\n"
            "   recorded Oracle runs leave it after 5 to 34 epochs, 4 of 5 end above FS (BENCHMARKS.md,\n"
            "   'Evidence: the paper's schedule over seeds', per seed; the paired CI still includes 0).\n"
            "   This run shows the penalty falling (the column above); the in-bounds share rises over\n"
            "   longer runs (scripts/fidelity.py checks it over 20 epochs)."
        )
