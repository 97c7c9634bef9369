"""The ssl term in a segmenter run: which images each network sees in which step, the seeds, warm-up, resume
bit for bit on CPU (Mean Teacher, CPS), and the teacher under DDP (2 gloo ranks).

Runs are ``small_run_config`` (32×32, one thread, batches of 8 labeled / 64 unlabeled slices) on the small
prepared phantom; ``_small`` keeps a few slices where an epoch's steps are counted.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.config import RunConfig
from suite.paths import ExperimentPaths
from suite.seeding import derive_seed
from suite.stages.base import RunContext, configure_torch, open_data
from suite.stages.checkpoint import load_checkpoint, seed_epoch
from suite.stages.metrics_log import read_metrics
from suite.stages.runner import execute
from suite.stages.segmenter import SegmenterStage
from suite.stages.segmenter_data import load_seg_data
from suite.testing.small_runs import small_run_config


def _ctx(cfg: RunConfig, root: Path, rank: int = 0, world: int = 1) -> RunContext:
    cfg, data = open_data(cfg)
    configure_torch(cfg, torch.device("cpu"))
    paths = ExperimentPaths(root).run(cfg.run_id)
    dev = torch.device("cpu")
    return RunContext(
        cfg=cfg, paths=paths, experiment_root=root, data=data, device=dev, rank=rank, world=world
    )


def _stage(prepared: Path, root: Path, n_lab: int = 3, n_unl: int = 10, **kw) -> SegmenterStage:
    """A stage on a few slices: n_lab labeled (one labeled batch), n_unl unlabeled."""
    ctx = _ctx(small_run_config(prepared, **kw), root)
    sd = load_seg_data(ctx)
    sd.lab_idx, sd.unl_idx = sd.lab_idx[:n_lab], sd.unl_idx[:n_unl]
    if sd.unl_targets is not None:
        sd.unl_targets = sd.unl_targets[:n_unl]
    return SegmenterStage(ctx, seg_data=sd)


def _images_through(module: torch.nn.Module) -> list[int]:
    """The batch size of every forward call of ``module`` (a hook records it)."""
    seen: list[int] = []
    module.register_forward_hook(lambda m, inp, out: seen.append(int(inp[0].shape[0])))
    return seen


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


# ------------------------------------------------------------------------------------------------ units
def test_no_term_no_extra_state_and_network_1_starts_alike_whatever_the_term(prepared_small, tmp_path):
    """ssl none builds nothing beside network 1 and its checkpoint state is the same keys as before; every
    term starts network 1 from the same weights (common random numbers); network 2 of CPS from another
    seed, hence other weights; the teacher is the student."""
    plain = _stage(prepared_small, tmp_path, method="fs")
    assert plain.ssl is None and set(plain.state_dict()) == {"model", "optimizer", "lr_rule"}
    start = plain.model_state()
    for kind in ("mean_teacher", "entropy_min", "cps"):
        st = _stage(prepared_small, tmp_path, method="fs", ssl=kind)
        assert _same(start, st.model_state()), kind
        assert set(st.state_dict()) == {"model", "optimizer", "lr_rule", "ssl"}
    assert derive_seed(0, "segmenter", "init", "cps") != derive_seed(0, "segmenter", "init")
    cps = _stage(prepared_small, tmp_path, method="fs", ssl="cps")
    assert cps.ssl is not None and cps.ssl.net2 is not None
    assert not _same(start, _clone(cps.ssl.net2.state_dict()))
    mt = _stage(prepared_small, tmp_path, method="fs", ssl="mean_teacher")
    assert mt.ssl is not None and mt.ssl.teacher is not None
    assert _same(start, _clone(mt.ssl.teacher.state_dict()))
    assert not any(p.requires_grad for p in mt.ssl.teacher.parameters())


@pytest.mark.parametrize("update", ["alternating", "joint"])
def test_which_images_the_teacher_and_network_2_see(prepared_small, tmp_path, update):
    """Alternating: one labeled step (3 images), then unlabeled steps of 8 and 2 (unl_batch 8). The teacher
    sees only the unlabeled images (after each of network 1's 3 steps it is averaged: 3 updates); network 2
    sees every image of every step. Joint: 2 steps of (labeled 3 + unlabeled 8, 2)."""
    kw = dict(method="fs", unl_batch=8, update=update)
    mt = _stage(prepared_small, tmp_path, ssl="mean_teacher", **kw)
    assert mt.ssl is not None and mt.ssl.teacher is not None
    teacher_seen = _images_through(mt.ssl.teacher)
    seed_epoch(mt.cfg, 0)
    out = mt.train_epoch(0)
    assert sorted(teacher_seen) == [2, 8] and out["loss_ssl"] > 0
    assert mt.ssl.steps == (3 if update == "alternating" else 2)

    cps = _stage(prepared_small, tmp_path, ssl="cps", **kw)
    assert cps.ssl is not None and cps.ssl.net2 is not None
    seen2 = _images_through(cps.ssl.net2)
    seed_epoch(cps.cfg, 0)
    cps.train_epoch(0)
    assert sorted(seen2) == ([2, 3, 8] if update == "alternating" else [5, 11])


def test_entropy_reads_labeled_and_unlabeled_steps_and_the_warm_up_adds_no_term(prepared_small, tmp_path):
    """Entropy minimisation adds its term to the labeled steps too (SSL4MIS: the whole batch).
    penalty_warmup=1: epoch 0 has no term; with the teacher and the entropy (no other forward pass) it is
    FS's epoch bit for bit over 3 labeled steps, the teacher following the student; network 2 (CPS) still
    learns from the labeled images. Epoch 1 adds the term."""
    fs = _stage(prepared_small, tmp_path, method="fs", n_lab=20)
    seed_epoch(fs.cfg, 0)
    fs.train_epoch(0)
    ref = _clone(fs.model_state())
    em = _stage(prepared_small, tmp_path, method="fs", ssl="entropy_min")
    assert em.ssl is not None
    calls: list[int] = []
    real = em.ssl.term
    em.ssl.term = lambda logits, batch, epoch: calls.append(len(batch.idx)) or real(logits, batch, epoch)
    seed_epoch(em.cfg, 0)
    em.train_epoch(0)
    assert calls == [3, 10]
    for kind in ("mean_teacher", "entropy_min", "cps"):
        st = _stage(prepared_small, tmp_path, method="fs", ssl=kind, penalty_warmup=1, n_lab=20)
        assert st.ssl is not None
        before2 = _clone(st.ssl.net2.state_dict()) if st.ssl.net2 is not None else None
        seed_epoch(st.cfg, 0)
        out = st.train_epoch(0)
        assert out["loss_ssl"] == 0.0 and st.ssl.steps == 3, kind
        if before2 is None:  # no other network draws dropout masks between network 1's steps
            assert _same(ref, st.model_state()), kind
        else:
            assert not _same(before2, _clone(st.ssl.net2.state_dict()))
        if st.ssl.teacher is not None:
            assert not _same(ref, _clone(st.ssl.teacher.state_dict()))  # an average of the 3 students
        seed_epoch(st.cfg, 1)
        assert st.train_epoch(1)["loss_ssl"] > 0, kind


def test_the_teacher_noise_is_seeded_per_epoch_and_independent_of_the_world_size(prepared_small, tmp_path):
    st = _stage(prepared_small, tmp_path, method="fs", ssl="mean_teacher")
    assert st.ssl is not None
    from suite.stages.ssl_terms import StepBatch

    batch = StepBatch(np.arange(4), 0, np.arange(4), np.arange(4))
    a = st.ssl._teacher_noise(batch, 3)
    b = _stage(prepared_small, tmp_path, method="fs", ssl="mean_teacher").ssl._teacher_noise(batch, 3)
    assert torch.equal(a, b) and not torch.equal(a, st.ssl._teacher_noise(batch, 4))
    # rank 1 of 2 gets the rows of its half of the global batch, as drawn for the whole batch
    two = _stage(prepared_small, tmp_path, method="fs", ssl="mean_teacher")
    assert two.ssl is not None
    two.ssl.ctx = RunContext(**{**two.ssl.ctx.__dict__, "rank": 1, "world": 2})
    two.ssl.cfg = two.ssl.cfg.replace(world_size=2)
    assert torch.equal(
        two.ssl._teacher_noise(StepBatch(np.arange(2), 0, np.arange(4), np.arange(2, 4)), 3), a[2:]
    )


# ------------------------------------------------------------------------------------------------ resume
def _numbers(paths) -> list[tuple]:
    return [
        (r["epoch"], r["split"], r["volume"], r["metric"], r["value"])
        for r in read_metrics(paths.metrics)
        if r["metric"] != "epoch_time_s"
    ]


def _flat(state: object, prefix: str = "") -> dict[str, object]:
    """Every leaf of a nested checkpoint state, keyed by its path."""
    if isinstance(state, dict):
        out: dict[str, object] = {}
        for k, v in state.items():
            out.update(_flat(v, f"{prefix}/{k}"))
        return out
    if isinstance(state, list | tuple):
        return _flat(dict(enumerate(state)), prefix)
    return {prefix: state}


def _equal_states(a: dict, b: dict) -> bool:
    fa, fb = _flat(a), _flat(b)
    if fa.keys() != fb.keys():
        return False
    for k in fa:
        x, y = fa[k], fb[k]
        same = torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
        if not same:
            return False
    return True


@pytest.mark.parametrize("method, ssl", [("fs", "mean_teacher"), ("oracle", "cps")])
def test_interrupted_then_resumed_equals_uninterrupted(prepared_small, tmp_path, method, ssl):
    """Three epochs straight, or one epoch, a stop and a resume: the same metrics, network 1, and the term's
    state (the teacher and its step count; network 2 and its Adam state) bit for bit on CPU."""
    cfg = small_run_config(prepared_small, method=method, ssl=ssl, seg_epochs=3, seed=1, lr_patience=1)
    straight = execute(cfg, tmp_path / "straight")
    part = execute(cfg, tmp_path / "resumed", stop_after_epoch=0)
    assert part.status() == "partial" and load_checkpoint(part.checkpoint_last)["epoch"] == 0
    done = execute(cfg, tmp_path / "resumed")
    assert done.status() == "finished" and _numbers(done) == _numbers(straight)
    a, b = load_checkpoint(done.checkpoint_last)["stage"], load_checkpoint(straight.checkpoint_last)["stage"]
    assert set(a["ssl"]) >= ({"teacher", "steps"} if ssl == "mean_teacher" else {"net2", "optimizer2"})
    assert _equal_states(a, b)
    sa, sb = json.loads(done.summary.read_text()), json.loads(straight.summary.read_text())
    assert (sa["best_epoch"], sa["best_value"]) == (sb["best_epoch"], sb["best_value"])
    metrics = {r[3] for r in _numbers(done) if r[1] == "train"}
    assert {"loss_ssl", "ssl_weight"} <= metrics


# ------------------------------------------------------------------------------------------------ DDP
def _ddp_worker(rank: int, world: int, init_file: str, cfgs: dict, root: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for kind, cfg_dict in cfgs.items():
            st = SegmenterStage(_ctx(RunConfig.from_dict(cfg_dict), Path(root), rank=rank, world=world))
            assert st.ssl is not None
            seed_epoch(st.cfg, 0)
            st.train_epoch(0)
            other = st.ssl.teacher if st.ssl.teacher is not None else st.ssl.net2
            assert other is not None
            state = {"steps": st.ssl.steps, "student": st.model_state(), "other": other.state_dict()}
            torch.save(state, Path(out, f"{kind}-rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_keep_the_teacher_and_network_2_equal(prepared_small, tmp_path):
    """world_size=2: after an epoch's steps every rank holds the same teacher (averaged from the same,
    all-reduced student) and the same network 2 (DDP), parameters bit for bit."""
    import torch.multiprocessing as mp

    kinds = ("mean_teacher", "cps")
    cfgs = {
        k: open_data(small_run_config(prepared_small, ssl=k, world_size=2, seg_batch=4, unl_batch=32))[0]
        for k in kinds
    }
    dicts = {k: c.to_dict(include_derived=False) for k, c in cfgs.items()}
    args = (2, str(tmp_path / "init"), dicts, str(tmp_path / "exp"), str(tmp_path))
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    for kind in kinds:
        r0, r1 = (torch.load(tmp_path / f"{kind}-rank{r}.pt", weights_only=True) for r in (0, 1))
        assert r0["steps"] == r1["steps"] > 2
        # parameters: the BatchNorm running statistics are each rank's own (only rank 0's are saved)
        params = [k for k in r0["other"] if "running" not in k and "num_batches" not in k]
        assert params and all(torch.equal(r0[n][k], r1[n][k]) for n in ("student", "other") for k in params)
        assert not all(torch.equal(r0["other"][k], r0["student"][k]) for k in params)  # a separate network
