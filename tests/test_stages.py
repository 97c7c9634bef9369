"""Training runs: run machinery units, which images reach which loss, and end-to-end smoke runs.

The end-to-end tests use the ``smoke`` preset at 32×32 (``image_size=32``), one thread, two segmenter epochs,
one regressor epoch and large batches on the small prepared phantom (``prepared_small``) so the default suite
stays fast on a shared 2-core machine.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.config import RunConfig
from suite.errors import InputError
from suite.paths import METRICS_COLUMNS, ExperimentPaths, RunPaths
from suite.stages import process_group as pg
from suite.stages.base import RunContext, configure_torch, open_data
from suite.stages.checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_epoch, set_rng_state
from suite.stages.lr_rules import CodeRule, MultiStepRule, PlateauRule
from suite.stages.metrics_log import MetricsWriter, read_metrics
from suite.stages.runner import execute
from suite.testing.small_runs import small_run_config

SMOKE = dict(seg_epochs=2, reg_epochs=1, reg_aug_copies=1)

SEG_RUN_METRICS = {"loss_ce", "loss_penalty", "loss_total", "lr", "epoch_time_s"}
SEG_VAL_VOLUME_METRICS = {"dice", "dice2d", "lv_volume_pred_ml", "lv_volume_true_ml"}


def smoke_cfg(data: Path, **kw) -> RunConfig:
    return small_run_config(data, **{**SMOKE, **kw})


# ------------------------------------------------------------------------------------------------ units
def test_metrics_writer_appends_exact_values_and_cuts_back(tmp_path):
    w = MetricsWriter(tmp_path / "metrics.csv")
    w.ensure_header()
    v = 0.1 + 0.2  # not representable in few digits: must round-trip exactly
    w.append([(0, "train", "", "loss_ce", v), (0, "val", "patient001_ED", "dice", 0.5)])
    w.append([(1, "train", "", "loss_ce", 1e-300), (2, "train", "", "loss_ce", 3.0)])
    rows = read_metrics(w.path)
    assert [r["epoch"] for r in rows] == [0, 0, 1, 2]
    assert rows[0]["value"] == v and rows[2]["value"] == 1e-300
    with open(w.path) as f:
        assert tuple(next(csv.reader(f))) == METRICS_COLUMNS
    assert w.cut_after(0) == 2
    assert [r["epoch"] for r in read_metrics(w.path)] == [0, 0]
    assert w.cut_after(-1) == 2
    assert read_metrics(w.path) == []


def test_metrics_writer_rejects_foreign_file(tmp_path):
    p = tmp_path / "metrics.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="metrics.csv"):
        MetricsWriter(p).cut_after(0)


def test_plateau_rule_halves_after_patience_epochs_without_improvement():
    r = PlateauRule(1.0, patience=2, factor=0.5)
    improved = [True, False, False, False, True, False, False]
    lrs = [r.after_epoch(e, imp, 0) for e, imp in enumerate(improved)]
    # bad epochs: 0,1,2(->halve, reset),1,0(improved),1,2(->halve)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]


def test_code_rule_halves_after_epoch_zero_then_at_multiples_of_best_plus_patience():
    r = CodeRule(1.0, patience=20, factor=0.5)
    lrs = {}
    for e in range(61):
        best = min(e, 5)  # best epoch stuck at 5 from epoch 5 on
        lrs[e] = r.after_epoch(e, e <= 5, best)
    assert lrs[0] == 0.5  # 0 % (0 + 20) == 0
    assert lrs[24] == 0.5 and lrs[25] == 0.25  # 25 % (5 + 20) == 0
    assert lrs[49] == 0.25 and lrs[50] == 0.125 and lrs[60] == 0.125


def test_multistep_rule_matches_torch_multisteplr():
    rule = MultiStepRule(0.1, milestones=(3, 5), factor=0.5)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 5], gamma=0.5)
    for e in range(8):
        opt.step()
        sched.step()
        assert rule.after_epoch(e, False, 0) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)


def test_epoch_batches_world1_is_the_plain_order_and_ranks_shard_it():
    order = pg.epoch_permutation(10, 0, "x", 3)
    assert sorted(order.tolist()) == list(range(10))
    assert np.array_equal(order, pg.epoch_permutation(10, 0, "x", 3))  # pure function of seed and axes
    assert not np.array_equal(order, pg.epoch_permutation(10, 0, "x", 4))
    one = pg.epoch_batches(10, 4, 0, ("x", 3), 0, 1)
    assert [b.tolist() for b, _ in one] == [order[:4].tolist(), order[4:8].tolist(), order[8:].tolist()]
    assert all(np.array_equal(g, loc) for g, loc in one)
    r0 = pg.epoch_batches(10, 4, 0, ("x", 3), 0, 2)
    r1 = pg.epoch_batches(10, 4, 0, ("x", 3), 1, 2)
    assert [g.tolist() for g, _ in r0] == [g.tolist() for g, _ in r1]
    for (g, a), (_, b) in zip(r0, r1, strict=True):
        assert len(a) == len(b) and np.array_equal(np.concatenate([a, b]), g)
    # the short last global batch (2 items) is split 1 + 1; a 3-item one would be padded from the start
    assert [len(g) for g, _ in pg.epoch_batches(11, 4, 0, ("x",), 0, 2)] == [4, 4, 4]


def test_rng_state_roundtrips_through_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    import random

    random.seed(3)
    state = rng_state()
    expect = (torch.rand(3), np.random.rand(3), random.random())
    save_checkpoint(tmp_path / "ck.pt", {"rng": state, "epoch": 4})
    loaded = load_checkpoint(tmp_path / "ck.pt")  # weights_only=True inside
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expect[0])
    assert np.array_equal(np.random.rand(3), expect[1])
    assert random.random() == expect[2]


def test_corrupt_checkpoint_is_one_clear_input_error(tmp_path):
    p = tmp_path / "checkpoint_last.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="checkpoint_last.pt: cannot load checkpoint"):
        load_checkpoint(p)


def test_world_size_mismatch_is_a_clear_error():
    with pytest.raises(InputError, match="world_size=2 needs 2 processes"):
        pg.check_world_size(2)
    pg.check_world_size(1)


# ------------------------------------------------------------------------------------------------ loss reach
def _ctx(cfg: RunConfig, root: Path):
    cfg, data = open_data(cfg)
    paths = ExperimentPaths(root).run(cfg.run_id)
    configure_torch(cfg, torch.device("cpu"))
    return RunContext(
        cfg=cfg, paths=paths, experiment_root=root, data=data, device=torch.device("cpu"), rank=0, world=1
    )


def _small(sd, n_lab=2, n_unl=4):
    """Keep a few slices (with an LV) so that one epoch takes a fraction of a second."""
    sd.lab_idx = sd.lab_idx[:n_lab]
    keep = np.arange(n_unl)
    sd.unl_idx = sd.unl_idx[keep]
    if sd.unl_targets is not None:
        sd.unl_targets = sd.unl_targets[keep]
    if sd.pseudo_target is not None:
        sd.pseudo_target, sd.pseudo_mask = sd.pseudo_target[keep], sd.pseudo_mask[keep]
    return sd


def _train_once(ctx, sd) -> dict[str, torch.Tensor]:
    from suite.stages.segmenter import SegmenterStage

    st = SegmenterStage(ctx, seg_data=sd)
    seed_epoch(ctx.cfg, 0)
    st.train_epoch(0)
    return {k: v.detach().clone() for k, v in st.model_state().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["fs", "oracle"])
def test_unlabeled_and_validation_data_reach_only_the_losses_they_should(prepared_small, tmp_path, method):
    """FS never sees unlabeled images; no method sees the labels of unlabeled or validation slices except
    through the Oracle's exact sizes; validation images never reach training."""
    from suite.stages.segmenter_data import load_seg_data

    ctx = _ctx(smoke_cfg(prepared_small, method=method), tmp_path)
    base = _small(load_seg_data(ctx))
    ref = _train_once(ctx, base)

    # validation images and labels scrambled: training is unchanged (for every method)
    sd = _small(load_seg_data(ctx))
    sd.images[torch.as_tensor(sd.val_idx)] = 255 - sd.images[torch.as_tensor(sd.val_idx)]
    sd.labels[torch.as_tensor(sd.val_idx)] = 0
    assert _same(ref, _train_once(ctx, sd))

    # labels of the unlabeled slices replaced: identical (oracle's sizes were read at load time, kept here)
    sd = _small(load_seg_data(ctx))
    sd.labels[torch.as_tensor(sd.unl_idx)] = 3
    assert _same(ref, _train_once(ctx, sd))

    # unlabeled images scrambled: FS unchanged, Oracle changed (its penalty sees them)
    sd = _small(load_seg_data(ctx))
    sd.images[torch.as_tensor(sd.unl_idx)] = 255 - sd.images[torch.as_tensor(sd.unl_idx)]
    assert _same(ref, _train_once(ctx, sd)) == (method == "fs")

    # labeled images matter for every method
    sd = _small(load_seg_data(ctx))
    sd.images[torch.as_tensor(sd.lab_idx)] = 255 - sd.images[torch.as_tensor(sd.lab_idx)]
    assert not _same(ref, _train_once(ctx, sd))


