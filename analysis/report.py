"""``suite report``: one self-contained report of an experiment, written atomically.

``RESULTS/<experiment>/report/`` (or ``--out``) receives ``report.md`` (figures linked from ``figures/``),
``report.html`` (the same text with every figure embedded as base64: one file to mail around), ``tables/``
(Table 1 as Markdown, CSV and LaTeX, and CSVs of every statistic) and ``figures/`` (PNG + SVG). The folder is
built in a temporary sibling and renamed into place, so a reader never sees half a report.

The report states the statistic's definition, the window, the seeds per condition, which runs were excluded
and why, the provenance (data hash, git sha, versions, hardware, launcher) from ``experiment.json`` and
``env.json``, and what the runs cost (:mod:`analysis.cost`, from ``summary.json``). The text is rendered by
:mod:`analysis.report_markdown`, the HTML page by :mod:`analysis.report_html`; this module builds and writes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.load import load_experiment
from analysis.power import ALPHA, POWER, check_levels, power_markdown
from analysis.report_html import markdown_to_html
from analysis.report_markdown import render_markdown
from analysis.report_test_cost import build_test_and_cost
from analysis.stats import Analysis, analyse
from analysis.tables import Table1, table1, table1_markdown, write_tables
from suite.atomic import suite_outputs
from suite.errors import InputError
from suite.paths import ExperimentPaths, output_folder

log = logging.getLogger("analysis.report")


@dataclass
class ReportResult:
    out_dir: Path
    markdown: Path
    html: Path
    table1_text: str
    power_text: str  # analysis.power's section: the smallest detectable difference and the seeds needed
    analysis: Analysis
    table1: Table1
    timings: dict[str, float]


def build_report(
    root: str | Path,
    *,
    window: int | None = None,
    include_partial: bool = False,
    bootstrap: int = 0,
    out: str | Path | None = None,
    cohort: str | None = None,
    figures: bool = True,
    confidence: float = 0.95,
    alpha: float = ALPHA,
    power: float = POWER,
) -> ReportResult:
    """Load, analyse and write the report of ``root`` (``RESULTS/<experiment>``); see the module docstring."""
    if window is not None and window < 1:
        raise InputError(f"--window {window}: must be an integer >= 1 (epochs averaged per run)")
    if bootstrap < 0:
        raise InputError(f"--bootstrap {bootstrap}: must be >= 0 (number of patient resamples; 0 = off)")
    check_levels(alpha, power)
    # a file where the report folder should go is refused before the analysis, not after it
    out_dir = output_folder(Path(out), "--out") if out else ExperimentPaths(Path(root)).report_dir
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    exp = load_experiment(root)
    timings["load_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    a = analyse(
        exp,
        window=window,
        include_partial=include_partial,
        bootstrap=bootstrap,
        confidence=confidence,
        alpha=alpha,
        power=power,
    )
    coh = cohort or exp.cohort
    t1 = table1(a, coh)
    timings["stats_s"] = time.perf_counter() - t
    # the report's own files only: anything else in the folder (a .tex beside report.md, `--out .`) stays
    with suite_outputs(out_dir) as tmp:
        t = time.perf_counter()
        write_tables(a, t1, tmp / "tables")
        a.power.to_csv(tmp / "tables" / "power.csv", index=False)
        timings["tables_s"] = time.perf_counter() - t
        t = time.perf_counter()
        figs: list = []
        notes: list[str] = []
        if figures:
            from analysis.figures import make_figures

            figs, notes = make_figures(a, t1, tmp / "figures")
        else:
            notes.append("figures not drawn (--no-figures)")
        # the held-out test set and the cost: their tables, figures and notes (only where the data exist)
        extra = build_test_and_cost(a, t1, tmp, figures=figures)
        a.warnings.extend(extra.warnings if extra else [])  # runs left out of the test set: in Warnings
        timings["figures_s"] = time.perf_counter() - t
        t = time.perf_counter()
        md = render_markdown(a, t1, coh, figs, notes, elapsed=time.perf_counter() - t0, test_and_cost=extra)
        (tmp / "report.md").write_text(md)
        (tmp / "report.html").write_text(markdown_to_html(md, tmp, f"Report: {exp.name}"))
        (tmp / "analysis.json").write_text(
            json.dumps(
                {
                    "experiment": str(exp.root),
                    "cohort": coh,
                    "window_override": window,
                    "include_partial": include_partial,
                    "bootstrap": bootstrap,
                    "confidence": confidence,
                    "runs": len(exp.runs),
                    "included_segmenter_runs": int(a.run_stats["included"].sum()) if len(a.run_stats) else 0,
                    "warnings": a.warnings,
                    "figures": [f.name for f in figs] + (sorted(extra.figures) if extra else []),
                    "figure_notes": notes + (extra.figure_notes if extra else []),
                    "timings_s": timings,
                },
                indent=2,
                default=_json_default,
            )
            + "\n"
        )
        timings["report_s"] = time.perf_counter() - t
    log.info("report written to %s (%.1f s)", out_dir, time.perf_counter() - t0)
    return ReportResult(
        out_dir=out_dir,
        markdown=out_dir / "report.md",
        html=out_dir / "report.html",
        table1_text=table1_markdown(t1),
        power_text=power_markdown(a.power, a.scale),
        analysis=a,
        table1=t1,
        timings=timings,
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating):
        return o.item()
    return str(o)
