"""Checkpoint / resume: an interrupted run resumes to exactly the uninterrupted numbers (CPU).

Short Oracle runs (penalty, in_bounds and the lr rule all in play) at 32×32, one thread, three epochs, on the
small prepared phantom. ``epoch_time_s`` is the only metric allowed to differ.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from suite.config import RunConfig
from suite.paths import ExperimentPaths
from suite.stages import runner
from suite.stages.base import open_data
from suite.stages.checkpoint import load_checkpoint
from suite.stages.metrics_log import MetricsWriter, read_metrics
from suite.stages.runner import execute
from suite.testing.small_runs import small_run_config

CFG = dict(seg_epochs=3, seed=1, method="oracle", lr_patience=1)


def _cfg(data, **kw) -> RunConfig:
    return small_run_config(data, **{**CFG, **kw})


def _numbers(paths) -> list[tuple]:
    return [
        (r["epoch"], r["split"], r["volume"], r["metric"], r["value"])
        for r in read_metrics(paths.metrics)
        if r["metric"] != "epoch_time_s"
    ]


def _weights(path) -> dict[str, torch.Tensor]:
    ck = load_checkpoint(path)
    return ck["stage"]["model"] if "stage" in ck else ck["model"]  # checkpoint_last | checkpoint_best


@pytest.fixture(scope="module")
def uninterrupted(prepared_small, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    return execute(_cfg(prepared_small), root)


def test_same_config_and_seed_twice_gives_identical_metrics(prepared_small, uninterrupted, tmp_path):
    again = execute(_cfg(prepared_small), tmp_path)
    assert again.run_id == uninterrupted.run_id
    assert _numbers(again) == _numbers(uninterrupted)
    a, b = _weights(again.checkpoint_last), _weights(uninterrupted.checkpoint_last)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_interrupted_then_resumed_equals_uninterrupted(prepared_small, uninterrupted, tmp_path):
    cfg = _cfg(prepared_small)
    part = execute(cfg, tmp_path, stop_after_epoch=0)
    assert part.status() == "partial" and not part.summary.exists()
    assert load_checkpoint(part.checkpoint_last)["epoch"] == 0
    assert {r["epoch"] for r in read_metrics(part.metrics)} == {0}
    # a crash after writing epoch 1's rows but before its checkpoint: resume must drop those rows
    MetricsWriter(part.metrics).append([(1, "train", "", "loss_ce", 123.0), (1, "val", "", "dice_mean", 0.5)])
    done = execute(cfg, tmp_path)
    assert done.status() == "finished"
    assert _numbers(done) == _numbers(uninterrupted)
    a, b = _weights(done.checkpoint_last), _weights(uninterrupted.checkpoint_last)
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = json.loads(done.summary.read_text()), json.loads(uninterrupted.summary.read_text())
    assert (sa["best_epoch"], sa["best_value"]) == (sb["best_epoch"], sb["best_value"])


def test_resume_from_only_checkpoint_last(prepared_small, uninterrupted, tmp_path):
    """A run moving between launchers may carry only checkpoint_last.pt: the remaining epochs match."""
    cfg = _cfg(prepared_small)
    first = execute(cfg, tmp_path / "a", stop_after_epoch=1)
    moved = ExperimentPaths(tmp_path / "b").run(first.run_id)
    moved.root.mkdir(parents=True)
    shutil.copy(first.checkpoint_last, moved.checkpoint_last)
    done = execute(cfg, tmp_path / "b")
    assert done == moved and done.status() == "finished"
    assert [n for n in _numbers(done)] == [n for n in _numbers(uninterrupted) if n[0] == 2]


def test_finished_run_is_skipped(prepared_small, uninterrupted, monkeypatch):
    stamp = (uninterrupted.metrics.stat().st_mtime_ns, uninterrupted.summary.stat().st_mtime_ns)

    def boom(*a, **k):
        raise AssertionError("a finished run must not build a stage")

    monkeypatch.setattr(runner, "_make_stage", boom)
    assert execute(_cfg(prepared_small), uninterrupted.root.parent.parent) == uninterrupted
    assert (uninterrupted.metrics.stat().st_mtime_ns, uninterrupted.summary.stat().st_mtime_ns) == stamp


def test_failure_writes_failed_json_and_a_rerun_recovers(prepared_small, tmp_path, monkeypatch):
    from suite.stages.segmenter import SegmenterStage

    cfg = _cfg(prepared_small, seg_epochs=1, method="fs")
    real = SegmenterStage.validate

    def broken(self, epoch):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(SegmenterStage, "validate", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        execute(cfg, tmp_path)
    paths = ExperimentPaths(tmp_path).run(open_data(cfg)[0].run_id)
    assert paths.status() == "failed"
    info = json.loads(paths.failed.read_text())
    assert "disk on fire" in info["error"] and "Traceback" in info["traceback"]
    assert json.loads(paths.config.read_text())["run_id"] == paths.run_id  # written before the first step
    monkeypatch.setattr(SegmenterStage, "validate", real)
    assert execute(cfg, tmp_path).status() == "finished"
    assert not paths.failed.exists()


def test_stop_after_epoch_from_environment(prepared_small, tmp_path, monkeypatch):
    monkeypatch.setenv(runner.STOP_ENV, "0")
    paths = execute(_cfg(prepared_small, method="fs", seg_epochs=2), tmp_path)
    assert paths.status() == "partial" and {r["epoch"] for r in read_metrics(paths.metrics)} == {0}
    monkeypatch.setenv(runner.STOP_ENV, "zero")
    from suite.errors import InputError

    with pytest.raises(InputError, match=runner.STOP_ENV):
        execute(_cfg(prepared_small, method="fs", seg_epochs=2), tmp_path)


def test_a_second_launcher_waits_for_the_lock_then_skips_the_finished_run(prepared_small, tmp_path):
    """Concurrent launchers never train the same run twice: the second waits on the run's lock and, once the
    first has finished, finds summary.json and returns without training."""
    import threading

    from filelock import FileLock

    cfg = open_data(_cfg(prepared_small, method="fs"))[0]
    paths = ExperimentPaths(tmp_path).run(cfg.run_id)
    paths.root.mkdir(parents=True)
    holder = FileLock(str(paths.lock))
    holder.acquire()
    result: dict[str, object] = {}
    t = threading.Thread(target=lambda: result.setdefault("paths", execute(cfg, tmp_path)))
    t.start()
    t.join(timeout=3.0)
    assert t.is_alive() and not paths.config.exists()  # waiting, nothing written
    paths.summary.write_text("{}\n")  # the first launcher finishes...
    holder.release()  # ...and lets go
    t.join(timeout=60)
    assert not t.is_alive() and result["paths"] == paths
    assert not paths.config.exists() and not paths.metrics.exists()  # skipped, not trained