def test_penalty_warmup_epochs_train_exactly_as_fs(prepared_small, tmp_path):
    """``penalty_warmup=1``: epoch 0 of an Oracle run skips the unlabeled pass (weights bit-identical to FS's,
    no ``in_bounds`` reported); epoch 1 applies the penalty (weights differ from FS's); it is part of the run
    id."""
    from suite.stages.segmenter import SegmenterStage
    from suite.stages.segmenter_data import load_seg_data

    def two_epochs(method: str, **kw):
        ctx = _ctx(smoke_cfg(prepared_small, method=method, **kw), tmp_path / method)
        st = SegmenterStage(ctx, seg_data=_small(load_seg_data(ctx)))
        states, outs = [], []
        for ep in range(2):
            seed_epoch(ctx.cfg, ep)
            outs.append(st.train_epoch(ep))
            states.append({k: v.detach().clone() for k, v in st.model_state().items()})
        return states, outs

    fs, _ = two_epochs("fs")
    orc, outs = two_epochs("oracle", penalty_warmup=1)
    assert _same(fs[0], orc[0]) and not _same(fs[1], orc[1])
    assert "in_bounds" not in outs[0] and outs[0]["loss_penalty"] == 0.0 and "in_bounds" in outs[1]
    a = smoke_cfg(prepared_small, method="oracle")
    assert a.run_id != a.replace(penalty_warmup=1).run_id
    assert a.replace(method="fs").run_id == a.replace(method="fs", penalty_warmup=1).run_id
    with pytest.raises(Exception, match="penalty_warmup"):
        a.replace(penalty_warmup=-1)


