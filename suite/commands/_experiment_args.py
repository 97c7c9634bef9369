"""The options that ``suite tune`` and ``suite slurm submit`` share, declared once, and the one
:class:`~suite.experiment_spec.ExperimentSpec` built from them (this module is not a sub-command: the CLI
skips names that start with ``_``)."""

from __future__ import annotations

import argparse
from typing import Any

from search_spaces import SPACES
from suite.experiment_spec import RAY_OPTIONS, SEARCH_MODES


def add_experiment_args(p: argparse.ArgumentParser) -> None:
    """What to run and where its results go."""
    p.add_argument("--data", required=True, help="prepared dataset folder (made by suite prepare)")
    p.add_argument(
        "--space",
        default="smoke",
        help=f"search space: {', '.join(SPACES)} (default smoke)",
    )
    p.add_argument("--preset", help="config preset (default: the space's own: paper, or smoke/fidelity)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="training seeds (default: the space's)")
    p.add_argument(
        "--labeled",
        type=int,
        nargs="+",
        metavar="N",
        help="replace the space's n-labeled values (paper scale, e.g. --labeled 5 10)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="M",
        help="keep only these segmenter methods of the space (fs proposals proposed oracle)",
    )
    p.add_argument("--out", required=True, help="results folder; the experiment goes to OUT/<experiment>/")
    p.add_argument("--experiment", help="experiment folder name (default <space>-<preset>)")
    add_overrides_arg(p, "override a config key for every run")
    p.add_argument(
        "--search",
        choices=SEARCH_MODES,
        default="grid",
        help="random: sample gamma and lambda with Ray Tune's samplers (space sensitivity)",
    )
    p.add_argument(
        "--num-samples",
        dest="num_samples",
        type=int,
        metavar="K",
        help="random search: number of (gamma, lambda) draws (default 10)",
    )
    p.add_argument(
        "--search-seed",
        dest="search_seed",
        type=int,
        default=0,
        help="random search: seed of the draws (recorded in experiment.json)",
    )


def add_overrides_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--set KEY=VALUE`` (repeatable), the config overrides of every launcher."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{what} (repeatable), e.g. --set seg_epochs=10; `suite run --list-keys` lists the keys",
    )


def add_ray_args(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """How the Ray Tune driver runs the trials (``prefix`` qualifies the help, e.g. "ray mode: ")."""
    p.add_argument(
        "--gpus-per-trial",
        dest="gpus_per_trial",
        type=float,
        metavar="G",
        help=prefix
        + "GPUs per trial (default 0; fractions share a GPU), per worker with --workers-per-trial",
    )
    p.add_argument(
        "--workers-per-trial",
        dest="workers_per_trial",
        type=int,
        metavar="K",
        help=prefix + "DDP workers per run through Ray Train (default 1: no Train start-up)",
    )
    p.add_argument(
        "--cpus-per-trial",
        dest="cpus_per_trial",
        type=float,
        metavar="C",
        help=prefix + "CPUs reserved per trial (per worker with DDP); default the config's threads",
    )
    p.add_argument(
        "--max-concurrent",
        dest="max_concurrent",
        type=int,
        metavar="K",
        help=prefix + "at most K trials at once (default: as many as the CPUs/GPUs fit)",
    )
    p.add_argument(
        "--max-failures",
        dest="max_failures",
        type=int,
        metavar="M",
        help=prefix + "retries of a crashed trial / worker group from its last checkpoint (default 1)",
    )
    p.add_argument(
        "--use-train",
        dest="use_train",
        action="store_true",
        default=None,
        help=prefix + "run single-worker trials through Ray Train too (slower start-up; same numbers)",
    )


def spec_from_args(args: argparse.Namespace, **fixed: Any) -> Any:
    """The :class:`~suite.experiment_spec.ExperimentSpec` of the parsed options (a Ray option only when
    given; options a command does not declare keep the spec's defaults); ``fixed`` adds or overrides
    fields (e.g. ``launcher``)."""
    from suite.experiment_spec import ExperimentSpec

    # the Ray driver options only when given: the spec's defaults apply otherwise, and `suite slurm submit
    # --mode array` can tell an option that was set from one that was not
    given = {k: getattr(args, k) for k in (*RAY_OPTIONS, "resume") if getattr(args, k, None) is not None}
    return ExperimentSpec(
        data=args.data,
        space=args.space,
        preset=args.preset,
        seeds=args.seeds,
        out=args.out,
        experiment=args.experiment,
        labeled=args.labeled,
        methods=args.methods,
        overrides=args.overrides,
        search=args.search,
        num_samples=args.num_samples,
        search_seed=args.search_seed,
        **{**given, **fixed},
    )
