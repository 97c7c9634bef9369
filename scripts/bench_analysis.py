"""Benchmark of ``suite report`` at scale: 1,000 segmenter runs x 100 epochs x 40 validation volumes.

Generates synthetic, contract-conformant run directories once (``suite.testing.synthetic_runs``: the full
metrics.csv vocabulary, ~17k rows per segmenter run; plus one regressor run per (n, seed)), then times

  1. load (every config.json, summary.json, metrics.csv -> tidy tables),
  2. statistics (per-run paper statistic, across seeds, paired comparisons, per-volume, regressor,
     constraint),
  3. tables (Table 1 md/csv/tex + CSVs),
  -- the target: 1 + 2 + 3 under 60 s on 2 cores --
  4. figures (PNG + SVG) and the report (Markdown + HTML), separately.

    python scripts/bench_analysis.py                 # generate into a temp dir, time, delete
    python scripts/bench_analysis.py --dir /tmp/b    # keep (and reuse) the generated runs

Prints a Markdown block for BENCHMARKS.md with the machine load (``uptime``) before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from suite.config import METHODS  # noqa: E402

NS = (5, 10, 20, 30, 40)
BASE = {"fs": 0.55, "proposals": 0.45, "proposed": 0.68, "oracle": 0.76}


def _write_chunk(args: tuple[str, list[tuple[str, int, int]], int, int]) -> int:
    from suite.seeding import derive_seed
    from suite.testing.synthetic_runs import default_volumes, write_run

    root, jobs, epochs, n_vol = args
    vols = default_volumes(n_vol // 2)
    for method, n, seed in jobs:
        if method == "regressor":
            write_run(
                root,
                stage="regressor",
                n_labeled=n,
                seed=seed,
                epochs=epochs,
                preset="paper",
                float_format="%.6g",
                reg_err=np.full(epochs, 300.0 / n) + seed % 7,
            )
            continue
        rng = np.random.default_rng(derive_seed(0, "bench", method, n, seed))
        ep = np.arange(epochs)[:, None]
        level = BASE[method] + 0.004 * n
        dice = np.clip(
            level * (1 - np.exp(-ep / 15)) + rng.normal(0, 0.05, (epochs, n_vol)) + rng.normal(0, 0.02), 0, 1
        )
        write_run(
            root,
            method=method,
            n_labeled=n,
            seed=seed,
            epochs=epochs,
            stat_window=50,
            preset="paper",
            volumes=vols,
            dice=dice,
            float_format="%.6g",
            val_examples=seed == 0,
            wall_time_s=float(rng.uniform(600, 900)),
            device="cuda:0",
        )
    return len(jobs)


def generate(root: Path, runs: int, epochs: int, n_vol: int, workers: int) -> float:
    from suite.testing.synthetic_runs import write_experiment

    t = time.perf_counter()
    write_experiment(root, cohort="phantom", space="bench", preset="paper")
    seeds = max(1, runs // (len(METHODS) * len(NS)))
    jobs = [(m, n, s) for s in range(seeds) for n in NS for m in METHODS][:runs]
    jobs += [("regressor", n, s) for s in range(seeds) for n in NS]
    chunks = [jobs[i :: workers * 4] for i in range(workers * 4)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = sum(pool.map(_write_chunk, [(str(root), c, epochs, n_vol) for c in chunks]))
    (root / ".bench-complete").write_text(f"{runs} {epochs} {n_vol}\n")
    print(f"generated {done} run directories in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return time.perf_counter() - t


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        return "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--volumes", type=int, default=40)
    p.add_argument("--dir", default=None, help="keep the generated runs here (reused when complete)")
    p.add_argument("--workers", type=int, default=2, help="processes generating the runs")
    p.add_argument("--no-figures", action="store_true")
    args = p.parse_args()

    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-analysis-"))
    root = base / "bench-exp"
    marker = root / ".bench-complete"
    gen_s = None
    if not (
        marker.exists()
        and marker.read_text().split() == [str(args.runs), str(args.epochs), str(args.volumes)]
    ):
        shutil.rmtree(root, ignore_errors=True)
        gen_s = generate(root, args.runs, args.epochs, args.volumes, args.workers)
    size_mb = sum(f.stat().st_size for f in root.rglob("metrics.csv")) / 2**20

    from analysis.figures import make_figures
    from analysis.load import load_experiment
    from analysis.report_html import markdown_to_html
    from analysis.report_markdown import render_markdown
    from analysis.stats import analyse
    from analysis.tables import table1, write_tables

    def cpu() -> float:  # CPU seconds of this process (all threads): what an idle machine would need
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    up0 = uptime()
    t0, c0 = time.perf_counter(), cpu()
    exp = load_experiment(root)
    t1, c1 = time.perf_counter(), cpu()
    a = analyse(exp)
    tab = table1(a, exp.cohort)
    t2, c2 = time.perf_counter(), cpu()
    out = Path(tempfile.mkdtemp(prefix="bench-report-"))
    write_tables(a, tab, out / "tables")
    t3, c3 = time.perf_counter(), cpu()
    figs, notes = ([], ["--no-figures"]) if args.no_figures else make_figures(a, tab, out / "figures")
    t4, c4 = time.perf_counter(), cpu()
    md = render_markdown(a, tab, exp.cohort, figs, notes, elapsed=t4 - t0)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(markdown_to_html(md, out, "bench"))
    t5, c5 = time.perf_counter(), cpu()
    up1 = uptime()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_seg = int((exp.runs["stage"] == "segmenter").sum())
    core = t3 - t0
    load = (
        f"load ({len(exp.runs)} run dirs: {n_seg} segmenter + {len(exp.runs) - n_seg} regressor; "
        f"{len(exp.metrics):,} metric rows; {size_mb:.0f} MiB of metrics.csv)"
    )
    stats = (
        "statistics (per-run statistic, across seeds, paired, per-volume, regressor, constraint) + Table 1"
    )
    print(f"""
| step | wall s | CPU s |
|---|---|---|
| {load} | {t1 - t0:.1f} | {c1 - c0:.1f} |
| {stats} | {t2 - t1:.1f} | {c2 - c1:.1f} |
| tables (md, csv, tex + CSVs) | {t3 - t2:.1f} | {c3 - c2:.1f} |
| **load + statistics + tables** (target < 60 s) | **{core:.1f}** | **{c3 - c0:.1f}** |
| figures ({len(figs)}, PNG + SVG) | {t4 - t3:.1f} | {c4 - c3:.1f} |
| report (Markdown + HTML with embedded figures) | {t5 - t4:.1f} | {c5 - c4:.1f} |
| total | {t5 - t0:.1f} | {c5 - c0:.1f} |

peak RSS {rss:.0f} MiB; {os.cpu_count()} CPUs; generation {"reused" if gen_s is None else f"{gen_s:.0f} s"}
load before: `{up0}`
load after: `{up1}`
""")
    shutil.rmtree(out, ignore_errors=True)
    if not args.dir:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if core < 60 else 1


if __name__ == "__main__":
    sys.exit(main())