def test_channels_last_and_bf16_options_train(prepared_small, tmp_path):
    """The runtime options reach the step: channels-last weights, bf16 autocast; the loss stays finite."""
    from suite.stages.segmenter import SegmenterStage
    from suite.stages.segmenter_data import load_seg_data

    ctx = _ctx(smoke_cfg(prepared_small, method="oracle", channels_last=True, amp="bf16"), tmp_path)
    sd = _small(load_seg_data(ctx))
    st = SegmenterStage(ctx, seg_data=sd)
    conv = next(m for m in st.net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    out = st.train_epoch(0)
    assert np.isfinite(out["loss_ce"]) and np.isfinite(out["loss_penalty"])
    assert all(torch.isfinite(v).all() for v in st.model_state().values() if v.is_floating_point())


def test_oracle_bounds_are_the_exact_sizes(prepared_small, tmp_path):
    from suite.stages.segmenter_data import load_seg_data

    ctx = _ctx(smoke_cfg(prepared_small, method="oracle"), tmp_path)
    sd = load_seg_data(ctx)
    true = (sd.labels[torch.as_tensor(sd.unl_idx)] == 3).sum(dim=(1, 2)).float()
    assert sd.unl_targets.shape == (len(true), 1)
    assert torch.equal(sd.unl_targets[:, 0], true) and true.sum() > 0


def test_logged_validation_metrics_are_the_hand_checked_ones(prepared_small, tmp_path):
    """What validate() logs equals suite.metrics' scalar Dice / per-slice Dice on the stage's own predictions
    (the functions tests/test_metrics.py checks by hand), and the LV volume is pixels × ml per voxel."""
    from suite.metrics import dice, dice_per_slice
    from suite.stages.segmenter import SegmenterStage

    ctx = _ctx(smoke_cfg(prepared_small, method="fs"), tmp_path)
    st = SegmenterStage(ctx)
    _train_once(ctx, st.sd)  # some foreground in the predictions
    rows, run = st.validate(0)
    logged = {(vol, m): v for _, split, vol, m, v in rows}
    all_d2 = []
    for v, (name, idx) in enumerate(st.sd.volumes):
        pred = st.predict(idx) == st.lv
        true = st.sd.labels[torch.as_tensor(idx)] == 3
        d2 = dice_per_slice(pred, true)
        all_d2 += d2.tolist()
        assert logged[(name, "dice")] == pytest.approx(dice(pred, true), abs=1e-12)
        assert logged[(name, "dice2d")] == pytest.approx(float(d2.mean()), abs=1e-12)
        assert logged[(name, "lv_volume_pred_ml")] == pytest.approx(int(pred.sum()) * st.sd.voxel_ml[v])
        assert logged[(name, "lv_volume_true_ml")] == pytest.approx(int(true.sum()) * st.sd.voxel_ml[v])
    assert run["dice2d_slices"] == pytest.approx(float(np.mean(all_d2)), abs=1e-12)
    vols = [logged[(name, "dice")] for name, _ in st.sd.volumes]
    assert run["dice_mean"] == pytest.approx(float(np.mean(vols)), abs=1e-12)
    assert logged[("", "dice2d_slices")] == run["dice2d_slices"]


def test_loss_spy_counts_images_per_loss(prepared_small, tmp_path, loss_images):
    """CE sees exactly the labeled images, the penalty exactly the unlabeled ones (oracle), once per epoch."""
    import suite.stages.segmenter as seg

    seen = loss_images
    for method, expect_pen in (("fs", 0), ("oracle", 5)):
        seen.update(ce=0, penalty=0)
        ctx = _ctx(smoke_cfg(prepared_small, method=method), tmp_path)
        sd = _small(seg.load_seg_data(ctx), n_lab=3, n_unl=5)
        _train_once(ctx, sd)
        assert seen == {"ce": 3, "penalty": expect_pen}, method


# ------------------------------------------------------------------------------------------------ end to end
def _rows(paths: RunPaths) -> list[dict]:
    return read_metrics(paths.metrics)


def test_four_methods_end_to_end(prepared_small, tmp_path):
    exp = tmp_path / "exp"
    runs = {}
    for method in ("fs", "oracle", "proposed", "proposals"):
        cfg = smoke_cfg(prepared_small, method=method)
        runs[method] = execute(cfg, exp)
        assert runs[method].status() == "finished", method
    cfg0, _ = open_data(smoke_cfg(prepared_small, method="proposed"))
    reg = ExperimentPaths(exp).run(cfg0.regressor_config().run_id)
    fs = runs["fs"]
    assert reg.is_finished() and reg.sizes.exists()
    assert fs.pseudo_labels.exists()  # proposals made them in the FS run, from its best checkpoint

    # regressor: metrics vocabulary, sizes of every prepared slice
    reg_rows = _rows(reg)
    assert {(r["split"], r["metric"]) for r in reg_rows} == {
        ("train", "loss_mse"),
        ("train", "lr"),
        ("train", "epoch_time_s"),
        ("regval", "size_abs_err"),
        ("regval", "size_abs_err_pct"),
        ("regval", "bounds_ok"),
    }
    assert sorted({r["epoch"] for r in reg_rows}) == [0]
    with np.load(reg.sizes) as z:
        from suite.data.dataset import PreparedData

        n = len(PreparedData.open(prepared_small))
        assert z["sizes"].shape == (n,) and np.isfinite(z["sizes"]).all() and int(z["image_size"]) == 32

    for method, paths in runs.items():
        rows = _rows(paths)
        with open(paths.metrics) as f:
            assert tuple(next(csv.reader(f))) == METRICS_COLUMNS
        assert sorted({r["epoch"] for r in rows}) == [0, 1]
        train = {r["metric"] for r in rows if r["split"] == "train"}
        assert SEG_RUN_METRICS <= train
        assert ("in_bounds" in train) == (method in ("oracle", "proposed"))
        vols = {r["volume"] for r in rows if r["split"] == "val" and r["volume"]}
        assert vols and all(v.endswith(("_ED", "_ES")) for v in vols)
        per_vol = {
            (r["volume"], r["metric"])
            for r in rows
            if r["split"] == "val" and r["volume"] and r["epoch"] == 1
        }
        assert per_vol == {(v, m) for v in vols for m in SEG_VAL_VOLUME_METRICS}
        assert {r["metric"] for r in rows if r["split"] == "val" and not r["volume"]} == {
            "dice2d_slices",
            "dice_mean",
        }
        for r in rows:
            assert np.isfinite(r["value"]), (method, r)
            if r["metric"] in ("dice", "dice2d", "dice2d_slices", "dice_mean", "in_bounds"):
                assert 0.0 <= r["value"] <= 1.0
        summary = json.loads(paths.summary.read_text())
        assert summary["run_id"] == paths.run_id and summary["method"] == method and summary["epochs"] == 2
        assert summary["world_size"] == 1 and summary["device"] == "cpu"
        assert 0 <= summary["best_epoch"] <= 1 and "val/dice_mean" in summary["final"]
        assert json.loads(paths.config.read_text())["method"] == method
        assert paths.checkpoint_best.exists() and paths.checkpoint_last.exists() and not paths.failed.exists()
        with np.load(paths.predictions / "val_examples.npz") as z:
            assert z["image"].shape == z["label"].shape == z["pred"].shape == (4, 32, 32)
            assert z["pred"].dtype == np.uint8
            examples = z["volume"].tolist(), z["slice_index"].tolist()
        if method == "fs":
            fs_examples = examples
        assert examples == fs_examples  # the same fixed validation slices for every run

    # the same seed starts every method from the same weights and order: epoch-0 labeled CE is shared
    ce0 = {
        m: next(r["value"] for r in _rows(p) if r["epoch"] == 0 and r["metric"] == "loss_ce")
        for m, p in runs.items()
    }
    assert len(set(ce0.values())) == 1, ce0

    # a second execute reuses everything: nothing is trained again
    stamps = {p: (p.metrics.stat().st_mtime_ns, p.summary.stat().st_mtime_ns) for p in [reg, *runs.values()]}
    pl_stamp = fs.pseudo_labels.stat().st_mtime_ns
    for method in ("proposed", "proposals"):
        assert execute(smoke_cfg(prepared_small, method=method), exp) == runs[method]
    assert {p: (p.metrics.stat().st_mtime_ns, p.summary.stat().st_mtime_ns) for p in stamps} == stamps
    assert fs.pseudo_labels.stat().st_mtime_ns == pl_stamp
    assert len(_rows(reg)) == len(reg_rows)


def test_data_hash_mismatch_is_rejected(prepared_small, tmp_path):
    cfg = smoke_cfg(prepared_small, data_hash="0000000000000000")
    with pytest.raises(InputError, match="data_hash"):
        execute(cfg, tmp_path)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# ------------------------------------------------------------------------------------------------ distributed
def _ddp_worker(rank: int, world: int, init_file: str, cfg_dict: dict, root: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        paths = execute(RunConfig.from_dict(cfg_dict), root)
        Path(out, f"rank{rank}.txt").write_text(str(paths.root))
    finally:
        dist.destroy_process_group()


def _spawn(world: int, cfg: RunConfig, root: Path, tmp: Path) -> Path:
    import torch.multiprocessing as mp

    mp.spawn(
        _ddp_worker,
        args=(world, str(tmp / f"init-{world}"), cfg.to_dict(include_derived=False), str(root), str(tmp)),
        nprocs=world,
        join=True,
    )
    roots = {Path(tmp, f"rank{r}.txt").read_text() for r in range(world)}
    assert len(roots) == 1  # every rank ran the same run
    return Path(roots.pop())


@pytest.mark.slow
def test_one_rank_process_group_is_bit_identical_to_standalone(prepared_small, tmp_path):
    """What Ray Train does with one worker: a process group of size 1 must not change a single number."""
    cfg = smoke_cfg(prepared_small, method="oracle", seg_batch=2, unl_batch=4)
    alone = execute(cfg, tmp_path / "alone")
    in_group = RunPaths(_spawn(1, cfg, tmp_path / "group", tmp_path))
    strip = [
        (r["epoch"], r["split"], r["volume"], r["metric"], r["value"])
        for r in _rows(alone)
        if r["metric"] != "epoch_time_s"
    ]
    assert strip == [
        (r["epoch"], r["split"], r["volume"], r["metric"], r["value"])
        for r in _rows(in_group)
        if r["metric"] != "epoch_time_s"
    ]


@pytest.mark.slow
def test_two_ranks_ddp_gloo_trains_like_one(prepared_small, tmp_path):
    """world_size=2 (gloo, 2 processes): the same epochs, finite metrics, numbers close to one process."""
    one = execute(smoke_cfg(prepared_small, method="oracle", seg_batch=2, unl_batch=4), tmp_path / "one")
    cfg2 = smoke_cfg(prepared_small, method="oracle", seg_batch=2, unl_batch=4, world_size=2)
    two = RunPaths(_spawn(2, cfg2, tmp_path / "two", tmp_path))
    assert two.status() == "finished" and two.run_id != one.run_id  # world size is identity
    s2 = json.loads(two.summary.read_text())
    assert s2["world_size"] == 2
    # cost: one device per rank; the CPU time of both ranks (all-reduced), not rank 0's alone
    c2 = s2["cost"]
    assert c2["world_size"] == 2 and c2["device_seconds"] == pytest.approx(2 * c2["wall_seconds"])
    r1, r2 = _rows(one), _rows(two)
    key = lambda r: (r["epoch"], r["split"], r["volume"], r["metric"])  # noqa: E731
    assert sorted(map(key, r1)) == sorted(map(key, r2))
    assert all(np.isfinite(r["value"]) for r in r2)
    v1, v2 = {key(r): r["value"] for r in r1}, {key(r): r["value"] for r in r2}
    # epoch 0 starts from the same weights and sees the same global batches; BatchNorm statistics are per rank
    assert v2[(0, "train", "", "loss_ce")] == pytest.approx(v1[(0, "train", "", "loss_ce")], rel=0.1)
    assert v2[(0, "train", "", "in_bounds")] == pytest.approx(v1[(0, "train", "", "in_bounds")], abs=0.25)
