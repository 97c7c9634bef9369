"""Write contract-conformant synthetic run directories (suite/paths.py) for tests and benchmarks.

Each run gets ``config.json`` (``suite.config.RunConfig(...).to_dict()``), ``metrics.csv`` with the documented
columns ``epoch,split,volume,metric,value`` and the ARCHITECTURE.md vocabulary, ``env.json`` and, depending on
``status``, ``summary.json`` (finished) or ``failed.json`` (failed); nothing of the two for a run in progress.
The validation Dice is exactly what the caller asks for, so statistics can be checked by hand.

    from suite.testing.synthetic_runs import write_experiment, write_run
    write_experiment(root, cohort="phantom")
    write_run(root, method="proposed", n_labeled=5, seed=0, epochs=10, stat_window=4, dice=lambda e, v: 0.5)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from suite.config import RunConfig
from suite.paths import METRICS_COLUMNS, ExperimentPaths, RunPaths, format_test_metrics

DiceSpec = float | Callable[[int, int], float] | np.ndarray


def default_volumes(n_patients: int = 4, first: int = 1) -> list[str]:
    """``patient001_ED, patient001_ES, ...``: both frames of each validation patient."""
    return [f"patient{p:03d}_{f}" for p in range(first, first + n_patients) for f in ("ED", "ES")]


def write_experiment(root: str | Path, *, cohort: str = "phantom", **info: Any) -> ExperimentPaths:
    """Create ``root/runs`` and ``root/experiment.json`` (``cohort`` plus any extra provenance keys)."""
    ep = ExperimentPaths(Path(root))
    ep.runs_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "name": ep.root.name,
        "cohort": cohort,
        "space": "synthetic",
        "preset": "smoke",
        "data_hash": "synthetic0000",
        "git_sha": "0" * 40,
        "launcher": "local",
        "versions": {"python": "3.11", "torch": "synthetic"},
    }
    doc.update(info)
    ep.experiment.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return ep


def _dice_matrix(dice: DiceSpec, epochs: int, n_vol: int) -> np.ndarray:
    if isinstance(dice, np.ndarray):
        arr = np.asarray(dice, dtype=np.float64)
        if arr.ndim == 1:
            arr = np.repeat(arr[:, None], n_vol, axis=1)
        if arr.shape != (epochs, n_vol):
            raise ValueError(f"dice array has shape {arr.shape}, expected ({epochs}, {n_vol})")
        return arr
    if callable(dice):
        return np.array([[dice(e, v) for v in range(n_vol)] for e in range(epochs)], dtype=np.float64)
    return np.full((epochs, n_vol), float(dice))


def metrics_frame(
    stage: str,
    epochs: int,
    volumes: Sequence[str],
    dice: np.ndarray | None = None,
    in_bounds: np.ndarray | None = None,
    reg_err: np.ndarray | None = None,
    seed: int = 0,
    train_extra: Mapping[str, Sequence[float]] | None = None,
) -> pd.DataFrame:
    """The tidy metrics rows of one run (vectorised: fast enough for 1,000 x 100 x 40); ``train_extra``:
    more run-level ``train`` metrics, one value per epoch, NaN where the run does not log it that epoch."""
    rng = np.random.default_rng(seed)
    ep = np.arange(epochs)
    parts: list[pd.DataFrame] = []

    def block(
        split: str, names: Sequence[str], values: np.ndarray, volume: Sequence[str] | None = None
    ) -> pd.DataFrame:
        # values: (epochs, k) for run-level or (epochs, n_vol, k) for per-volume rows
        if volume is None:
            k = len(names)
            return pd.DataFrame(
                {
                    "epoch": np.repeat(ep, k),
                    "split": split,
                    "volume": "",
                    "metric": np.tile(np.array(names, dtype=object), epochs),
                    "value": values.reshape(-1),
                    "_order": 0,
                }
            )
        n_vol, k = len(volume), len(names)
        return pd.DataFrame(
            {
                "epoch": np.repeat(ep, n_vol * k),
                "split": split,
                "volume": np.tile(np.repeat(np.array(volume, dtype=object), k), epochs),
                "metric": np.tile(np.array(names, dtype=object), epochs * n_vol),
                "value": values.reshape(-1),
                "_order": 0,
            }
        )

    lr = 5e-4 * 0.5 ** (ep // 20)
    if stage == "regressor":
        err = reg_err if reg_err is not None else 100.0 / (1.0 + ep)
        train = np.stack([1e3 / (1.0 + ep), 5e-6 * 0.5 ** (ep // 100), np.full(epochs, 1.5)], axis=1)
        regval = np.stack([err, err / 5.0, np.clip(0.5 + ep / (2.0 * max(epochs, 1)), 0, 1)], axis=1)
        parts += [
            block("train", ["loss_mse", "lr", "epoch_time_s"], train),
            block("regval", ["size_abs_err", "size_abs_err_pct", "bounds_ok"], regval),
        ]
    else:
        assert dice is not None
        n_vol = len(volumes)
        ib = in_bounds if in_bounds is not None else np.clip(0.3 + ep / max(epochs, 1), 0, 1)
        ce = 0.5 / (1.0 + ep)
        train = np.stack([ce, 0.1 * ce, 1.1 * ce, lr, ib, np.full(epochs, 2.0)], axis=1)
        true_ml = 100.0 + 10.0 * np.arange(n_vol)
        per_vol = np.stack(
            [
                dice,
                np.clip(dice - 0.02, 0, 1),
                true_ml[None, :] * (0.9 + 0.2 * rng.random((epochs, n_vol))),
                np.broadcast_to(true_ml, (epochs, n_vol)),
            ],
            axis=2,
        )
        run_level = np.stack([np.clip(dice.mean(axis=1) - 0.02, 0, 1), dice.mean(axis=1)], axis=1)
        parts += [
            block(
                "train", ["loss_ce", "loss_penalty", "loss_total", "lr", "in_bounds", "epoch_time_s"], train
            ),
            *_extra_blocks(block, train_extra, epochs),
            block("val", ["dice", "dice2d", "lv_volume_pred_ml", "lv_volume_true_ml"], per_vol, volumes),
            block("val", ["dice2d_slices", "dice_mean"], run_level),
        ]
    for i, p in enumerate(parts):
        p["_order"] = i
    df = pd.concat(parts, ignore_index=True)
    df = df.sort_values(["epoch", "_order"], kind="stable").drop(columns="_order")
    return df[list(METRICS_COLUMNS)]


def _extra_blocks(
    block: Callable[..., pd.DataFrame], extra: Mapping[str, Sequence[float]] | None, epochs: int
) -> list[pd.DataFrame]:
    """The ``train_extra`` rows: a metric absent in an epoch (NaN: soft_size_empty without empty slices, a
    warm-up epoch) has no row, as the segmenter writes it."""
    if not extra:
        return []
    names = list(extra)
    values = np.stack([np.asarray(extra[k], dtype=np.float64)[:epochs] for k in names], axis=1)
    df = block("train", names, values)
    return [df.loc[np.isfinite(df["value"].to_numpy())]]


def write_run(
    root: str | Path,
    *,
    stage: str = "segmenter",
    method: str = "fs",
    n_labeled: int = 5,
    seed: int = 0,
    split_seed: int = 1,
    gamma: float = 0.1,
    lam: float = 1e-2,
    epochs: int = 10,
    stat_window: int = 5,
    dice: DiceSpec = 0.5,
    volumes: Sequence[str] | None = None,
    logged_epochs: int | None = None,
    status: str = "finished",
    preset: str = "smoke",
    in_bounds: np.ndarray | None = None,
    reg_err: np.ndarray | None = None,
    val_examples: bool = False,
    wall_time_s: float = 60.0,
    device: str = "cpu",
    world_size: int = 1,
    float_format: str = "%.17g",
    unterminated_tail: bool = False,
    cost: dict[str, Any] | None = None,
    train_extra: Mapping[str, Sequence[float]] | None = None,
    **config_overrides: Any,
) -> RunPaths:
    """Write one run directory under ``root/runs`` and return its paths.

    ``dice``: a constant, ``f(epoch, volume_index)`` or an (epochs, n_volumes) array (segmenters);
    ``logged_epochs``: epochs actually in metrics.csv (default ``epochs``: a short or partial run logs fewer);
    ``status``: finished | partial | failed; ``unterminated_tail``: append half a line (a run caught
    mid-write); ``cost``: the ``summary.json`` ``"cost"`` object (absent by default, as in runs written
    before the suite recorded it); ``train_extra``: further train metrics per epoch (the size dynamics
    ``soft_size``, ``target_size``... of the penalty methods; absent by default, as in older runs).
    """
    if stage == "regressor":
        method = "regressor"
    kw: dict[str, Any] = dict(
        stage=stage,
        method=method,
        n_labeled=n_labeled,
        seed=seed,
        split_seed=split_seed,
        gamma=gamma,
        lam=lam,
        stat_window=stat_window,
    )
    kw["reg_epochs" if stage == "regressor" else "seg_epochs"] = epochs
    kw.update(config_overrides)
    cfg = RunConfig.from_preset(preset, **kw)
    rp = ExperimentPaths(Path(root)).run(cfg.run_id)
    rp.root.mkdir(parents=True, exist_ok=True)
    rp.config.write_text(cfg.to_json())
    rp.env.write_text(
        json.dumps(
            {
                "git_sha": "0" * 40,
                "host": "synthetic",
                "world_size": world_size,
                "launcher": "local",
                "versions": {"torch": "synthetic"},
            }
        )
        + "\n"
    )
    vols = list(volumes) if volumes is not None else default_volumes()
    n_log = epochs if logged_epochs is None else logged_epochs
    dmat = _dice_matrix(dice, epochs, len(vols))[:n_log] if stage == "segmenter" else None
    df = metrics_frame(
        stage,
        n_log,
        vols,
        dmat,
        in_bounds=None if in_bounds is None else np.asarray(in_bounds)[:n_log],
        reg_err=None if reg_err is None else np.asarray(reg_err)[:n_log],
        seed=seed,
        train_extra=train_extra,
    )
    df.to_csv(rp.metrics, index=False, float_format=float_format)
    if unterminated_tail:
        with open(rp.metrics, "a") as f:
            f.write(f"{n_log},val,{vols[0]},di")
    if val_examples and stage == "segmenter":
        write_val_examples(rp, seed=seed, method=method)
    if status == "finished":
        final = {"dice_mean": float(dmat[-1].mean())} if dmat is not None and len(dmat) else {}
        summary = {
            "run_id": cfg.run_id,
            "stage": stage,
            "method": method,
            "epochs": epochs,
            "best_epoch": max(n_log - 1, 0),
            "best_value": final.get("dice_mean", 0.0),
            "final": final,
            "wall_time_s": wall_time_s,
            "device": device,
            "world_size": world_size,
            "finished_at": "2026-01-01T00:00:00Z",
        }
        if cost is not None:
            summary["cost"] = cost
        rp.summary.write_text(json.dumps(summary, indent=2) + "\n")
    elif status == "failed":
        rp.failed.write_text(json.dumps({"error": "RuntimeError: synthetic failure", "traceback": ""}) + "\n")
    elif status != "partial":
        raise ValueError(f"status {status!r} is not one of finished, partial, failed")
    return rp


def write_val_examples(
    rp: RunPaths, *, k: int = 3, size: int = 32, seed: int = 0, method: str = "fs"
) -> None:
    """``predictions/val_examples.npz``: K fixed validation slices (a disc of LV) and a method-dependent
    guess."""
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((k, size, size), np.uint8)
    label = np.zeros((k, size, size), np.uint8)
    pred = np.zeros((k, size, size), np.uint8)
    shift = {"fs": 4, "proposals": 6, "proposed": 2, "oracle": 1}.get(method, 3) + seed % 2
    for i in range(k):
        r = 5 + 2 * i
        disc = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 < r * r
        image[i] = (60 + 120 * disc + (xx * 2) % 40).astype(np.uint8)
        label[i] = disc
        pred[i] = (yy - size // 2 - shift) ** 2 + (xx - size // 2) ** 2 < r * r
    rp.predictions.mkdir(parents=True, exist_ok=True)
    np.savez(
        rp.predictions / "val_examples.npz",
        image=image,
        label=label,
        pred=pred,
        volume=np.array(["patient001_ED"] * k),
        slice_index=np.arange(k),
    )


# the frame numbers of a synthetic test patient's ED and ES images (volume names as in the release)
_FRAMES = {"ED": 1, "ES": 12}
Value = float | Callable[[str, str, str, str], float]


def _value(v: Value, checkpoint: str, patient: str, phase: str, cls: str) -> float:
    return float(v(checkpoint, patient, phase, cls)) if callable(v) else float(v)


def write_test_metrics(
    rp: RunPaths,
    *,
    patients: Sequence[str] = ("patient101", "patient102", "patient103"),
    classes: Sequence[str] = ("LV",),
    checkpoints: Sequence[str] = ("final", "best"),
    split: str = "test",
    dice: Value = 0.8,
    hd95_mm: Value = 6.0,
    assd_mm: Value = 1.5,
    true_ml: Value = lambda c, p, ph, k: 150.0 if ph == "ED" else 60.0,
    pred_ml: Value = lambda c, p, ph, k: 140.0 if ph == "ED" else 65.0,
    empty: Callable[[str, str, str, str], tuple[bool, bool]] | None = None,
) -> Path:
    """``RUN/test_metrics.csv`` as the evaluation writes it, one row per checkpoint x volume x class.

    Every value is a constant or ``f(checkpoint, patient, phase, class)``. ``empty`` gives (empty_true,
    empty_pred) per row; the empty-case rule then overrides the values: both empty -> dice 1, distances 0;
    exactly one empty -> dice 0, distances NaN (undefined).
    """
    rows = []
    for ck in checkpoints:
        for p in patients:
            for ph, frame in _FRAMES.items():
                for k in classes:
                    et, ep = empty(ck, p, ph, k) if empty is not None else (False, False)
                    d, h, a = (_value(v, ck, p, ph, k) for v in (dice, hd95_mm, assd_mm))
                    if et and ep:
                        d, h, a = 1.0, 0.0, 0.0
                    elif et or ep:
                        d, h, a = 0.0, float("nan"), float("nan")
                    rows.append(
                        {
                            "checkpoint": ck,
                            "split": split,
                            "patient": p,
                            "phase": ph,
                            "volume": f"{p}_frame{frame:02d}",
                            "class": k,
                            "dice": d,
                            "hd95_mm": h,
                            "assd_mm": a,
                            "volume_true_ml": 0.0 if et else _value(true_ml, ck, p, ph, k),
                            "volume_pred_ml": 0.0 if ep else _value(pred_ml, ck, p, ph, k),
                            "empty_true": et,
                            "empty_pred": ep,
                        }
                    )
    rp.test_metrics.write_text(format_test_metrics(rows))
    return rp.test_metrics


__all__ = [
    "write_experiment",
    "write_run",
    "write_test_metrics",
    "write_val_examples",
    "metrics_frame",
    "default_volumes",
]
