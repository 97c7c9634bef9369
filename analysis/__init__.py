"""From run directories to the paper's Table 1: loading, statistics, tables, figures and the report.

Reads only the on-disk contract (DESIGN.md section 3, ``suite/paths.py``): ``analysis.load`` (tidy pandas
tables), ``analysis.stats`` (the paper statistic per run, across-seed intervals, paired comparisons,
bootstrap), ``analysis.paper`` (the published Table 1), ``analysis.tables`` (Table 1 as Markdown, CSV, LaTeX),
``analysis.figures`` (seaborn figures, PNG + SVG) and ``analysis.report`` (``suite report``).
Import the sub-modules directly; this package imports nothing heavy on its own.
"""
