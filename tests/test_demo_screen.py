"""The demo's per-run screen (step 4) and the short-run course it shares with ``scripts/fidelity.py``: the
penalty and the in-bounds share from the first to the last epoch *with* the penalty, and the note that
explains a penalty run at Dice ~0, printed only when one is."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from analysis.short_run import penalty_course, run_level_metrics
from suite.commands.demo import _print_last_epoch


def _run(exp: Path, run_id: str, cfg: dict, rows: list[tuple[int, str, str, float]]) -> None:
    d = exp / "runs" / run_id
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(cfg))
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "split", "volume", "metric", "value"])
        for ep, split, metric, v in rows:
            w.writerow([ep, split, "", metric, v])
        w.writerow([0, "val", "patient001_ED", "dice", 0.99])  # per-volume rows are not the run's


def _penalty_rows(dice_last: float) -> list[tuple[int, str, str, float]]:
    # epochs 0-1 warm-up (penalty 0, no in_bounds), then the penalty falls and in_bounds rises
    rows = [(e, "train", "loss_penalty", p) for e, p in enumerate([0.0, 0.0, 300.0, 30.0])]
    rows += [(2, "train", "in_bounds", 0.02), (3, "train", "in_bounds", 0.1)]
    return rows + [(e, "val", "dice_mean", d) for e, d in enumerate([0.3, 0.4, 0.01, dice_last])]


def test_penalty_course_starts_after_the_warm_up(tmp_path):
    _run(tmp_path, "r", {}, _penalty_rows(0.0))
    m = run_level_metrics(tmp_path / "runs" / "r" / "metrics.csv")
    assert m["val/dice_mean"][3] == 0.0 and "val/dice" not in m  # the per-volume row is left out
    assert penalty_course(m) == {
        "penalty_first_last": [300.0, 30.0],
        "in_bounds_first_last": [0.02, 0.1],
        "penalty_epochs": [2, 3],
    }
    assert penalty_course({"val/dice_mean": {0: 0.3}}) == {}  # FS: no unlabeled pass


@pytest.mark.parametrize("oracle_dice, note", [(0.0, True), (0.3, False)])
def test_demo_screen_shows_the_penalty_course_and_explains_a_collapse(tmp_path, capsys, oracle_dice, note):
    seg = {"stage": "segmenter", "n_labeled": 5, "seed": 0}
    _run(tmp_path, "fs", {**seg, "method": "fs"}, [(e, "val", "dice_mean", 0.4) for e in range(4)])
    _run(tmp_path, "oracle", {**seg, "method": "oracle"}, _penalty_rows(oracle_dice))
    _run(tmp_path, "reg", {"stage": "regressor", "method": "regressor", "seed": 0}, [(0, "regval", "x", 1.0)])
    _print_last_epoch(tmp_path)
    out = capsys.readouterr().out
    fs_line = next(line for line in out.splitlines() if line.strip().startswith("fs"))
    assert "0.400" in fs_line and "penalty" not in fs_line
    assert "penalty 300 -> 30, in bounds 0.02 -> 0.10 (epochs 2-3)" in out
    assert "regressor" not in out
    assert ("known start-up collapse" in out) is note
