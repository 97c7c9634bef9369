"""Ray costs on this machine: start-up, per-trial overhead, TorchTrainer start-up, smoke-grid wall time.

    .venv/bin/python scripts/bench_ray.py [--out /tmp/bench-ray] [--skip-grid] [--json FILE]

1. ``ray.init`` of the suite's local Ray (``suite.ray_glue.cluster.start_ray``: dashboard on 127.0.0.1, own
   temp dir) and its shutdown, twice;
2. per-trial overhead of a plain Tune function trial (reports once, does nothing) over 12 trials, and of the
   suite's own trainable on 12 runs that are already finished (imports torch + the suite, checks the run
   directory, reports): Tune wall time / trials with 2 trials at once;
3. one ``TorchTrainer.fit`` (1 worker, an empty loop) inside a Tune trial: Train's start-up;
4. the demo: the ``smoke`` space (4 methods x n {5, 10} x seed 0 + 2 regressors, smoke preset) through
   ``run_experiment`` on a 40-patient phantom prepared at 64x64, from a cold start (Ray start-up included),
   with the seconds spent inside training epochs (the rest is Ray, process start-up and evaluation
   overhead); ``--standalone`` also runs the same grid without Ray in one process.

Prints one JSON document (also written with ``--json``) and the ``uptime`` load before and after: on a shared
machine the figures are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _noop_trial(config: dict) -> None:
    from ray import tune

    tune.report({"x": 1})


def _empty_train_loop(config: dict) -> None:
    import ray.train

    ray.train.report({"x": 1})


def _train_trial(config: dict) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    t0 = time.perf_counter()
    trainer = TorchTrainer(
        _empty_train_loop,
        scaling_config=ray.train.ScalingConfig(num_workers=1),
        run_config=ray.train.RunConfig(
            name="bench-train", storage_path=config["storage"], callbacks=[TuneReportCallback()]
        ),
    )
    trainer.fit()
    from ray import tune

    tune.report({"train_fit_s": time.perf_counter() - t0})


def bench_startup(reps: int = 2) -> list[float]:
    from suite.ray_glue import cluster as dist

    out = []
    for i in range(reps):
        t0 = time.perf_counter()
        dist.start_ray(num_cpus=2, temp_dir=dist.short_temp_dir(f"bench-{os.getpid()}-{i}"))
        out.append(time.perf_counter() - t0)
        dist.stop_ray()
    return out


def bench_trials(root: Path, prepared: Path | None) -> dict:
    from ray import tune

    from suite.ray_glue import cluster as dist

    res: dict = {}
    dist.start_ray(num_cpus=2, temp_dir=dist.short_temp_dir(f"bench-{os.getpid()}-t"))
    try:
        storage = str((root / "tune").resolve())
        n = 12
        t0 = time.perf_counter()
        tune.Tuner(
            tune.with_resources(_noop_trial, {"CPU": 1}),
            param_space={"i": tune.grid_search(list(range(n)))},
            run_config=tune.RunConfig(name="noop", storage_path=storage, verbose=0),
            tune_config=tune.TuneConfig(max_concurrent_trials=2),
        ).fit()
        res["plain_trial_s"] = (time.perf_counter() - t0) / n
        if prepared is not None:
            res["suite_trial_skipped_run_s"] = _suite_trials_on_finished(root, prepared, n)
        t0 = time.perf_counter()
        grid = tune.Tuner(
            tune.with_resources(_train_trial, {dist.TRIAL_DRIVER: 1}),
            param_space={"storage": str((root / "train").resolve())},
            run_config=tune.RunConfig(name="train", storage_path=storage, verbose=0),
        ).fit()
        res["train_trial_total_s"] = time.perf_counter() - t0
        res["train_fit_s"] = grid[0].metrics.get("train_fit_s")
    finally:
        dist.stop_ray()
    return res


def _suite_trials_on_finished(root: Path, prepared: Path, n: int) -> float:
    """The suite trainable on n already-finished runs (fake finished run directories)."""
    from search_spaces import get_space
    from suite.atomic import write_json_atomic
    from suite.data.dataset import PreparedData
    from suite.paths import ExperimentPaths
    from suite.ray_glue.progress import Progress
    from suite.ray_glue.resources import TrialOptions
    from suite.ray_glue.trials import run_trials

    exp = ExperimentPaths(root / "finished")
    base = {"data": str(prepared), "data_hash": PreparedData.open(prepared).data_hash}
    cfgs = get_space("sensitivity").configs("smoke", [0], labeled=[5], base=base, methods=["oracle"])[:n]
    for c in cfgs:
        write_json_atomic(exp.run(c.run_id).summary, {"run_id": c.run_id, "best_value": 0.0, "best_epoch": 0})
    opts = TrialOptions(experiment_root=str(exp.root), cpus=1.0)
    prog = Progress(label="bench", total=len(cfgs))
    t0 = time.perf_counter()
    run_trials(cfgs, opts, name="finished", max_concurrent=2, max_failures=0, progress=prog)
    return (time.perf_counter() - t0) / len(cfgs)


def bench_grid(root: Path, prepared: Path, standalone: bool) -> dict:
    from search_spaces import get_space
    from search_spaces.driver import run_experiment
    from suite.data.dataset import PreparedData
    from suite.experiment_spec import ExperimentSpec
    from suite.stages.runner import execute

    out = root / "grid"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    s = run_experiment(
        ExperimentSpec(data=str(prepared), space="smoke", preset="smoke", seeds=[0], out=str(out))
    )
    ray_wall = time.perf_counter() - t0
    res = {
        "runs": s["total"],
        "ok": s["ok"],
        "ray_grid_wall_s": ray_wall,
        "ray_start_s_in_grid": s["ray_start_s"],
        "train_epoch_time_s_sum": _epoch_time_sum(out / "smoke-smoke"),
    }
    if standalone:
        alone = root / "alone"
        shutil.rmtree(alone, ignore_errors=True)
        base = {"data": str(prepared), "data_hash": PreparedData.open(prepared).data_hash}
        t0 = time.perf_counter()
        for cfg in get_space("smoke").configs("smoke", [0], base=base):
            execute(cfg, alone)
        res["standalone_grid_wall_s"] = time.perf_counter() - t0
    return res


def _epoch_time_sum(exp_root: Path) -> float:
    """Seconds spent inside training epochs (metrics.csv epoch_time_s) over every run of the grid."""
    import csv

    total = 0.0
    for m in exp_root.glob("runs/*/metrics.csv"):
        with open(m, newline="") as f:
            total += sum(float(r["value"]) for r in csv.DictReader(f) if r["metric"] == "epoch_time_s")
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/bench-ray", help="scratch folder (default: %(default)s)")
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--skip-grid", action="store_true", help="only start-up and per-trial overhead")
    ap.add_argument("--standalone", action="store_true", help="also time the same grid without Ray")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    from suite.log import setup_logging

    setup_logging("WARNING")
    root = Path(args.out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    from suite.data.phantom.cohort import write_cohort
    from suite.data.prepare import prepare

    write_cohort(root / "acdc", patients=args.patients, seed=0)
    prepare(root / "acdc", root / "prepared", size=64)
    prepared = root / "prepared"
    res: dict = {"load_before": _load(), "cpus": os.cpu_count()}

    def dump() -> None:
        text = json.dumps({**res, "load_now": _load()}, indent=2)
        print(text, flush=True)
        if args.json:
            Path(args.json).write_text(text + "\n")

    res["ray_start_s"] = bench_startup()
    dump()
    res.update(bench_trials(root, prepared))
    dump()
    if not args.skip_grid:
        res.update(bench_grid(root, prepared, args.standalone))
    res["load_after"] = _load()
    dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
