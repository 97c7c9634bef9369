"""``update``: ``alternating`` (the authors' code) is their loop, bit for bit; ``joint`` (the paper's
objective) takes one optimiser step per (labeled, unlabeled) batch pair on the summed loss."""

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
from suite.stages.base import RunContext, configure_torch, open_data
from suite.stages.checkpoint import seed_epoch
from suite.stages.segmenter import SegmenterStage
from suite.stages.segmenter_data import SegData, batch_images, load_seg_data
from suite.testing.small_runs import small_run_config


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


def _authors_epoch(st: SegmenterStage, cfg: RunConfig, sd: SegData, epoch: int) -> tuple[float, float]:
    """The authors' epoch by hand (their main.py:101-104): every labeled batch a CE step, then every
    unlabeled batch a step on the method's unlabeled term alone, in the suite's seeded orders. Returns the
    epoch's (mean CE per labeled batch, mean unlabeled term: per image for the penalty, per batch for
    proposals)."""
    st.net.train()
    ce_sum, term_sum, n_lab = 0.0, 0.0, 0
    for _, local in pg.epoch_batches(
        len(sd.lab_idx), cfg.seg_batch, cfg.seed, ("segmenter", "labeled", epoch), 0, 1
    ):
        idx = sd.lab_idx[local]
        target = channel_target(cfg, sd.labels.index_select(0, torch.as_tensor(idx)))
        loss = partial_ce(st.net(prepare_input(batch_images(sd.images, idx), cfg)), target)
        st.opt.zero_grad(set_to_none=True)
        loss.backward()
        st.opt.step()
        ce_sum, n_lab = ce_sum + float(loss.detach().double()), n_lab + 1
    if cfg.method == "fs":
        return ce_sum / n_lab, 0.0
    batches = pg.epoch_batches(
        len(sd.unl_idx), cfg.unl_batch, cfg.seed, ("segmenter", "unlabeled", epoch), 0, 1
    )
    for _, local in batches:
        logits = st.net(prepare_input(batch_images(sd.images, sd.unl_idx[local]), cfg))
        pos = torch.as_tensor(local)
        if cfg.method == "proposals":
            assert sd.pseudo_target is not None and sd.pseudo_mask is not None
            term = partial_ce(logits, sd.pseudo_target[pos].long(), sd.pseudo_mask[pos])
            loss = term
        else:
            assert sd.unl_targets is not None
            term, _ = penalty_from_logits(cfg, logits, sd.unl_targets[pos, 0])
            loss = cfg.lam * term
        st.opt.zero_grad(set_to_none=True)
        loss.backward()
        st.opt.step()
        term_sum += float(term.detach().double())
    per = len(batches) if cfg.method == "proposals" else len(sd.unl_idx)
    return ce_sum / n_lab, term_sum / per


@pytest.mark.parametrize("method", ["fs", "oracle", "proposals"])
def test_alternating_is_the_authors_loop_bit_for_bit(prepared_small, tmp_path, method):
    """Two alternating epochs equal the authors' loop written out by hand, bit for bit (losses and every
    weight). A comparison in one process, not numbers pinned on one machine: the same code gives other
    floats on another CPU (an AVX-512 and an AVX2 machine differ from the first epoch's CE on)."""
    # ssl=none (the default) named: no semi-supervised term leaves the authors' loop as it was
    cfg = small_run_config(prepared_small, method=method, seg_epochs=2, ssl="none")
    assert cfg.update == "alternating"
    sd = _data(prepared_small, cfg, tmp_path)
    ctx = _ctx(cfg, tmp_path)
    st, hand = SegmenterStage(ctx, seg_data=sd), SegmenterStage(ctx, seg_data=sd)
    for ep in range(2):
        seed_epoch(cfg, ep)
        out = st.train_epoch(ep)
        seed_epoch(cfg, ep)
        assert (out["loss_ce"], out["loss_penalty"]) == _authors_epoch(hand, cfg, sd, ep)
    a, b = st.model_state(), hand.model_state()
    assert all(torch.equal(a[k], b[k]) for k in a)


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
