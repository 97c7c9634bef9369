"""The held-out evaluation: a segmenter's final (and best-on-validation) checkpoint on the test split, once,
after training, in the original geometry against the original labels.

Each volume's slices are predicted at the run's ``image_size`` (softmax, eval mode), the class probabilities
taken back to the original matrix and their arg-max taken there
(:func:`suite.data.geometry.probabilities_to_original`: bilinear per channel, the crop undone; the way back
``suite export`` shares), then turned into ACDC labels (:func:`suite.models.label_map`). Per volume and
class (LV; Myo and RV too when ``classes=multi``), :func:`suite.metrics.class_metrics` gives 3-D Dice, HD95
and ASSD in mm with the volume's own spacing and the volumes in ml. Rows go to ``RUN/test_metrics.csv``
(tidy, :data:`COLUMNS`), what they were computed from to ``RUN/evaluation.json``; both atomically.

The test split is opened only here, and only after the last epoch (the runner calls
:func:`evaluate_after_training` after the stage's ``finish``, before ``summary.json``: a run resumed after
training but before its evaluation does it again, idempotently);
selection, early stopping and the lr rule never see it (tests/test_evaluation.py poisons it to check).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.atomic import write_json_atomic, write_text_atomic
from suite.config import RunConfig
from suite.constraints import reported_labels
from suite.data.dataset import PreparedData
from suite.data.geometry import Originals, VolumeGeometry, prepare_command, probabilities_to_original
from suite.errors import InputError
from suite.inference import Weights, checkpoint_path, network, predict_probabilities, read_checkpoint
from suite.metrics import CLASS_LABELS, class_metrics
from suite.models import label_map
from suite.paths import (
    TEST_METRICS_CHECKPOINTS,
    TEST_METRICS_COLUMNS,
    TEST_METRICS_SPLITS,
    RunPaths,
    format_test_metrics,
    parse_test_metrics,
)
from suite.stages.base import open_data

log = logging.getLogger("suite.evaluation")

# how a prediction went back to the original matrix, recorded with the rows: an evaluation recorded without it
# took the label map back by nearest neighbour (other HD95/ASSD), so `suite evaluate` computes it again rather
# than keep rows of two definitions side by side
WAY_BACK = "probabilities"

# the on-disk contract (analysis reads it without torch, so it lives in suite.paths)
CHECKPOINTS, SPLITS, COLUMNS = TEST_METRICS_CHECKPOINTS, TEST_METRICS_SPLITS, TEST_METRICS_COLUMNS


def evaluated_classes(cfg: RunConfig) -> dict[str, int]:
    """Class name → ACDC label of the classes a run is evaluated on: LV, plus Myo and RV with
    ``classes=multi`` or ``constrained=all`` (``suite.constraints.reported_labels``: a network trained and
    constrained on LV only has no other foreground class)."""
    labels = reported_labels(cfg)
    return {name: label for name, label in CLASS_LABELS.items() if label in labels}


# ---------------------------------------------------------------------------------------------- data
def split_data(data: PreparedData, cfg: RunConfig, split: str) -> tuple[PreparedData, list[str]]:
    """The prepared dataset holding ``split`` and the names of its volumes: ``test``, every volume of the test
    split beside ``data``; ``val``, the run's segmenter-validation patients."""
    if split == "test":
        test = data.test_split()
        if test is None:
            raise InputError(
                f"{data.path}: has no test split; prepare a source folder with a testing/ folder (ACDC's "
                "parent folder, or `suite phantom --test-patients N`) or use --split val"
            )
        return test, list(test.volumes)
    if split == "val":
        patients = set(data.split(cfg.n_labeled, cfg.split_mode, cfg.split_seed).val_seg)
        return data, [v["volume"] for v in data.manifest["volumes"] if v["patient"] in patients]
    raise InputError(f"--split {split!r}: choose test or val")


