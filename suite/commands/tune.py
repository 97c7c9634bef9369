"""``suite tune``: run a whole search space under Ray Tune (resumable, fault-tolerant, one progress line).

    suite tune --data PREPARED --space paper --preset smoke --seeds 0 1 2 --out RESULTS

Every run of the space (plus the regressors and FS models the Proposed / Proposals runs need, trained once
each) lands in RESULTS/<experiment>/runs/<run_id>/, the same directories a standalone ``suite run`` writes.
<experiment> defaults to <space>-<preset>. A run starts as soon as its prerequisites (the regressor of a
Proposed run, the FS model of a Proposals run) have finished and a slot is free, the longest ready run
first. Launching the same command again skips finished runs and resumes partial
ones from their last checkpoint (--resume says the same explicitly). Only the run directories are read:
Tune's pickled experiment state is never restored.
A failed run is reported with its log path and does not stop the others (exit code 1 at the end).

spaces:
  paper        fs/proposals/proposed/oracle x n {5,10,20,30,40} x seeds, + FS n=75 (Table 1)
  sensitivity  gamma {0,.05,.1,.2,.3} x lambda {1e-3,1e-2,1e-1}, proposed/oracle, n {5,10,20}
               (--search random --num-samples K: gamma ~ uniform(0,.3), lambda ~ loguniform(1e-3,1e-1))
  splits       all methods x n {5,10} x random labeled draws (--seeds are the split seeds)
  smoke        all methods x n {5,10} x one seed (the demo)
  fidelity     fs/proposed/oracle x n 5 x 3 seeds on the fidelity preset (does the method work at all?)
  arch         the original ENet vs the authors' variant (seg_arch), fs/proposed/oracle
  constraints  {size, size+centroid} x {penalty, logbarrier} x {LV, all classes}, proposed/oracle, + FS

resources:
  A local Ray is started (everything on 127.0.0.1, temp files under /tmp/sray-*) unless --address joins a
  running cluster (e.g. the one the SLURM launcher starts). A trial with one worker runs the training loop
  directly (about 1 s of Ray overhead); --workers-per-trial K trains each run with DDP on K Ray Train
  workers (world_size=K is part of the run id; global batches must be divisible by K, e.g.
  --set seg_batch=2 unl_batch=4). --gpus-per-trial accepts fractions (0.25: four small trials per GPU).
  --cpus-per-trial defaults to the preset's thread count (threads, part of the run id).

examples:
  suite tune --data data/prepared --space smoke --out results                 # the demo grid
  suite tune --data data/prepared --space paper --seeds 0 1 2 --out results --gpus-per-trial 0.25
  suite tune --data data/prepared --space paper --preset smoke --out results --resume
  suite tune --data data/prepared --space sensitivity --search random --num-samples 20 --out results
  suite tune --data data/prepared --space constraints --seeds 0 --out results --dry-run   # the plan only
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from suite.commands._experiment_args import add_experiment_args, add_ray_args, spec_from_args

log = logging.getLogger("suite.commands.tune")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "tune",
        help="run a search space (grid of runs) under Ray Tune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_experiment_args(p)
    p.add_argument("--address", help="join a running Ray cluster (host:port or auto) instead of starting one")
    add_ray_args(p)
    p.add_argument(
        "--resume",
        action="store_true",
        default=None,
        help="finish a killed launch: the same as launching again (finished runs are skipped, partial ones "
        "resume from their run directory's checkpoint; Tune's pickled state is never read)",
    )
    p.add_argument("--num-cpus", dest="num_cpus", type=int, help="local Ray only: use at most this many CPUs")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="print the runs the launch would make, by phase; start nothing, write nothing",
    )
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    if args.dry_run:
        from search_spaces.expand import expand

        print("\n".join(expand(spec_from_args(args)).plan_lines()))
        return 0
    from search_spaces.driver import run_experiment

    summary = run_experiment(spec_from_args(args))
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        print(format_summary(summary))
    if summary.get("interrupted"):
        return 130
    return 0 if summary.get("ok") else 1


def format_summary(summary: dict[str, Any]) -> str:
    """A short human summary: counts, then one line per failed / blocked run."""
    runs = summary.get("runs", {})
    counts: dict[str, int] = {}
    for s in runs.values():
        counts[s] = counts.get(s, 0) + 1
    lines = [
        f"experiment {summary['experiment']}",
        f"  runs: {summary['total']} total, {counts.get('finished', 0)} finished "
        f"({summary['finished_now']} this launch, {summary['already_finished']} before), "
        f"{len(summary.get('failed', []))} failed, {len(summary.get('blocked', []))} blocked, "
        f"{len(summary.get('incomplete', []))} incomplete; {summary['wall_time_s']:.0f} s",
    ]
    for rec in summary.get("failed", []):
        lines.append(f"  FAILED {rec['run_id']}: {rec['error']}\n         log: {rec['log']}")
    for rid in summary.get("blocked", []):
        lines.append(f"  BLOCKED {rid}: a prerequisite failed")
    if summary.get("interrupted"):
        lines.append("  interrupted: run the same command again to finish (finished runs are kept)")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(0)
