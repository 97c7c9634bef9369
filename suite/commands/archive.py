"""``suite archive RESULTS/<experiment> DEST``: copy the finished runs' records, without checkpoints.

    suite archive results/repro-repro docs/evidence/repro      # keep a study's results in the repository
    suite archive /scratch/$USER/results/paper-paper ~/paper   # off a cluster's scratch before it is purged
    suite archive results/repro-repro docs/evidence/repro --dry-run

Each finished run's config.json, env.json, metrics.csv, test_metrics.csv, evaluation.json, run.log and
summary.json go to DEST/runs/<run_id>/, and experiment.json is merged into DEST's (same space, preset, data
and overrides required; runs, seeds and launches add up), so `suite report DEST` reads the archive like the
experiment. Run it again after more runs finish: runs already there with the same bytes are skipped, and a
run whose files differ (the same run finished again elsewhere) is refused before anything is written.
Partial and failed runs are not archived; they resume where they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "archive",
        help="copy an experiment's finished runs' records (no checkpoints) into a folder to keep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", metavar="EXPERIMENT", help="RESULTS/<experiment> (holds runs/)")
    p.add_argument(
        "dest", metavar="DEST", help="the archive folder (created when missing; may hold an earlier archive)"
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be copied and write nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from suite.archive import archive, plan_archive

    src, dest = Path(args.experiment), Path(args.dest)
    if args.dry_run:
        plan = plan_archive(src, dest)
        for run_id, names in plan.new.items():
            print(f"would copy {run_id}: {', '.join(names)}")
        print("dry run: " + plan.summary(src, dest, done=False))
        return 0
    print(archive(src, dest).summary(src, dest))
    return 0
