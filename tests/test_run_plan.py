"""Honest progress: bars inside epochs that change no number and cost nothing when off; ``suite run`` logs
its plan (runs, prerequisites first, epochs, size, device, an estimate) before any work and warns when
paper-scale work is started on a CPU."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import suite.log
from suite.cli import main
from suite.config import RunConfig
from suite.log import progress
from suite.run_plan import PlannedRun, paper_scale_reasons, plan_lines
from suite.stages.checkpoint import load_checkpoint
from suite.stages.runner import execute

TINY = dict(threads=1, device="cpu", seg_epochs=1, reg_epochs=1, reg_aug_copies=1, seg_batch=8, n_labeled=5)


def _rows(path: Path) -> list[tuple[str, ...]]:
    with path.open() as f:
        return [tuple(r.values()) for r in csv.DictReader(f) if r["metric"] != "epoch_time_s"]


def test_progress_off_is_the_iterable_itself(monkeypatch):
    items = [1, 2, 3]
    monkeypatch.setenv("SUITE_NO_PBAR", "1")
    assert progress(items, "x") is items
    monkeypatch.delenv("SUITE_NO_PBAR")
    monkeypatch.setenv("CI", "true")
    assert progress(items, "x") is items
    monkeypatch.delenv("CI")
    monkeypatch.setattr(suite.log, "progress_enabled", lambda: True)
    assert progress(items, "x", enabled=False) is items  # e.g. ranks other than 0
    assert list(progress(items, "x")) == items and progress(items, "x") is not items


@pytest.mark.parametrize("stage", ["segmenter", "regressor"])
def test_progress_bars_change_no_number(stage, prepared_small, tmp_path, monkeypatch, capsys):
    method = "regressor" if stage == "regressor" else "fs"
    size = 64 if stage == "regressor" else 32  # ResNeXt needs > 1x1 maps for a batch of 1
    cfg = RunConfig.from_preset(
        "smoke", stage=stage, method=method, data=str(prepared_small), image_size=size, **TINY
    )
    off = execute(cfg, tmp_path / "off")
    assert "it/s" not in capsys.readouterr().err
    monkeypatch.setattr(suite.log, "progress_enabled", lambda: True)
    on = execute(cfg, tmp_path / "on")
    err = capsys.readouterr().err
    # tqdm's line: label, steps done / total, rate
    part = "train" if stage == "regressor" else "labeled"
    assert f"epoch 1/1 {part}" in err and "it/s" in err and "validation" in err
    assert _rows(on.metrics) == _rows(off.metrics)
    a, b = load_checkpoint(on.checkpoint_last), load_checkpoint(off.checkpoint_last)
    for k, v in a["stage"]["model"].items():
        assert torch.equal(v, b["stage"]["model"][k]), k
    assert a["rng"]["torch"].equal(b["rng"]["torch"]) and a["rng"]["python"] == b["rng"]["python"]


def _dry_run(prepared_small: Path, out: Path, *argv: str) -> int:
    return main(["run", "--data", str(prepared_small), "--out", str(out), "--dry-run", *argv])


def test_plan_lists_the_runs_prerequisites_first_on_stderr(prepared_small, tmp_path, capsys):
    out = tmp_path / "exp"
    argv = ["--preset", "smoke", "--method", "proposed", "--device", "cpu"]
    assert _dry_run(prepared_small, out, *argv) == 0
    cap = capsys.readouterr()
    assert cap.out == ""  # stdout's first line is the run directory of a real run
    lines = [line.split(": ", 1)[1] for line in cap.err.splitlines() if "suite.run_plan" in line]
    assert lines[0].startswith("plan: 2 run(s) on cpu, about ") and "rough" in lines[0]
    assert (
        lines[1].startswith("  1. reg-n5-s0-") and "(prerequisite): regressor, 3 epochs at 64x64" in lines[1]
    )
    assert "steps/epoch" in lines[1] and "/epoch, " in lines[1] and "[to train]" in lines[1]
    assert (
        lines[2].startswith("  2. seg-proposed-n5-s0-")
        and "segmenter proposed, 4 epochs at 64x64" in lines[2]
    )
    assert "paper-scale" not in cap.err
    assert not out.exists()  # a dry run writes nothing


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["--preset", "paper", "--method", "proposed"], "a ResNeXt-101 regressor"),
        (["--preset", "paper", "--stage", "regressor"], "a ResNeXt-101 regressor"),
        (["--preset", "paper", "--method", "fs"], "100 segmenter epochs at 256x256"),
        (
            ["--preset", "smoke", "--set", "image_size=256", "--set", "seg_epochs=100"],
            "100 segmenter epochs at 256x256",
        ),
        (["--preset", "smoke", "--method", "proposed", "--set", "seg_epochs=2000"], "an estimated"),
    ],
)
def test_paper_scale_work_on_a_cpu_is_warned_naming_smoke(prepared_small, tmp_path, capsys, argv, reason):
    assert _dry_run(prepared_small, tmp_path / "exp", "--device", "cpu", *argv) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    assert len(warning) == 1 and "paper-scale work on a CPU" in warning[0]
    assert reason in warning[0] and "--preset smoke" in warning[0]


def test_no_warning_on_a_gpu_or_for_finished_runs():
    cfg = RunConfig.from_preset("paper", stage="regressor", method="regressor")
    todo = [PlannedRun(cfg, "absent", 26, 480.0)]
    assert paper_scale_reasons(todo, "cpu") == ["a ResNeXt-101 regressor", "200 regressor epochs at 256x256"]
    assert paper_scale_reasons(todo, "cuda") == []
    done = [PlannedRun(cfg, "finished", 26, 480.0)]
    assert paper_scale_reasons(done, "cpu") == []
    assert (
        "nothing to train" in plan_lines(done, "cpu")[0]
        and "[finished: skipped]" in plan_lines(done, "cpu")[1]
    )
    gpu = plan_lines([PlannedRun(cfg, "partial", 26, None)], "cuda")
    assert "no time estimate" in gpu[0] and "[partial: resumes" in gpu[1] and "~" not in gpu[1]
