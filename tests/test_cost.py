"""A run's cost in summary.json: what is measured; a resumed run's cost is the sum of its sessions."""

from __future__ import annotations

import json

import pytest
import torch

from suite.stages import cost as cost_mod
from suite.stages.checkpoint import load_checkpoint
from suite.stages.runner import execute
from suite.testing.small_runs import small_run_config

KEYS = {"cpu_seconds", "wall_seconds", "device_seconds", "peak_rss_mb", "peak_device_mb", "device"}


class FakeClock:
    """``_usage`` that advances 1.5 s of wall and 4.0 s of CPU per call and remembers what it returned."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    def __call__(self) -> tuple[float, float]:
        k = len(self.calls) + 1
        self.calls.append((1.5 * k, 4.0 * k))
        return self.calls[-1]


def test_a_finished_run_records_its_cost(prepared_small, tmp_path) -> None:
    paths = execute(small_run_config(prepared_small, seg_epochs=1), tmp_path)
    c = json.loads(paths.summary.read_text())["cost"]
    assert KEYS <= set(c)
    assert c["device"] == "cpu" and c["peak_device_mb"] is None and c["segments"] == 1
    assert c["cpu_seconds"] > 0 and c["wall_seconds"] > 0
    assert c["device_seconds"] == pytest.approx(c["wall_seconds"] * c["world_size"])
    assert 50 < c["peak_rss_mb"] < 64_000  # a torch process: tens to thousands of MB


def test_resumed_run_cost_is_the_sum_of_its_sessions(prepared_small, tmp_path, monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(cost_mod, "_usage", clock)
    cfg = small_run_config(prepared_small, seg_epochs=3, method="oracle")
    part = execute(cfg, tmp_path, stop_after_epoch=0)
    assert part.status() == "partial"
    first = load_checkpoint(part.checkpoint_last)["cost"]
    # session 1: started at call 1, its checkpoint after epoch 0 read call 2
    assert (first["wall_seconds"], first["cpu_seconds"]) == (1.5, 4.0)
    assert first["segments"] == 1
    n_first = len(clock.calls)

    done = execute(cfg, tmp_path)
    assert done.status() == "finished"
    total = json.loads(done.summary.read_text())["cost"]
    (w0, c0), (w1, c1) = clock.calls[n_first], clock.calls[-1]  # session 2: its first and last reading
    assert total["segments"] == 2
    assert total["wall_seconds"] == pytest.approx(first["wall_seconds"] + (w1 - w0))
    assert total["cpu_seconds"] == pytest.approx(first["cpu_seconds"] + (c1 - c0))
    assert total["device_seconds"] == pytest.approx(total["wall_seconds"] * 1)
    assert total["peak_rss_mb"] >= first["peak_rss_mb"]


def test_a_checkpoint_without_cost_resumes_from_zero(prepared_small, tmp_path, monkeypatch) -> None:
    """Checkpoints written before cost was recorded resume; only the sessions measured are counted."""
    cfg = small_run_config(prepared_small, seg_epochs=2)
    part = execute(cfg, tmp_path, stop_after_epoch=0)
    ck = load_checkpoint(part.checkpoint_last)
    del ck["cost"]
    torch.save(ck, part.checkpoint_last)
    clock = FakeClock()
    monkeypatch.setattr(cost_mod, "_usage", clock)
    done = execute(cfg, tmp_path)
    c = json.loads(done.summary.read_text())["cost"]
    assert c["segments"] == 1
    assert c["wall_seconds"] == pytest.approx(clock.calls[-1][0] - clock.calls[0][0])


def test_totals_add_earlier_sessions_and_keep_the_peaks(monkeypatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(cost_mod, "_usage", clock)
    monkeypatch.setattr(cost_mod, "_peak_rss_mb", lambda: 100.0)
    meter = cost_mod.CostMeter(torch.device("cpu"), world=1)
    meter.resume(
        {
            "cpu_seconds": 10.0,
            "wall_seconds": 2.0,
            "device_seconds": 2.0,
            "peak_rss_mb": 300.0,
            "peak_device_mb": 50.0,
            "device": "cuda:NVIDIA H200",
            "segments": 2,
        }
    )
    t = meter.totals()
    assert (t["cpu_seconds"], t["wall_seconds"], t["device_seconds"]) == (14.0, 3.5, 3.5)
    assert t["peak_rss_mb"] == 300.0 and t["peak_device_mb"] == 50.0
    assert t["device"] == "cuda:NVIDIA H200 + cpu" and t["segments"] == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU visible to torch)")
def test_a_cuda_run_records_its_gpu_and_device_memory(prepared_small, tmp_path) -> None:
    paths = execute(small_run_config(prepared_small, seg_epochs=1, device="cuda"), tmp_path)
    c = json.loads(paths.summary.read_text())["cost"]
    assert c["device"] == f"cuda:{torch.cuda.get_device_name(0)}"
    assert c["peak_device_mb"] is not None and c["peak_device_mb"] > 0
    assert c["device_seconds"] == pytest.approx(c["wall_seconds"])


def test_a_gpu_share_discounts_device_seconds_and_is_recorded(monkeypatch) -> None:
    """Trials packed on one GPU (``--gpus-per-trial 0.25``): each run is charged its share, not the GPU."""
    monkeypatch.setattr(cost_mod, "_usage", FakeClock())
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**20)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    packed = cost_mod.CostMeter(torch.device("cuda", 0), world=1, share=0.25).totals()
    assert packed["wall_seconds"] == 1.5 and packed["device_seconds"] == pytest.approx(1.5 * 0.25)
    assert packed["device_share"] == 0.25 and packed["device"] == "cuda:Fake GPU"
    whole = cost_mod.CostMeter(torch.device("cuda", 0), world=2).totals()
    assert whole["device_share"] == 1.0 and whole["device_seconds"] == pytest.approx(1.5 * 2)
    # a CPU run's device is its cores: never discounted
    cpu = cost_mod.CostMeter(torch.device("cpu"), world=1, share=0.25).totals()
    assert cpu["device_share"] == 1.0 and cpu["device_seconds"] == pytest.approx(cpu["wall_seconds"])


def test_tune_trials_with_a_fractional_gpu_pass_their_share_to_the_run() -> None:
    pytest.importorskip("ray")
    from suite.config import RunConfig
    from suite.ray_glue.trainable import TuneHooks

    cfg = RunConfig.from_preset("smoke")
    assert TuneHooks(cfg, 0.25).device_share == 0.25
    assert TuneHooks(cfg, 1.0).device_share == 1.0 and TuneHooks(cfg, 0.0).device_share == 1.0


def test_train_workers_with_a_fractional_gpu_pass_their_share_to_the_run(monkeypatch, tmp_path) -> None:
    """``--workers-per-trial 2 --gpus-per-trial 0.5``: each DDP worker holds half a GPU, and is charged it."""
    pytest.importorskip("ray")
    import ray.train
    from ray.train.v2.torch import torch_trainer

    import suite.stages.runner
    from suite.config import RunConfig
    from suite.ray_glue import train
    from suite.ray_glue.resources import TrialOptions

    cfg = RunConfig.from_preset("smoke", world_size=2, seg_batch=2, unl_batch=2)
    made: dict = {}

    class FakeTrainer:  # what fit_with_train hands Ray Train: the worker loop and its config
        def __init__(self, loop, train_loop_config, **kw) -> None:
            made.update(loop=loop, config=train_loop_config)

        def fit(self) -> None:
            return None

    monkeypatch.setattr(torch_trainer, "TorchTrainer", FakeTrainer)
    train.fit_with_train(cfg, TrialOptions(str(tmp_path), gpus=0.5), in_tune=False)
    # the worker loop on one rank: the run it executes is charged the worker's share
    seen: dict = {}
    monkeypatch.setattr(suite.stages.runner, "execute", lambda c, root, hooks: seen.update(hooks=hooks))
    monkeypatch.setattr(ray.train, "get_context", lambda: type("C", (), {"get_world_rank": lambda s: 1})())
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: None)
    made["loop"](made["config"])
    assert seen["hooks"].device_share == 0.5
    assert train.TrainHooks(cfg).device_share == 1.0  # a whole GPU per worker, or none
