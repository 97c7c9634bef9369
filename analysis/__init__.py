"""From run directories to the paper's Table 1: loading, statistics, tables, figures and the report.

Reads only the on-disk contract (``suite/paths.py``): ``analysis.load`` (tidy pandas tables),
``analysis.stats`` (every statistic of the report, computed once: :class:`~analysis.stats.Analysis`) built
from ``analysis.intervals`` (t-interval, d_z), ``analysis.run_stats`` (conditions, the paper statistic per
run), ``analysis.comparisons`` (across seeds, paired comparisons, patient bootstrap) and
``analysis.summaries`` (regressor error, constraint satisfaction, curves); ``analysis.paper`` (the
published Table 1), ``analysis.tables`` (Table 1 as Markdown, CSV, LaTeX),
``analysis.figures`` (seaborn figures, PNG + SVG) and ``analysis.report`` (``suite report``).
Import the sub-modules directly; this package imports nothing heavy on its own.
"""