# ---------------------------------------------------------------------------------------------- predict
def predicted_volumes(
    net: torch.nn.Module, cfg: RunConfig, data: PreparedData, volumes: list[str], device: torch.device
) -> Iterator[tuple[VolumeGeometry, dict[str, Any], np.ndarray]]:
    """``(geometry, manifest record, label map (X, Y, Z) in the original geometry)`` of each volume."""
    images, _ = data.resized(cfg.image_size)
    crop = float(data.manifest.get("options", {}).get("crop", 1.0))
    wanted = set(volumes)
    for rec in data.manifest["volumes"]:
        if rec["volume"] not in wanted:
            continue
        geom = VolumeGeometry.from_record(rec, crop)
        probs = predict_probabilities(net, cfg, images[rec["start"] : rec["stop"]], device)
        channels = probabilities_to_original(probs, geom)
        yield geom, rec, label_map(cfg, torch.from_numpy(channels)).numpy()


# ---------------------------------------------------------------------------------------------- metrics
def evaluate_network(
    net: torch.nn.Module,
    cfg: RunConfig,
    data: PreparedData,
    split: str,
    checkpoint: str,
    device: torch.device,
) -> list[dict[str, Any]]:
    """The rows of one network on one split (:data:`COLUMNS`)."""
    split_ds, volumes = split_data(data, cfg, split)
    originals = Originals(split_ds.path)
    rows: list[dict[str, Any]] = []
    try:
        for geom, rec, pred in predicted_volumes(net, cfg, split_ds, volumes, device):
            true = originals.label(geom.volume)
            if true.shape != pred.shape:
                raise InputError(
                    f"{originals.path}: label of {geom.volume} has shape {true.shape}, the manifest says "
                    f"{pred.shape}; rerun `{prepare_command(split_ds.path)}`"
                )
            for name, label in evaluated_classes(cfg).items():
                m = class_metrics(pred == label, true == label, geom.spacing)
                rows.append(
                    {
                        "checkpoint": checkpoint,
                        "split": split,
                        "patient": rec["patient"],
                        "phase": rec["frame"],
                        "volume": geom.image_name,
                        "class": name,
                        **m,
                    }
                )
    finally:
        originals.close()
    return rows


def damage(path: Path, record: dict[str, Any], split: str) -> str | None:
    """Why ``test_metrics.csv`` does not hold what ``evaluation.json`` records for ``split`` (None when it
    does): missing, unreadable, or another number of rows of that split (e.g. a file cut at a row's end)."""
    try:
        rows = parse_test_metrics(path)
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, ValueError) as e:
        return f"{path.name} is unreadable ({e})"
    have, want = sum(1 for r in rows if r["split"] == split), _entry(record, split).get("rows")
    return None if have == want else f"{path.name} holds {have} {split} rows, evaluation.json records {want}"


