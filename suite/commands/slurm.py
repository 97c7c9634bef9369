"""``suite slurm submit|status|cancel``: run an experiment on a SLURM cluster with submitit (``slurm/``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from suite.commands._experiment_args import add_experiment_args, add_ray_args, spec_from_args

DESCRIPTION = """\
Run an experiment (the same options as `suite tune`) on a SLURM cluster.

modes:
  --mode ray    one allocation, Ray inside (default): one job; on one node Ray runs locally, on several
                nodes the Ray head starts on the first host and a worker on each other host (srun), and the
                same Tune driver as `suite tune` runs against that cluster.
  --mode array  no Ray: one array task per run, one array per dependency level: regressors, FS models and
                other independent runs first, then the runs that need them (--dependency=afterany on the
                previous array); --max-parallel caps running tasks.

profiles (--profile NAME or a YAML file): partition, account, qos, nodes, gpus_per_node, cpus_per_task,
mem, time, constraint, extra_sbatch, setup, signal_delay_s, max_requeues, array_parallelism, python.
Shipped: {profiles}. Copy one and edit it for your cluster.

Time limit or preemption (USR2): the job checkpoints and requeues itself; finished runs are never repeated
and partial runs resume from their checkpoints. Re-submitting the same command submits only what is missing.
Everything submitted (job ids, sbatch scripts, log paths) is recorded in RESULTS/<experiment>/slurm/.
"""

EPILOG = """\
examples:
  # try it on a workstation (as root, Debian/Ubuntu): a real one-node SLURM on localhost
  slurm/testing/start-local-cluster.sh
  suite slurm submit --profile local --mode array --data data/prepared --space smoke --out results
  suite slurm status results/smoke-smoke

  # a real multi-node GPU cluster: copy and edit the 2-node profile, look at the script, then submit
  cp slurm/profiles/gpu-2node.yaml my-cluster.yaml      # partition, account, qos, constraint, setup
  suite slurm submit --profile my-cluster.yaml --mode ray --data /shared/prepared --space paper \\
      --preset paper --seeds 0 1 2 --out /shared/results --gpus-per-trial 0.25 --dry-run
  suite slurm submit --profile my-cluster.yaml --mode ray --data /shared/prepared --space paper \\
      --preset paper --seeds 0 1 2 --out /shared/results --gpus-per-trial 0.25
  suite slurm status /shared/results/paper-paper
  suite slurm cancel /shared/results/paper-paper

  # one array task per run, at most 32 at once, one GPU each
  suite slurm submit --profile my-1gpu.yaml --mode array --data /shared/prepared --space paper \\
      --seeds 0 1 2 --out /shared/results --max-parallel 32

RESULTS, the prepared data and the Python environment must be on a filesystem shared by the nodes.
"""


def register(subparsers: Any) -> None:
    from slurm.profiles import available_profiles

    p = subparsers.add_parser(
        "slurm",
        help="run an experiment on SLURM (submitit): submit, status, cancel",
        description=DESCRIPTION.format(profiles=", ".join(available_profiles())),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="slurm_command", metavar="ACTION")

    s = sub.add_parser(
        "submit",
        help="submit an experiment (or print the sbatch script with --dry-run)",
        description=DESCRIPTION.format(profiles=", ".join(available_profiles())),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument(
        "--mode",
        choices=["ray", "array"],
        default="ray",
        help="ray: one allocation running Ray (default); array: one array task per run, no Ray",
    )
    s.add_argument(
        "--profile",
        default="local",
        metavar="NAME|FILE.yaml",
        help=f"resource profile: {', '.join(available_profiles())} or a YAML file (default: local)",
    )
    add_experiment_args(s)
    s.add_argument(
        "--max-parallel",
        type=int,
        default=None,
        help="array mode: at most this many array tasks at once (default: the profile's)",
    )
    add_ray_args(s, prefix="ray mode: ")
    s.add_argument(
        "--dry-run", action="store_true", help="print the sbatch script(s) and the job layout; submit nothing"
    )
    s.add_argument("--wait", action="store_true", help="wait for the jobs and report each run")
    s.set_defaults(func=handle_submit)

    st = sub.add_parser("status", help="finished / running / failed runs of an experiment, with log paths")
    st.add_argument("experiment", help="RESULTS/<experiment>")
    st.add_argument("-v", "--verbose", action="store_true", help="list every run")
    st.set_defaults(func=handle_status)

    c = sub.add_parser("cancel", help="scancel every job of an experiment still in the queue")
    c.add_argument("experiment", help="RESULTS/<experiment>")
    c.set_defaults(func=handle_cancel)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def handle_submit(args: argparse.Namespace) -> int:
    from slurm.profiles import load_profile
    from slurm.submit import submit, wait

    profile = load_profile(args.profile)
    sub = submit(
        spec_from_args(args), profile, args.mode, dry_run=args.dry_run, max_parallel=args.max_parallel
    )
    if args.dry_run:
        print(sub.dry_run_text)
        return 0
    exp = sub.exp
    if not sub.jobs:
        print(f"{exp.root}: every run is finished; nothing submitted")
        return 0
    print(f"submitted {args.mode} job(s) {' '.join(sub.job_ids)} for {exp.root}")
    print(f"record: {exp.slurm_dir / 'submissions.jsonl'}; progress: suite slurm status {exp.root}")
    if not args.wait:
        return 0
    outcomes = wait(sub)
    bad = 0
    for o in outcomes:
        if args.mode == "ray":
            print(f"allocation job {o.job_id}: {'ok' if o.ok else 'FAILED'} {o.error}".rstrip())
            bad += 0 if o.ok else 1
            continue
        if not o.ok:
            bad += 1
            print(f"FAILED {o.run_id} (job {o.job_id}, run {o.status}): {o.error}\n    log: {o.log}")
    from slurm.status import collect, format_status

    print(format_status(collect(exp.root)))
    return 1 if bad else 0


def handle_status(args: argparse.Namespace) -> int:
    from slurm.status import collect, format_status

    st = collect(args.experiment)
    print(format_status(st, verbose=args.verbose))
    return 0


def handle_cancel(args: argparse.Namespace) -> int:
    import subprocess

    from slurm.status import collect
    from slurm.watch import FINAL_STATES, normalise_state

    st = collect(args.experiment)
    active = sorted({j.split("_")[0] for j, s in st.jobs.items() if normalise_state(s) not in FINAL_STATES})
    if not active:
        print("no job of this experiment is in the queue")
        return 0
    r = subprocess.run(["scancel", *active], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"scancel failed: {r.stderr.strip()}", file=sys.stderr)
        return 1
    print(f"cancelled {' '.join(active)}")
    return 0
