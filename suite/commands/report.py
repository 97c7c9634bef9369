"""``suite report RESULTS/<experiment>``: Table 1, across-seed statistics, figures and a report.

Reads only the run directories (the on-disk contract), whatever launched them. pandas, seaborn and the
``analysis`` package are imported inside the handler so ``suite --help`` stays fast.
"""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Analyse an experiment folder: the paper statistic per run (mean over the last W epochs of the per-epoch mean
validation Dice, ± its ddof-0 std over those epochs), across-seed means with 95% t-intervals, paired method
comparisons, figures (PNG + SVG) and one report (Markdown + self-contained HTML) written atomically to
RESULTS/<experiment>/report/. Prints the report path and Table 1.

examples:
  suite report RESULTS/paper-paper                       # the report of an experiment
  suite report RESULTS/paper-paper --bootstrap 1000      # and a cluster bootstrap over patients
  suite report RESULTS/demo --out /tmp/r --no-figures    # tables and text only, elsewhere
  suite report RESULTS/fidelity-fidelity --alpha 0.01 --power 0.9   # stricter power statement
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="Table 1, statistics, figures and a report of an experiment",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", help="the experiment folder RESULTS/<experiment> (holds runs/)")
    p.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="W",
        help="epochs averaged per run (default: each run config's stat_window)",
    )
    p.add_argument(
        "--include-partial",
        action="store_true",
        help="include runs still in progress that already have W epochs (flagged)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="also a cluster bootstrap over validation patients with N resamples (default 0: off)",
    )
    p.add_argument(
        "--out", default=None, metavar="DIR", help="report folder (default RESULTS/<experiment>/report)"
    )
    p.add_argument(
        "--cohort",
        choices=("acdc", "phantom"),
        default=None,
        help="override the cohort recorded in experiment.json (acdc: compare with the paper)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="two-sided significance level of the power computation, in [1e-6, 0.5] (default %(default)s)",
    )
    p.add_argument(
        "--power",
        type=float,
        default=0.8,
        help="power of the detectable difference and the seeds needed, in (alpha, 1) (default %(default)s)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the figures (tables and report only)")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from analysis.report import build_report  # it checks every option first, before reading anything

    res = build_report(
        args.experiment,
        window=args.window,
        include_partial=args.include_partial,
        bootstrap=args.bootstrap,
        out=args.out,
        cohort=args.cohort,
        figures=not args.no_figures,
        alpha=args.alpha,
        power=args.power,
    )
    print(f"report: {res.markdown}")
    print(f"html:   {res.html}")
    print()
    print(res.table1_text.rstrip())
    if res.power_text:
        print()
        print(res.power_text.rstrip())
    n_warn = len(res.analysis.warnings)
    if n_warn:
        print(f"\n{n_warn} warning(s): see the report's Warnings section")
    return 0
