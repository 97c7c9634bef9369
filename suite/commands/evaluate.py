"""``suite evaluate``: the held-out evaluation of finished segmenter runs, or of the authors' weights.

    suite evaluate RESULTS/<experiment>       # every finished segmenter run (up-to-date ones skipped)
    suite evaluate RESULTS/<experiment>/runs/<run_id> --split val
    suite evaluate --state-dict best_state_dict.pt --data PREPARED --preset code OUT

Each run's final checkpoint (``checkpoint_last.pt``) and its best-on-validation one (``checkpoint_best.pt``)
predict every volume of the split; the predictions go back to the original matrix (crop undone, nearest on
the label map) and are scored against the original labels with the volume's own spacing: 3-D Dice, HD95 and
ASSD in mm, volumes in ml, per class (LV; Myo and RV too with classes=multi). Rows go to
``RUN/test_metrics.csv`` (one per checkpoint, split, volume and class). A run evaluates its test split itself
after training; this command is for runs trained before, the val split, and converted authors' weights
(``--state-dict``: a state_dict of their ``networks.ENet``, see ``suite.models.authors_weights``; rows
labelled with ``--checkpoint``, by default ``best``, as their ``best.pkl`` is, written to
OUT/test_metrics.csv).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from suite.commands._experiment_args import add_overrides_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="held-out evaluation (test or val split) of finished runs or of the authors' weights",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "path",
        metavar="PATH",
        help="a run directory or an experiment folder; with --state-dict, the output folder",
    )
    p.add_argument("--split", choices=("test", "val"), default="test", help="which split to evaluate")
    p.add_argument("--force", action="store_true", help="evaluate again even when up to date")
    p.add_argument(
        "--data", help="the prepared dataset, when it moved since training (its data_hash must match)"
    )
    p.add_argument(
        "--state-dict",
        dest="state_dict",
        metavar="FILE",
        help="evaluate a state_dict converted from the authors' code instead of runs (needs --data)",
    )
    # defaults applied in _state_dict: None here tells "not given" from "given", to refuse them on runs
    p.add_argument("--preset", help="--state-dict: the preset of the network's config (default code)")
    add_overrides_arg(p, "--state-dict: override a config key")
    p.add_argument(
        "--checkpoint",
        choices=("final", "best"),
        help="--state-dict: the label of its rows (default best: the authors' best.pkl is their best epoch)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from suite.errors import InputError

    if args.state_dict:
        return _state_dict(args)
    given = [
        o
        for o, v in (("--set", args.overrides), ("--preset", args.preset), ("--checkpoint", args.checkpoint))
        if v
    ]
    if given:
        raise InputError(
            f"{' '.join(given)} given without --state-dict: --set/--preset/--checkpoint apply only with "
            "--state-dict (a run is evaluated with its own config.json, on both its checkpoints); drop them"
        )
    from suite.evaluation import evaluate_run, open_run, segmenter_runs
    from suite.stages.base import configure_torch, select_device

    done = skipped = 0
    failed: list[str] = []
    runs = segmenter_runs(Path(args.path))
    for paths in runs:
        if not paths.is_finished():
            print(f"{paths.run_id}: not finished ({paths.status()}): skipped")
            continue
        try:
            cfg, data = open_run(paths, args.data)
            if cfg.stage != "segmenter":
                continue
            device = select_device(cfg)
            configure_torch(cfg, device)
            fresh = evaluate_run(cfg, paths, data, device, args.split, force=args.force)
        except InputError as e:
            if len(runs) == 1 and (Path(args.path) / "config.json").is_file():
                raise
            # one bad run does not stop the others; each is named with its reason, the exit code says it
            failed.append(paths.run_id)
            print(f"{paths.run_id}: failed: {e}")
            continue
        if fresh:
            done += 1
            print(f"{paths.run_id}: {args.split} split evaluated -> {paths.test_metrics}")
        else:
            skipped += 1
            print(f"{paths.run_id}: up to date")
    if failed:
        raise InputError(
            f"{args.path}: {len(failed)} run(s) not evaluated ({', '.join(failed[:6])}"
            f"{' …' if len(failed) > 6 else ''}); each run's reason and fix are printed above"
        )
    if done + skipped == 0:
        raise InputError(f"{args.path}: no finished segmenter run to evaluate; train one with suite run")
    return 0


def _state_dict(args: argparse.Namespace) -> int:
    import time

    from suite.atomic import write_json_atomic
    from suite.config import RunConfig
    from suite.errors import InputError
    from suite.evaluation import evaluate_network, merge_record, read_record, write_rows
    from suite.models import build_segmenter, load_authors_state_dict
    from suite.paths import ExperimentPaths, output_folder
    from suite.stages.base import configure_torch, open_data, select_device

    if not args.data:
        raise InputError("suite evaluate --state-dict: --data PREPARED is required (the prepared dataset)")
    out = output_folder(args.path, "OUT")
    if (out / "config.json").exists() or (out / "runs").is_dir() or ExperimentPaths(out).experiment.exists():
        # its test_metrics.csv and evaluation.json are the run's own record of its checkpoints
        raise InputError(
            f"OUT {out}: a run directory or an experiment folder; give a folder of its own for the "
            "state_dict's rows (e.g. results/authors-eval)"
        )
    checkpoint = args.checkpoint or "best"
    cfg = RunConfig.from_preset(args.preset or "code", data=str(Path(args.data).resolve()))
    cfg, data = open_data(cfg.with_overrides(args.overrides))
    state = _read_state_dict(Path(args.state_dict))
    device = select_device(cfg)
    configure_torch(cfg, device)
    net = load_authors_state_dict(build_segmenter(cfg), state).to(device).eval()
    t0 = time.perf_counter()
    rows = evaluate_network(net, cfg, data, args.split, checkpoint, device)
    out.mkdir(parents=True, exist_ok=True)
    written = write_rows(out / "test_metrics.csv", rows, {(checkpoint, args.split)})
    entry = {
        "state_dict": str(Path(args.state_dict).resolve()),
        "checkpoint": checkpoint,
        "config": cfg.to_dict(),
        "rows": sum(1 for r in written if r["split"] == args.split),
        "seconds": time.perf_counter() - t0,
    }
    # one entry per split, as a run's record: a --split val call keeps the test entry its rows still match
    record = merge_record(read_record(out / "evaluation.json"), args.split, entry, written)
    record.update(state_dict=entry["state_dict"], config=entry["config"])  # the latest call's, as before
    write_json_atomic(out / "evaluation.json", record)
    print(f"{args.state_dict}: {args.split} split evaluated -> {out / 'test_metrics.csv'}")
    return 0


def _read_state_dict(path: Path) -> dict:
    """A converted state_dict file: a dict of tensors by name, or one line naming the file and the fix."""
    import torch

    from suite.errors import InputError
    from suite.inference import not_weights

    convert = "convert the authors' pickle with `torch.save(model.state_dict(), FILE)` in their environment"
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise InputError(f"--state-dict {path}: {what}; give the converted state_dict ({convert})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for an unreadable file
        raise InputError(f"{path}: not a loadable state_dict ({type(e).__name__}); {convert}") from None
    why = not_weights(state)
    if why is not None:
        raise InputError(f"{path}: not a state_dict: it {why}; {convert}")
    return state
