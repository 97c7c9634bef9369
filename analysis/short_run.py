"""What a short run can show, read from one run directory's per-epoch log: the run-level series, and for a
penalty method the penalty and the share of unlabeled slices inside their bounds at the first and the last
epoch with the unlabeled pass. One home for ``scripts/fidelity.py``'s short-run checks and the demo's
per-run lines.

A warm-up epoch (``penalty_warmup``: no unlabeled pass) logs ``loss_penalty`` 0 and no ``in_bounds``, so
the epochs with an ``in_bounds`` row are the epochs with the penalty; the warm-up's zeros would make any
penalty look as if it rose.
"""

from __future__ import annotations

from pathlib import Path

from suite.stages.metrics_log import read_metrics


def run_level_metrics(metrics_csv: Path) -> dict[str, dict[int, float]]:
    """``{split/metric: {epoch: value}}`` of a ``metrics.csv``'s run-level rows (those without a volume), as
    :func:`suite.stages.metrics_log.read_metrics` reads them."""
    out: dict[str, dict[int, float]] = {}
    for r in read_metrics(metrics_csv):
        if not r["volume"]:
            out.setdefault(f"{r['split']}/{r['metric']}", {})[r["epoch"]] = r["value"]
    return out


def penalty_course(m: dict[str, dict[int, float]]) -> dict[str, list[float] | list[int]]:
    """From :func:`run_level_metrics`: ``penalty_first_last``, ``in_bounds_first_last`` and
    ``penalty_epochs`` (the first and the last epoch with the unlabeled pass); empty for a run without one."""
    ib = m.get("train/in_bounds", {})
    if not ib:
        return {}
    first, last = min(ib), max(ib)
    out: dict[str, list[float] | list[int]] = {
        "in_bounds_first_last": [ib[first], ib[last]],
        "penalty_epochs": [first, last],
    }
    pen = {e: v for e, v in m.get("train/loss_penalty", {}).items() if e in ib}
    if pen:
        out["penalty_first_last"] = [pen[min(pen)], pen[max(pen)]]
    return out