def write_rows(
    path: Path, rows: list[dict[str, Any]], replaced: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Write ``rows`` to ``test_metrics.csv`` atomically, keeping the existing rows of every (checkpoint,
    split) not in ``replaced``; an unreadable existing file (the suite's own) is replaced whole (logged).
    Returns every row written."""
    kept: list[dict[str, Any]] = []
    if path.exists():
        try:
            kept = [r for r in parse_test_metrics(path) if (r["checkpoint"], r["split"]) not in replaced]
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable (%s); replaced by the rows evaluated now", path, e)
    write_text_atomic(path, format_test_metrics(kept + rows))
    return kept + rows


def merge_record(
    record: dict[str, Any], split: str, entry: dict[str, Any], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """``record`` (``evaluation.json``) with ``split``'s entry set and the entries of other splits dropped
    when the written ``rows`` no longer hold their recorded number of rows (their rows were lost with a
    damaged file): the record says only what ``test_metrics.csv`` holds."""
    record[split] = entry
    for other in [k for k in SPLITS if k != split and k in record]:
        if sum(1 for r in rows if r["split"] == other) != _entry(record, other).get("rows"):
            del record[other]
    return record


# ---------------------------------------------------------------------------------------------- runs
def _checkpoints(paths: RunPaths, device: torch.device) -> dict[str, Weights]:
    """The run's final and best checkpoints that exist, each read once."""
    return {
        name: read_checkpoint(paths, name, device)
        for name in CHECKPOINTS
        if checkpoint_path(paths, name).is_file()
    }


def read_record(path: Path) -> dict[str, Any]:
    """``evaluation.json``, the suite's own record of what was evaluated; unreadable → no record (logged): it
    is only needed to skip an up-to-date evaluation, so a damaged one means evaluate again."""
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        record = e
    if isinstance(record, dict):
        return record
    what = f"{type(record).__name__}: {record}" if isinstance(record, Exception) else type(record).__name__
    log.warning("%s: unreadable (%s); ignored: the split is evaluated again", path, what.splitlines()[0])
    return {}


def _entry(record: dict[str, Any], split: str) -> dict[str, Any]:
    entry = record.get(split)
    return entry if isinstance(entry, dict) else {}


def evaluate_run(
    cfg: RunConfig,
    paths: RunPaths,
    data: PreparedData,
    device: torch.device,
    split: str = "test",
    force: bool = False,
) -> bool:
    """Evaluate a segmenter run's final and best checkpoints on ``split`` into ``test_metrics.csv``; False
    when it was up to date (same data, same checkpoint epochs) and nothing was done."""
    split_ds, _ = split_data(data, cfg, split)
    weights = _checkpoints(paths, device)
    epochs = {name: w.epoch for name, w in weights.items()}
    want = {"data_hash": split_ds.data_hash, "checkpoint_epochs": epochs, "way_back": WAY_BACK}
    record = read_record(paths.evaluation)
    if not force and _entry(record, split).get("source") == want:
        why = damage(paths.test_metrics, record, split)
        if why is None:
            log.info("%s: %s evaluation is up to date", paths.run_id, split)
            return False
        log.warning("%s: %s evaluation recorded, but %s: evaluating again", paths.run_id, split, why)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for checkpoint in CHECKPOINTS:
        if checkpoint not in epochs:
            log.warning("%s: no %s checkpoint: not evaluated", paths.run_id, checkpoint)
            continue
        net = network(cfg, weights[checkpoint], device)
        rows += evaluate_network(net, cfg, data, split, checkpoint, device)
    written = write_rows(paths.test_metrics, rows, {(c, split) for c in CHECKPOINTS})
    undefined = sum(1 for r in rows if math.isnan(r["hd95_mm"]))
    seconds = time.perf_counter() - t0
    entry = {"source": want, "rows": len(rows), "undefined_surface": undefined, "seconds": seconds}
    merge_record(record, split, entry, written)
    write_json_atomic(paths.evaluation, record)
    log.info(
        "%s: %s split evaluated in the original geometry (%d rows, %d with one empty mask: HD95/ASSD "
        "undefined) in %.1f s",
        paths.run_id,
        split,
        len(rows),
        undefined,
        seconds,
    )
    return True


def evaluate_after_training(
    cfg: RunConfig, paths: RunPaths, data: PreparedData, device: torch.device
) -> None:
    """The held-out evaluation of a segmenter run that has just finished its last epoch (main rank)."""
    if data.test_split() is None:
        log.info("%s: %s has no test split: no held-out evaluation", paths.run_id, data.path)
        return
    evaluate_run(cfg, paths, data, device, "test", force=True)


# ---------------------------------------------------------------------------------------------- finished runs
def segmenter_runs(path: Path) -> list[RunPaths]:
    """The run directories at ``path``: one run (it holds ``config.json``) or every run of an experiment
    (it holds ``runs/``); one line naming the fix otherwise."""
    from suite.paths import ExperimentPaths

    if (path / "config.json").is_file():
        return [RunPaths(path)]
    if (path / "runs").is_dir():
        return ExperimentPaths(path).all_runs()
    raise InputError(
        f"{path}: neither a run directory (config.json) nor an experiment folder (runs/); give "
        "RESULTS/<experiment> or RESULTS/<experiment>/runs/<run_id>"
    )


def open_run(paths: RunPaths, data: str | None = None) -> tuple[RunConfig, PreparedData]:
    """A run's config (from ``config.json``) and its prepared data (``data`` when the folder moved: its hash
    must be the run's); a dataset that moved, or another one, is one line with the fix for a finished run."""
    cfg = RunConfig.from_config_json(paths.read_json(paths.config), source=str(paths.config))
    if data is None and not Path(cfg.data).is_dir():
        raise InputError(
            f"{cfg.data}: the prepared dataset {paths.run_id} was trained on is not there; pass --data "
            f"PREPARED where it is now, or rebuild it with `suite prepare SRC {cfg.data}` and the options it "
            "was prepared with"
        )
    if data is not None:
        cfg = cfg.replace(data=str(Path(data).resolve()))
    fix = "pass --data with the dataset the run was trained on"
    return open_data(cfg, expected=f"{paths.run_id} was trained on data_hash", fix=fix)
