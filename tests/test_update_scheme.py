"""``update``: ``alternating`` (the authors' code) reproduces the numbers of the code before the option
existed; ``joint`` (the paper's objective) takes one optimiser step per (labeled, unlabeled) batch pair on
the summed loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from suite.config import RunConfig
from suite.losses import partial_ce, penalty_from_logits
from suite.models import channel_target, prepare_input
from suite.paths import ExperimentPaths
from suite.stages import process_group as pg
from suite.stages.base import RunContext, configure_torch
from suite.stages.checkpoint import seed_epoch
from suite.stages.runner import open_data
from suite.stages.segmenter import SegData, SegmenterStage, batch_images, load_seg_data
from suite.testing.small_runs import small_run_config

# Two epochs of each method at 32x32 (small_run_config, prepared_small) with the code of commit bf0cd8e, the
# parent of the `update` option: the sum of every floating-point weight and buffer after epoch 2, and
# (loss_ce, loss_penalty) of each epoch. Proposals' pseudo-labels are the true LV of the unlabeled slices.
PINNED = {
    "fs": (1943.0069986370645, [(0.8323538541793823, 0.0), (0.8152970552444458, 0.0)]),
    "oracle": (
        1799.5614848240175,
        [(0.8323538541793823, 291.93560406109236), (0.8057881832122803, 282.8524334881757)],
    ),
    "proposals": (
        1793.3193346741436,
        [(0.8323538541793823, 0.6246699520519802), (0.8176727652549743, 0.5996470536504473)],
    ),
}


def _ctx(cfg: RunConfig, root: Path) -> RunContext:
    cfg, data = open_data(cfg)
    configure_torch(cfg, torch.device("cpu"))
    paths = ExperimentPaths(root).run(cfg.run_id)
    return RunContext(
        cfg=cfg, paths=paths, experiment_root=root, data=data, device=torch.device("cpu"), rank=0, world=1
    )


def _data(prepared: Path, cfg: RunConfig, root: Path) -> SegData:
    """The stage's data; proposals: the true LV of the unlabeled slices as pseudo-labels (no FS run)."""
    if cfg.method != "proposals":
        return load_seg_data(_ctx(cfg, root))
    sd = load_seg_data(_ctx(cfg.replace(method="oracle"), root))
    unl = sd.labels.index_select(0, torch.as_tensor(sd.unl_idx))
    sd.pseudo_target, sd.pseudo_mask, sd.unl_targets = (unl == 3).to(torch.uint8), unl == 3, None
    return sd


def _weights_sum(st: SegmenterStage) -> float:
    return sum(float(v.double().sum()) for v in st.model_state().values() if v.is_floating_point())


@pytest.mark.parametrize("method", ["fs", "oracle", "proposals"])
def test_alternating_reproduces_the_numbers_before_the_option(prepared_small, tmp_path, method):
    # ssl=none (the default) named: no semi-supervised term leaves the numbers as they were
    cfg = small_run_config(prepared_small, method=method, seg_epochs=2, ssl="none")
    assert cfg.update == "alternating"
    st = SegmenterStage(_ctx(cfg, tmp_path), seg_data=_data(prepared_small, cfg, tmp_path))
    losses = []
    for ep in range(2):
        seed_epoch(cfg, ep)
        out = st.train_epoch(ep)
        losses.append((out["loss_ce"], out["loss_penalty"]))
    total, pinned = PINNED[method]
    assert [v for pair in losses for v in pair] == pytest.approx([v for p in pinned for v in p], rel=1e-12)
    assert _weights_sum(st) == pytest.approx(total, rel=1e-12)


def _count_steps(st: SegmenterStage, monkeypatch) -> list[int]:
    calls: list[int] = []
    real = st.opt.step

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(st.opt, "step", counted)
    return calls


