#!/usr/bin/env python
"""Epoch time of the suite against the authors' ``main.py``, side by side in one run, one thread each.

For each round and method (FS, the Oracle) it trains, one after the other on the same data, initial weights
and data order (``scripts/crosscheck_authors.py`` converts the data to their layout and exports both):

- ``theirs``: the authors' ``main.py`` (``--their-python``, their checkout ``--authors``), timed per epoch
  (training pass + validation) by the cross-check's launcher;
- ``now``: ``python -m suite run`` of this checkout (``epoch_time_s``: training pass + validation);
- ``before`` (with ``--baseline DIR``, a checkout of an earlier commit): the same command from that tree.

Rounds alternate the implementations, so a change of machine load hits all of them; the figures are the
median epoch over every round's epochs but the first (start-up effects). ``uptime``'s load is printed at the
start and the end: take figures on an idle machine.

Usage::

    git worktree add /tmp/before c0d4fdb            # the suite before the speed-ups
    python scripts/bench_vs_authors.py --data PREPARED64 --authors ~/semi_curriculum \\
        --their-python ~/venvs/theirs/bin/python --baseline /tmp/before --epochs 3 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import crosscheck_authors as xc

ROOT = Path(__file__).resolve().parent.parent


def run_suite(tree: Path, argv: list[str], out: Path, log: Path) -> None:
    """``python -m suite <argv>`` from the checkout ``tree``, writing its runs under ``out``. It runs in
    ``tree``: ``-m`` puts the working folder first on ``sys.path``, ahead of ``PYTHONPATH``, so from this
    checkout a baseline tree's ``suite`` would never be imported (the first idle-machine figures compared
    this checkout with itself)."""
    argv = list(argv)
    argv[argv.index("--out") + 1] = str(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SUITE_NO_PBAR": "1"}
    env["PYTHONPATH"] = str(tree)
    with open(log, "w") as f:
        r = subprocess.run(
            [sys.executable, "-m", "suite", *argv], env=env, cwd=tree, stdout=f, stderr=subprocess.STDOUT
        )
    if r.returncode != 0:
        raise RuntimeError(f"suite run from {tree} failed (exit {r.returncode}); log: {log}")


def median_after_first(times: list[list[float]]) -> float:
    return statistics.median([t for run in times for t in run[1:]] or [t for run in times for t in run])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared dataset (suite prepare's output)")
    ap.add_argument("--authors", type=Path, required=True, help="checkout of LIVIAETS/semi_curriculum")
    ap.add_argument("--their-python", required=True, help="the Python that runs their code")
    ap.add_argument("--their-pythonpath", nargs="*", default=[], help="extra folders for their imports")
    ap.add_argument("--baseline", type=Path, help="a checkout of the suite at an earlier commit (optional)")
    ap.add_argument("--methods", nargs="+", default=["fs", "oracle"], choices=["fs", "oracle"])
    ap.add_argument("--labeled", type=int, default=5, help="n labeled (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    ap.add_argument("--split-seed", type=int, default=1, help="split seed (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per timed run (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds over the implementations (default: 2)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-vs-authors"), help="scratch folder")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args(argv)

    earlier = [args.work / sub for sub in ("suite", "theirs") if any((args.work / sub).glob("*"))]
    if earlier:  # their runs would be skipped as finished and their old epoch times reported as new
        print(
            f"--work {args.work}: holds an earlier benchmark's runs ({', '.join(map(str, earlier))}), which "
            "would be reported again, not timed; remove them or pass another --work",
            file=sys.stderr,
        )
        return 2
    from suite.data.dataset import PreparedData
    from suite.log import setup_logging

    setup_logging("WARNING")
    data = PreparedData.open(args.data)
    args.size, args.window = data.size, args.epochs
    args.authors = xc.check_authors(args.authors)
    args.work = args.work.resolve()
    for sub in ("weights", "orders", "theirs", "suite", "logs"):
        (args.work / sub).mkdir(parents=True, exist_ok=True)
    env = xc.their_env(args.authors, [str(Path(p).resolve()) for p in args.their_pythonpath])
    their_torch = xc.check_their_python(args.their_python, env)
    check_cfg = xc.suite_config(xc.suite_argv(args, "oracle", args.seed))
    xc.convert(data, check_cfg, args.work / "data" / "ACDC-2D-LS")
    trees = {"now": ROOT, **({"before": args.baseline.resolve()} if args.baseline else {})}
    load_start = xc.loadavg()
    print(
        f"# load {load_start} at the start; torch ours {xc.torch.__version__}, theirs {their_torch}",
        flush=True,
    )
    times: dict[str, dict[str, list[list[float]]]] = {m: {} for m in args.methods}
    for rnd in range(args.rounds):
        for method in args.methods:
            cfg = xc.suite_config(xc.suite_argv(args, method, args.seed))
            tag = f"bench-{method}-r{rnd}"
            xc.train_theirs(args, cfg, data, env, tag)
            order = json.loads((args.work / "orders" / f"{tag}.json").read_text())
            weight = cfg.lam if method != "fs" else 1.0
            epoch_s = xc.their_epochs(args.work / "theirs" / tag, order, weight)["epoch_s"]
            times[method].setdefault("theirs", []).append(epoch_s)
            for name, tree in trees.items():
                out = args.work / "suite" / f"{name}-r{rnd}"
                t0 = time.perf_counter()
                run_suite(
                    tree, xc.suite_argv(args, method, args.seed), out, args.work / "logs" / f"{tag}-{name}"
                )
                run_dir = out / "runs" / cfg.run_id
                if not run_dir.exists():  # an older tree may name the run otherwise: its only run
                    run_dir = next((out / "runs").iterdir())
                times[method].setdefault(name, []).append(xc.our_epochs(run_dir)["epoch_s"])
                print(f"{method} round {rnd} {name}: {time.perf_counter() - t0:.0f} s", flush=True)
            print(f"{method} round {rnd} theirs: epochs {[round(t, 2) for t in epoch_s]}", flush=True)
    result: dict[str, Any] = {"load_start": load_start, "load_end": xc.loadavg(), "epochs": args.epochs}
    print(f"\n{'method':<7} {'impl':<7} {'median epoch s':>15}  {'theirs / impl':>13}  epochs (s) per round")
    for method, by_impl in times.items():
        theirs = median_after_first(by_impl["theirs"])
        for impl, runs in by_impl.items():
            med = median_after_first(runs)
            result.setdefault(method, {})[impl] = {"median_epoch_s": med, "epochs_s": runs}
            rounds = " | ".join(" ".join(f"{t:.2f}" for t in r) for r in runs)
            print(f"{method:<7} {impl:<7} {med:15.2f}  {theirs / med:12.2f}x  {rounds}")
    print(f"# load {result['load_end']} at the end")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
