"""Every file name of a run and of an experiment, in one place (the on-disk contract, ARCHITECTURE.md).

RESULTS/<experiment>/
  experiment.json              what was asked: space, preset, data hash, git sha, versions, launcher
  runs/<run_id>/
    config.json                the frozen run config (written before the first step)
    env.json                   git sha, torch/CUDA/ray versions, host, SLURM_JOB_ID, world size
    metrics.csv                append-only, one row per epoch x split x volume (tidy)
    checkpoint_last.pt         model + optimiser + scheduler + epoch + RNG state (resume point)
    checkpoint_best.pt         best-validation model (FS: makes the Proposals pseudo-labels)
    test_metrics.csv           (segmenter) held-out evaluation, a row per checkpoint x split x volume x class
    evaluation.json            what test_metrics.csv was computed from (data hashes, checkpoint epochs)
    summary.json               written last: its presence means the run finished
    predictions/               (regressor) predicted sizes of every slice; (FS) pseudo-labels
    run.log                    the run's log
    failed.json                written when the run raised (error + traceback); removed on success
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

METRICS_COLUMNS = ("epoch", "split", "volume", "metric", "value")
# test_metrics.csv: one row per checkpoint x split x volume x class (LV | Myo | RV); hd95_mm / assd_mm are
# NaN where undefined (exactly one of prediction and truth empty). Written by suite.evaluation, read by
# analysis (which loads no torch: the contract lives here)
TEST_METRICS_CHECKPOINTS = ("final", "best")
TEST_METRICS_SPLITS = ("test", "val")
TEST_METRICS_COLUMNS = (
    "checkpoint",
    "split",
    "patient",
    "phase",
    "volume",
    "class",
    "dice",
    "hd95_mm",
    "assd_mm",
    "volume_true_ml",
    "volume_pred_ml",
    "empty_true",
    "empty_pred",
)
TEST_METRICS_NUMBERS = ("dice", "hd95_mm", "assd_mm", "volume_true_ml", "volume_pred_ml")
# written True | False, the only spellings read back
TEST_METRICS_FLAGS = ("empty_true", "empty_pred")
_CHOICES = {"checkpoint": TEST_METRICS_CHECKPOINTS, "split": TEST_METRICS_SPLITS}


def metrics_row_problem(row: list[str]) -> str | None:
    """Why one parsed ``metrics.csv`` data row breaks the contract (None when it is a valid row): the one rule
    that resuming (cutting the file back) and analysis (naming a damaged line) both apply."""
    if len(row) != len(METRICS_COLUMNS):
        return f"{len(row)} fields, expected {len(METRICS_COLUMNS)}"
    if not row[0].isdigit():
        return f"epoch {row[0][:20]!r} is not a 0-based integer"
    try:
        float(row[4])
    except ValueError:
        return f"value {row[4][:20]!r} is not a number"
    return None


def format_test_metrics(rows: list[dict[str, Any]]) -> str:
    """The text of a ``test_metrics.csv`` holding ``rows`` (dicts with every column): numbers as Python's
    shortest round-trip repr (``nan`` where undefined), flags ``True``/``False``; what
    :func:`parse_test_metrics` reads back to the same values."""

    def cell(value: Any) -> str:
        if isinstance(value, bool | np.bool_):
            return str(bool(value))
        if isinstance(value, float | np.floating):
            return "nan" if math.isnan(value) else repr(float(value))
        return str(value)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(TEST_METRICS_COLUMNS)
    writer.writerows([cell(r[c]) for c in TEST_METRICS_COLUMNS] for r in rows)
    return buf.getvalue()


def parse_test_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``test_metrics.csv``, typed (the numbers float, NaN where undefined; the flags bool; the
    rest strings): the one reader, for the evaluation (is a recorded file intact?) and the report alike. A
    ``ValueError`` names the first line that breaks the contract (wrong columns, a row cut short or too
    long, as a truncated file ends, an empty cell, a value of the wrong kind); ``OSError`` when unreadable."""
    with open(path, newline="") as fh:
        try:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != TEST_METRICS_COLUMNS:
                raise ValueError(f"columns {reader.fieldnames}, expected {','.join(TEST_METRICS_COLUMNS)}")
            return [_test_metrics_row(i, r) for i, r in enumerate(reader, start=2)]
        except csv.Error as e:
            raise ValueError(f"line {reader.line_num}: {e}") from None