def test_joint_one_step_is_a_hand_made_step_on_the_summed_loss(prepared_small, tmp_path, monkeypatch):
    """With one unlabeled batch the joint epoch is exactly one Adam step on CE(labeled) + λ·C(unlabeled),
    both batches in one forward pass; it differs from an alternating epoch."""
    cfg = small_run_config(prepared_small, method="oracle", update="joint", lam=1e-2)
    sd = _data(prepared_small, cfg, tmp_path)
    sd.lab_idx, sd.unl_idx = sd.lab_idx[:8], sd.unl_idx[:16]  # one labeled, one unlabeled batch
    assert sd.unl_targets is not None
    sd.unl_targets = sd.unl_targets[:16]
    ctx = _ctx(cfg, tmp_path)
    st = SegmenterStage(ctx, seg_data=sd)
    steps = _count_steps(st, monkeypatch)
    seed_epoch(cfg, 0)
    st.train_epoch(0)
    assert len(steps) == 1

    hand = SegmenterStage(ctx, seg_data=sd)  # same seed: same initial weights
    (lab,) = [b for b, _ in pg.epoch_batches(8, cfg.seg_batch, cfg.seed, ("segmenter", "labeled", 0), 0, 1)]
    (unl,) = [
        b for b, _ in pg.epoch_batches(16, cfg.unl_batch, cfg.seed, ("segmenter", "unlabeled", 0), 0, 1)
    ]
    seed_epoch(cfg, 0)
    hand.net.train()
    x = prepare_input(batch_images(sd.images, np.concatenate([sd.lab_idx[lab], sd.unl_idx[unl]])), cfg)
    logits = hand.net(x)
    target = channel_target(cfg, sd.labels.index_select(0, torch.as_tensor(sd.lab_idx[lab])))
    penalty, _ = penalty_from_logits(cfg, logits[len(lab) :], sd.unl_targets[torch.as_tensor(unl), 0])
    hand.opt.zero_grad()
    (partial_ce(logits[: len(lab)], target) + cfg.lam * penalty).backward()
    hand.opt.step()
    a, b = st.model_state(), hand.model_state()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-7) for k in a)

    alt = SegmenterStage(_ctx(cfg.replace(update="alternating"), tmp_path), seg_data=sd)
    seed_epoch(cfg, 0)
    alt.train_epoch(0)
    c = alt.model_state()
    assert not all(torch.allclose(a[k], c[k], rtol=0, atol=1e-7) for k in a)


def test_joint_steps_once_per_unlabeled_batch_cycling_the_labeled_set(
    prepared_small, tmp_path, monkeypatch, loss_images
):
    """An epoch is one pass over the unlabeled set: one step per unlabeled batch, each with a labeled batch;
    the labeled set is cycled (3 unlabeled batches, 1 labeled batch per pass: the labeled images 3 times)."""
    seen = loss_images
    cfg = small_run_config(prepared_small, method="oracle", update="joint", unl_batch=16)
    sd = _data(prepared_small, cfg, tmp_path)
    sd.lab_idx, sd.unl_idx = sd.lab_idx[:5], sd.unl_idx[:40]  # 3 unlabeled batches (16, 16, 8)
    assert sd.unl_targets is not None
    sd.unl_targets = sd.unl_targets[:40]
    st = SegmenterStage(_ctx(cfg, tmp_path), seg_data=sd)
    steps = _count_steps(st, monkeypatch)
    seed_epoch(cfg, 0)
    out = st.train_epoch(0)
    assert len(steps) == 3 and seen == {"ce": 15, "penalty": 40}
    assert 0.0 <= out["in_bounds"] <= 1.0 and np.isfinite(out["loss_total"])
    # FS ignores the option: the same steps as alternating FS
    fs = small_run_config(prepared_small, method="fs", update="joint")
    assert fs.run_id == fs.replace(update="alternating").run_id


def test_update_is_identity_only_for_unlabeled_methods_and_only_when_joint(prepared_small):
    base = small_run_config(prepared_small, method="oracle")
    assert "update" not in base.identity_keys()  # run ids from before the option are kept
    joint = base.replace(update="joint")
    assert "update" in joint.identity_keys() and joint.run_id != base.run_id
    with pytest.raises(Exception, match="update"):
        base.replace(update="both")


def test_joint_proposals_steps_on_ce_plus_pseudo_label_ce(prepared_small, tmp_path, monkeypatch):
    """Proposals under joint: one step per unlabeled batch; its unlabeled term is the pseudo-label CE."""
    cfg = small_run_config(prepared_small, method="proposals", update="joint", unl_batch=16)
    sd = _data(prepared_small, cfg, tmp_path)
    assert sd.pseudo_target is not None and sd.pseudo_mask is not None
    sd.lab_idx, sd.unl_idx = sd.lab_idx[:5], sd.unl_idx[:32]
    sd.pseudo_target, sd.pseudo_mask = sd.pseudo_target[:32], sd.pseudo_mask[:32]
    st = SegmenterStage(_ctx(cfg, tmp_path), seg_data=sd)
    steps = _count_steps(st, monkeypatch)
    seed_epoch(cfg, 0)
    out = st.train_epoch(0)
    assert len(steps) == 2 and out["loss_penalty"] > 0
    assert out["loss_total"] == pytest.approx(out["loss_ce"] + out["loss_penalty"])
