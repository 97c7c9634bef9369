"""``suite run``: one run of one stage, on this machine, without Ray (prerequisites built first).

    suite run --data PREPARED --stage segmenter --method proposed --labeled 10 --seed 0 \\
              --gamma 0.1 --lam 0.01 --preset smoke --out RESULTS/exp1

The config is built in this order: the preset (``--preset``, default ``paper``) or a YAML ``--config`` file
(which may name its own preset), then the explicit options, then ``--set key=value`` overrides. ``OUT`` is an
experiment folder: the run goes to ``OUT/runs/<run_id>/`` and is recorded in ``OUT/experiment.json``.
A finished run is skipped, a partial one resumed.

Before training, the plan goes to the log (stderr): the runs in order, prerequisites first, with stage,
method, epochs, image size, device and a rough time estimate, and a warning when paper-scale work is started
on a CPU (``--preset smoke`` is the quick check). ``--dry-run`` stops there. Inside epochs a progress bar
(steps, rate, ETA) is shown on a terminal (not under CI or with ``SUITE_NO_PBAR`` set).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from suite.commands._experiment_args import add_overrides_arg

log = logging.getLogger("suite.commands.run")

# CLI option → config field
_FIELDS = {
    "stage": "stage",
    "method": "method",
    "labeled": "n_labeled",
    "seed": "seed",
    "gamma": "gamma",
    "lam": "lam",
    "split_mode": "split_mode",
    "split_seed": "split_seed",
    "device": "device",
}


def register(subparsers: Any) -> None:
    from suite.config import METHODS

    p = subparsers.add_parser(
        "run",
        help="train one run (regressor or segmenter) on this machine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", help="prepared dataset folder (made by suite prepare)")
    p.add_argument("--out", help="experiment folder (required); the run goes to OUT/runs/<run_id>/")
    p.add_argument("--stage", choices=["regressor", "segmenter"], help="default: segmenter")
    p.add_argument("--method", choices=METHODS, help="segmenter method")
    p.add_argument("--labeled", type=int, metavar="N", help="number of labeled patients (paper scale)")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--gamma", type=float, help="bound tightness gamma")
    p.add_argument("--lam", type=float, help="penalty weight lambda")
    p.add_argument("--split-mode", dest="split_mode", choices=["paper", "random"])
    p.add_argument("--split-seed", dest="split_seed", type=int)
    p.add_argument("--preset", help="named preset (paper, code, smoke, fidelity); default paper")
    p.add_argument("--config", help="YAML file of config keys (may name a preset)")
    add_overrides_arg(p, "override a config key")
    p.add_argument(
        "--list-keys",
        dest="list_keys",
        action="store_true",
        help="print every config key with its value in --preset (default paper) and the values it accepts, "
        "then exit",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="log the plan (the runs, prerequisites first, with a rough time estimate), then exit",
    )
    p.add_argument(
        "--stop-after-epoch", dest="stop_after_epoch", type=int, default=None, help=argparse.SUPPRESS
    )  # tests: leave a partial run after this epoch
    p.set_defaults(func=handle)


def build_config(args: argparse.Namespace) -> Any:
    """Preset or YAML, then the explicit options, then ``--set`` (unknown keys → ConfigError, exit 2)."""
    from suite.config import RunConfig
    from suite.errors import ConfigError

    if args.config:
        cfg = RunConfig.from_yaml(args.config, preset=args.preset)
    else:
        cfg = RunConfig.from_preset(args.preset or "paper")
    changes: dict[str, Any] = {}
    for opt, key in _FIELDS.items():
        v = getattr(args, opt, None)
        if v is not None:
            changes[key] = v
    if changes.get("stage", cfg.stage) == "regressor":
        if args.method:
            raise ConfigError("--method applies to the segmenter stage; drop it with --stage regressor")
        changes["method"] = "regressor"
    if args.data:
        changes["data"] = str(Path(args.data).resolve())
    if changes:
        cfg = RunConfig.from_dict({**cfg.to_dict(include_derived=False), **changes}, source="options")
    if args.overrides:
        cfg = cfg.with_overrides(args.overrides)
        for key in dict.fromkeys(item.partition("=")[0].strip() for item in args.overrides):
            if key in RunConfig.field_names() and not cfg.acts_on(key):
                log.warning(
                    "--set %s: has no effect on this %s run (not part of its run id); drop it, or change "
                    "the method or the field it depends on",
                    key,
                    cfg.method if cfg.stage == "segmenter" else "regressor",
                )
    if not cfg.data:
        raise ConfigError("no prepared dataset: pass --data PREPARED (or set data: in the --config file)")
    return cfg


def write_experiment(out: Path, cfg: Any, data_hash: str) -> None:
    """Record this run in ``OUT/experiment.json`` (launcher local; merged with what the folder holds)."""
    from suite.experiment import ExperimentRecord, now_iso, record_launch, run_entry
    from suite.paths import ExperimentPaths
    from suite.provenance import git_sha, versions

    exp = ExperimentPaths(out)
    record = ExperimentRecord(
        name=exp.root.resolve().name,
        launcher="local",
        data=cfg.data,
        data_hash=data_hash,
        preset=cfg.preset,
        seeds=[cfg.seed],
        labeled=[cfg.n_labeled],
        git_sha=git_sha(),
        versions=versions(),
        runs={cfg.run_id: run_entry(cfg, requested=True)},
    )
    record_launch(exp, record, {"at": now_iso(), "launcher": "local", "command": ["suite", *sys.argv[1:]]})


# exit code of a run that stopped before its last epoch (SIGTERM, SIGUSR1, --stop-after-epoch): EX_TEMPFAIL,
# "try again later" — rerunning the same command resumes it. Non-zero, so `suite run ... && suite report ...`
# does not report a half-trained run as if it were done.
EXIT_PARTIAL = 75


def list_keys(preset: str | None) -> int:
    """``suite run --list-keys``: one line per config key: its value in the preset, the values it accepts."""
    import json

    from suite.config import RunConfig

    cfg = RunConfig.from_preset(preset or "paper")
    print(f"config keys (values of preset {cfg.preset!r}; change with --set KEY=VALUE or a --config YAML):")
    for name in RunConfig.field_names():
        value = json.dumps(cfg.to_dict(include_derived=False)[name])  # as --set reads it (YAML)
        print(f"  {name:<20} {value:<24} {RunConfig.domain(name).describe()}")
    return 0


def handle(args: argparse.Namespace) -> int:
    from suite.errors import InputError
    from suite.paths import ExperimentPaths
    from suite.run_plan import log_plan, plan
    from suite.stages.base import device_type, open_data
    from suite.stages.runner import execute

    if args.list_keys:
        return list_keys(args.preset)
    if not args.out:
        raise InputError("suite run: --out is required; give the experiment folder, e.g. --out results/exp1")
    from suite.paths import output_folder

    out = output_folder(args.out, "--out")
    cfg = build_config(args)
    cfg, data = open_data(cfg)
    device = device_type(cfg)
    log_plan(plan(cfg, ExperimentPaths(out), data, device), device)  # stderr: stdout's first line is the run
    if args.dry_run:
        return 0
    write_experiment(out, cfg, data.data_hash)
    paths = execute(cfg, out, stop_after_epoch=args.stop_after_epoch)
    print(paths.root)
    if paths.summary.exists():
        summary = paths.read_json(paths.summary)
        print(
            f"finished {summary['run_id']}: best epoch {summary['best_epoch']} "
            f"({summary.get('selection_metric', 'selection')}={summary['best_value']:.4f})"
        )
        for k, v in sorted(summary.get("final", {}).items()):
            print(f"  {k} = {v:.6g}")
        return 0
    print(
        f"stopped early ({paths.status()}): the run did not finish; rerun the same command to resume",
        file=sys.stderr,
    )
    return EXIT_PARTIAL