def _test_metrics_row(line: int, r: dict[Any, Any]) -> dict[str, Any]:
    if None in r:
        raise ValueError(f"line {line} has more than {len(TEST_METRICS_COLUMNS)} cells")
    if any(v is None or v == "" for v in r.values()):
        raise ValueError(f"line {line} has fewer than {len(TEST_METRICS_COLUMNS)} cells or an empty one")
    row: dict[str, Any] = dict(r)
    for col, allowed in (*_CHOICES.items(), *((c, ("True", "False")) for c in TEST_METRICS_FLAGS)):
        if r[col] not in allowed:
            raise ValueError(f"line {line}: {col} {r[col][:20]!r} is not one of {', '.join(allowed)}")
    for col in TEST_METRICS_FLAGS:
        row[col] = r[col] == "True"
    for col in TEST_METRICS_NUMBERS:
        try:
            row[col] = float(r[col])
        except ValueError:
            raise ValueError(f"line {line}: {col} {r[col][:20]!r} is not a number") from None
    return row


def read_test_metrics(path: Path) -> list[dict[str, Any]]:
    """:func:`parse_test_metrics`, or an ``InputError`` naming the file, what is wrong and the fix: the
    evaluation writes the file again (a run directory's ``suite evaluate`` re-evaluates a damaged one)."""
    from suite.errors import InputError

    try:
        return parse_test_metrics(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ({e}); run `suite evaluate {path.parent}`") from None


def output_folder(path: str | os.PathLike, option: str) -> Path:
    """``path`` as a folder to write into; an existing non-folder there is an input error (one line)."""
    from suite.errors import InputError

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(
            f"{option} {p}: exists and is not a folder; give a folder path (it is created when missing)"
        )
    return p


@dataclass(frozen=True)
class RunPaths:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def checkpoint_last(self) -> Path:
        return self.root / "checkpoint_last.pt"

    @property
    def checkpoint_best(self) -> Path:
        return self.root / "checkpoint_best.pt"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def test_metrics(self) -> Path:
        """Segmenter: the held-out evaluation in the original geometry (``suite.evaluation``); columns
        :data:`TEST_METRICS_COLUMNS`."""
        return self.root / "test_metrics.csv"

    @property
    def evaluation(self) -> Path:
        """What ``test_metrics.csv`` was computed from, per split: data hash, checkpoint epochs, seconds."""
        return self.root / "evaluation.json"

    @property
    def failed(self) -> Path:
        return self.root / "failed.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def sizes(self) -> Path:
        """Regressor: predicted LV size (pixels at the training resolution) of every prepared slice."""
        return self.predictions / "sizes.npz"

    @property
    def pseudo_labels(self) -> Path:
        """FS: pseudo-label masks of the unlabeled training slices (made once)."""
        return self.predictions / "pseudo_labels.npz"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    @property
    def lock(self) -> Path:
        return self.root.parent / f".{self.root.name}.lock"

    @property
    def record_files(self) -> tuple[Path, ...]:
        """The run's record — every file the report, the evaluation's check and a reader of the run need,
        without checkpoints or predictions (``suite archive``); ``summary.json`` last, since its presence
        says the run finished."""
        return (
            *(self.config, self.env, self.metrics, self.test_metrics, self.evaluation, self.log),
            self.summary,
        )

    def is_finished(self) -> bool:
        return self.summary.exists()

    def read_json(self, path: Path) -> dict[str, Any]:
        """One of this run's JSON files as a dict; a damaged one is an :class:`InputError` with a fix that
        works (deleting the file alone may not: a finished run with a damaged checkpoint is not retrained)."""
        from suite.errors import InputError

        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise InputError(
                f"{path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                f"delete the run directory {self.root} to train that run again"
            ) from e
        if not isinstance(doc, dict):
            raise InputError(
                f"{path}: expected a JSON object, found {type(doc).__name__}; "
                f"delete the run directory {self.root} to train that run again"
            )
        return doc

    def status(self) -> str:
        """finished | failed | partial | absent"""
        if self.summary.exists():
            return "finished"
        if self.failed.exists():
            return "failed"
        if self.config.exists():
            return "partial"
        return "absent"


@dataclass(frozen=True)
class ExperimentPaths:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def experiment(self) -> Path:
        return self.root / "experiment.json"

    @property
    def experiment_lock(self) -> Path:
        """Held while a launcher merges its launch into experiment.json."""
        return self.root / ".experiment.json.lock"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run(self, run_id: str) -> RunPaths:
        return RunPaths(self.runs_dir / run_id)

    def all_runs(self) -> list[RunPaths]:
        if not self.runs_dir.is_dir():
            return []
        return [
            RunPaths(p) for p in sorted(self.runs_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")
        ]

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def slurm_dir(self) -> Path:
        return self.root / "slurm"

    @property
    def ray_dir(self) -> Path:
        return self.root / "ray"
