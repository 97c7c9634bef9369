"""Time from ``sbatch`` to the first finished epoch on a SLURM cluster (BENCHMARKS.md "SLURM").

    python slurm/testing/bench_first_epoch.py --data PREPARED [--mode array|ray|both] [--profile local]

For each mode it submits a fresh experiment (smoke preset, one FS run in array mode; the smoke space at
n=5 in ray mode), and records, from the submission: the job running (squeue), the first run directory
created (``config.json``: Python, torch and, in ray mode, Ray are up) and the first epoch's rows in a
``metrics.csv``. The jobs are cancelled once the first epoch is seen. Prints one JSON line per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _first(exp_runs: Path, name: str, pred) -> bool:
    if not exp_runs.is_dir():
        return False
    return any(pred(p / name) for p in exp_runs.iterdir() if p.is_dir())


def _has_epoch0(path: Path) -> bool:
    try:
        return any(line.startswith("0,") for line in path.read_text().splitlines())
    except OSError:
        return False


def measure(mode: str, data: str, profile_name: str, out: Path, timeout_s: float) -> dict:
    from slurm.profiles import load_profile
    from slurm.submit import submit
    from slurm.watch import read_squeue
    from suite.config import RunConfig
    from suite.data.dataset import PreparedData
    from suite.experiment_spec import ExperimentSpec

    exp = out / f"bench-{mode}"
    spec = ExperimentSpec(
        data=data, space="smoke", seeds=(0,), labeled=(5,), out=str(out), experiment=exp.name
    )
    profile = load_profile(profile_name)
    configs = None
    if mode == "array":
        configs = [
            RunConfig.from_preset(
                "smoke",
                method="fs",
                n_labeled=5,
                seed=0,
                data=data,
                data_hash=PreparedData.open(data).data_hash,
            )
        ]
    t0 = time.time()
    sub = submit(spec, profile, mode, configs=configs)
    job_id = sub.jobs[0].job_id
    marks: dict[str, float] = {}
    runs = exp / "runs"
    try:
        while time.time() - t0 < timeout_s and "first_epoch_s" not in marks:
            now = time.time() - t0
            if "running_s" not in marks and read_squeue([job_id]).get(job_id, {}).get("State") == "RUNNING":
                marks["running_s"] = now
            if "run_started_s" not in marks and _first(runs, "config.json", Path.exists):
                marks["run_started_s"] = now
            if _first(runs, "metrics.csv", _has_epoch0):
                marks["first_epoch_s"] = now
            time.sleep(0.2)
    finally:
        subprocess.run(["scancel", job_id.split("_")[0]], capture_output=True)
    return {
        "mode": mode,
        "job_id": job_id,
        "profile": profile_name,
        **{k: round(v, 1) for k, v in marks.items()},
        "load": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared dataset")
    ap.add_argument("--mode", choices=["array", "ray", "both"], default="both")
    ap.add_argument("--profile", default="local")
    ap.add_argument("--out", default=None, help="results folder (default: a temporary one)")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="suite-slurm-bench-"))
    data = str(Path(args.data).resolve())
    for mode in ["array", "ray"] if args.mode == "both" else [args.mode]:
        print(json.dumps(measure(mode, data, args.profile, out, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
