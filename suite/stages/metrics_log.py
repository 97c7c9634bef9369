"""The tidy ``metrics.csv`` of a run (``epoch,split,volume,metric,value``): writer, reader, run-level view."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from suite.atomic import write_text_atomic
from suite.errors import InputError
from suite.paths import METRICS_COLUMNS, metrics_row_problem

Row = tuple[int, str, str, str, float]


class MetricsWriter:
    """Append-only tidy ``metrics.csv`` (``epoch,split,volume,metric,value``); values written with ``repr``
    so that they round-trip exactly (resume-equals-uninterrupted compares them bit for bit)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def ensure_header(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            write_text_atomic(self.path, ",".join(METRICS_COLUMNS) + "\n")

    def append(self, rows: Iterable[Row]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for epoch, split, volume, metric, value in rows:
            w.writerow([int(epoch), split, volume, metric, repr(float(value))])
        with open(self.path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def cut_after(self, last_epoch: int) -> int:
        """Keep only the rows of epochs ``<= last_epoch`` (atomic rewrite); returns the rows dropped."""
        if not self.path.exists():
            self.ensure_header()
            return 0
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or tuple(rows[0]) != METRICS_COLUMNS:
            raise InputError(
                f"{self.path}: not a metrics.csv with columns {','.join(METRICS_COLUMNS)}; "
                f"delete the run directory {self.path.parent} to train that run again"
            )
        for line, r in enumerate(rows[1:], start=2):
            why = metrics_row_problem(r) if r else None
            if why:
                raise InputError(
                    f"{self.path}: line {line} is not an (epoch, split, volume, metric, value) row ({why}); "
                    f"delete the run directory {self.path.parent} to train that run again"
                )
        keep = [r for r in rows[1:] if r and int(r[0]) <= last_epoch]
        dropped = len(rows) - 1 - len(keep)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(METRICS_COLUMNS)
        w.writerows(keep)
        write_text_atomic(self.path, buf.getvalue())
        return dropped


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.csv`` as dicts (epoch int, value float)."""
    with open(path, newline="") as f:
        return [{**r, "epoch": int(r["epoch"]), "value": float(r["value"])} for r in csv.DictReader(f)]


def metric_dict(rows: Iterable[Row]) -> dict[str, float]:
    """Run-level rows (empty volume) of one epoch as ``{split/metric: value}``."""
    return {f"{split}/{metric}": float(v) for _, split, volume, metric, v in rows if not volume}
