"""``suite slurm submit|status|cancel``: run an experiment on a SLURM cluster with submitit (``slurm/``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Run an experiment (the same options as `suite tune`) on a SLURM cluster.

modes:
  --mode ray    one allocation, Ray inside (default): one job; on one node Ray runs locally, on several
                nodes the Ray head starts on the first host and a worker on each other host (srun), and the
                same Tune driver as `suite tune` runs against that cluster.
  --mode array  no Ray: one array task per run; regressors, FS models and other independent runs first,
                then the runs that need them (--dependency=afterany); --max-parallel caps running tasks.

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
    s.add_argument("--data", required=True, help="prepared dataset (suite prepare), on a shared filesystem")
    s.add_argument("--space", default="smoke", help="search space (default: smoke)")
    s.add_argument("--preset", default=None, help="config preset (default: the space's)")
    s.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: the space's)")
    s.add_argument(
        "--labeled", type=int, nargs="+", default=None, help="labeled counts n (default: the space's)"
    )
    s.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override (repeatable), e.g. --set seg_epochs=10",
    )
    s.add_argument("--out", required=True, help="results folder; the experiment goes to OUT/<experiment>/")
    s.add_argument("--experiment", default=None, help="experiment folder name (default: <space>-<preset>)")
    s.add_argument(
        "--max-parallel",
        type=int,
        default=None,
        help="array mode: at most this many array tasks at once (default: the profile's)",
    )
    s.add_argument("--max-concurrent", type=int, default=None, help="ray mode: concurrent trials")
    s.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="ray mode: GPUs per trial, fractions pack trials on a GPU (e.g. 0.25)",
    )
    s.add_argument("--workers-per-trial", type=int, default=None, help="ray mode: DDP workers per trial")
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


def _request(args: argparse.Namespace) -> Any:
    from search_spaces import get_space
    from slurm.launch import Request
    from suite.errors import InputError

    sp = get_space(args.space)
    preset = args.preset or sp.default_preset
    name = args.experiment or f"{args.space}-{preset}"
    if "/" in name or name.startswith("."):
        raise InputError(f"--experiment {name!r}: a folder name without '/' and not starting with '.'")
    data = Path(args.data).resolve()
    return Request(
        experiment=str(Path(args.out).resolve() / name),
        data=str(data),
        space=args.space,
        preset=args.preset,
        seeds=tuple(args.seeds) if args.seeds else None,
        labeled=tuple(args.labeled) if args.labeled else None,
        overrides=tuple(args.overrides),
        max_concurrent=args.max_concurrent,
        gpus_per_trial=args.gpus_per_trial,
        workers_per_trial=args.workers_per_trial,
    )


def handle_submit(args: argparse.Namespace) -> int:
    from slurm.launch import submit, wait
    from slurm.profiles import load_profile
    from suite.errors import InputError
    from suite.paths import ExperimentPaths

    profile = load_profile(args.profile)
    profile.check_mode(args.mode)
    if args.mode == "ray" and args.max_parallel is not None:
        raise InputError("--max-parallel applies to --mode array; use --max-concurrent for ray mode")
    if args.mode == "array" and any(
        v is not None for v in (args.max_concurrent, args.gpus_per_trial, args.workers_per_trial)
    ):
        raise InputError(
            "--max-concurrent/--gpus-per-trial/--workers-per-trial apply to --mode ray; for "
            "--mode array set the resources of each task in the profile"
        )
    req = _request(args)
    if not args.dry_run:
        import shutil

        if shutil.which("sbatch") is None:
            raise InputError(
                "sbatch not found: run on a SLURM login node (or start a local cluster with "
                "slurm/testing/start-local-cluster.sh), or use --dry-run"
            )
    sub = submit(req, profile, args.mode, dry_run=args.dry_run, max_parallel=args.max_parallel)
    if args.dry_run:
        print(sub.dry_run_text)
        return 0
    exp = ExperimentPaths(Path(req.experiment))
    if not sub.jobs:
        print(f"{exp.root}: every run is finished; nothing submitted")
        return 0
    print(f"submitted {args.mode} job(s) {' '.join(sub.job_ids)} for {exp.root}")
    print(f"record: {exp.slurm_dir / 'submissions.jsonl'}; progress: suite slurm status {exp.root}")
    if not args.wait:
        return 0
    outcomes = wait(sub, exp)
    bad = 0
    for o in outcomes:
        if args.mode == "ray":
            res = o
            print(f"allocation job {res.job_id}: {'ok' if res.ok else 'FAILED'} {res.error}".rstrip())
            bad += 0 if res.ok else 1
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
