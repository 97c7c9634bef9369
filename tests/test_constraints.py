"""The constraint family (suite.constraints): losses against hand-computed values and analytic gradients, the
empty-class rule, run-id invariance, the ``constraints`` space's plan, and the paper's setting unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from suite import constraints as cons
from suite.config import RunConfig
from suite.errors import ConfigError
from suite.losses import (
    bound_terms,
    log_barrier,
    penalty_from_logits,
    size_penalty,
    soft_centroid,
)
from suite.models import build_regressor, constrained_channels, regressor_outputs
from suite.testing.preset_history import PRESET_VALUES_BEFORE
from suite.testing.small_runs import small_run_config

MULTI = dict(classes="multi", seg_out_channels=4)


def _cfg(**kw) -> RunConfig:
    return RunConfig.from_preset("smoke", method="oracle", **kw)


# ------------------------------------------------------------------------------------------ log-barrier
@pytest.mark.parametrize(
    "t, z, value, grad",
    [
        # below the switch point z = -1/t² = -0.25: -log(-z)/t, derivative -1/(t z)
        (2.0, -1.0, 0.0, 0.5),
        (2.0, -4.0, -math.log(4.0) / 2, 1 / 8),
        # at the switch point: -log(1/t²)/t = log(4)/2, derivative t
        (2.0, -0.25, math.log(4.0) / 2, 2.0),
        # above: t z - log(1/t²)/t + 1/t = 2 z + log(4)/2 + 1/2, derivative t
        (2.0, 1.0, 2.0 + math.log(4.0) / 2 + 0.5, 2.0),
        (2.0, 0.0, math.log(4.0) / 2 + 0.5, 2.0),
        (1.0, -1.0, 0.0, 1.0),  # t = 1: switch at -1
        (1.0, 3.0, 3.0 + 0.0 + 1.0, 1.0),
    ],
)
def test_log_barrier_values_and_gradients(t, z, value, grad):
    zt = torch.tensor([z], dtype=torch.float64, requires_grad=True)
    out = log_barrier(zt, t)
    out.sum().backward()
    assert out.item() == pytest.approx(value, abs=1e-12)
    assert zt.grad is not None and zt.grad.item() == pytest.approx(grad, abs=1e-12)


def test_log_barrier_is_continuous_with_a_continuous_slope_at_the_switch():
    t = 5.0
    s = -1 / t**2
    z = torch.tensor([s - 1e-9, s + 1e-9], dtype=torch.float64, requires_grad=True)
    v = log_barrier(z, t)
    v.sum().backward()
    assert v[0].item() == pytest.approx(v[1].item(), abs=1e-6)
    assert z.grad.tolist() == pytest.approx([t, t], rel=1e-6)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="t=0"):
        log_barrier(z, 0.0)


def test_bound_terms_penalty_and_barrier():
    value = torch.tensor([5.0, 10.0, 20.0])
    lo, hi = torch.tensor([8.0, 8.0, 8.0]), torch.tensor([12.0, 12.0, 12.0])
    assert bound_terms(value, lo, hi, "penalty").tolist() == [9.0, 0.0, 64.0]
    t = 1.0
    want = [log_barrier(lo - value, t)[i] + log_barrier(value - hi, t)[i] for i in range(3)]
    assert bound_terms(value, lo, hi, "logbarrier", t).tolist() == pytest.approx([float(w) for w in want])
    # inside the bounds the barrier is -log(2)/t - log(2)/t at 10 (2 from each bound), not 0
    assert bound_terms(value, lo, hi, "logbarrier", t)[1].item() == pytest.approx(-2 * math.log(2.0))
    with pytest.raises(ValueError, match="scheme='lagrange'"):
        bound_terms(value, lo, hi, "lagrange")


# ------------------------------------------------------------------------------------------ centroid
def _disc(side: int, cy: float, cx: float, r: float) -> torch.Tensor:
    ys = torch.arange(side, dtype=torch.float64) + 0.5
    return (((ys[:, None] - cy) ** 2 + (ys[None, :] - cx) ** 2) <= r * r).double()


def test_soft_centroid_of_known_shapes_is_resolution_independent():
    d64 = _disc(64, 20.0, 40.0, 8.0)
    c = soft_centroid(d64)
    assert c.tolist() == pytest.approx([20 / 64, 40 / 64], abs=1e-6)
    d128 = _disc(128, 40.0, 80.0, 16.0)  # the same disc at twice the resolution
    assert soft_centroid(d128).tolist() == pytest.approx(c.tolist(), abs=1e-6)
    one = torch.zeros(4, 8)
    one[1, 6] = 1.0  # a single pixel sits at its centre
    assert soft_centroid(one).tolist() == pytest.approx([1.5 / 4, 6.5 / 8])
    assert soft_centroid(torch.zeros(2, 3, 5, 5)).abs().sum().item() == 0.0  # empty: (0, 0), not NaN


def test_soft_centroid_gradient_is_the_analytic_one():
    torch.manual_seed(0)
    p = torch.rand(6, 6, dtype=torch.float64, requires_grad=True)
    c = soft_centroid(p)
    c[0].backward()  # cy = Σ p y / Σ p  →  ∂cy/∂p_ij = (y_i − cy) / Σ p
    ys = (torch.arange(6, dtype=torch.float64) + 0.5) / 6
    want = ((ys[:, None] - c[0].detach()) / p.detach().sum()).expand(6, 6)
    assert p.grad is not None and torch.allclose(p.grad, want, atol=1e-6)


# ------------------------------------------------------------------------------------------ targets
def test_label_targets_sizes_centroids_and_absent_classes():
    cfg = _cfg(constrained="all", constraint="size+centroid", **MULTI)
    lab = torch.zeros(1, 16, 16, dtype=torch.uint8)
    lab[0, 2:6, 4:8] = 3  # LV: 16 px centred at (4, 6)
    lab[0, 10:12, 0:4] = 1  # RV: 8 px centred at (11, 2); no myocardium
    t = cons.label_targets(cfg, lab)
    assert cons.target_columns(cfg) == [
        "size_RV", "size_Myo", "size_LV", "cy_RV", "cx_RV", "cy_Myo", "cx_Myo", "cy_LV", "cx_LV",
    ]  # fmt: skip
    assert t.tolist() == [pytest.approx([8, 0, 16, 11, 2, 0, 0, 4, 6])]
    lv = cons.label_targets(_cfg(), lab)
    assert lv.shape == (1, 1) and lv.item() == 16.0


def test_centroid_present_rule():
    # present ⇔ the upper size bound (1+γ)R allows at least one pixel
    upper = torch.tensor([0.0, 0.99, 1.0, 250.0])
    assert cons.centroid_present(upper).tolist() == [False, False, True, True]


# ------------------------------------------------------------------------------------------ unlabeled loss
def _logits_from_probs(probs: torch.Tensor) -> torch.Tensor:
    return probs.clamp_min(1e-30).log()


def test_generic_path_reproduces_the_paper_penalty(monkeypatch):
    """The general loss, forced onto the paper's setting, equals penalty_from_logits (pixels and fraction)."""
    torch.manual_seed(1)
    logits = torch.randn(3, 2, 16, 16)
    sizes = torch.tensor([[30.0], [0.0], [200.0]])
    for units in ("pixels", "fraction"):
        cfg = _cfg(size_units=units)
        want, want_in = penalty_from_logits(cfg, logits, sizes[:, 0])
        monkeypatch.setattr(cons, "is_paper_setting", lambda c: False)
        got, got_in = cons.unlabeled_loss(cfg, logits, sizes, epoch=0)
        monkeypatch.undo()
        assert got.item() == pytest.approx(want.item(), rel=1e-6)
        assert got_in.tolist() == want_in.tolist()
        paper, _ = cons.unlabeled_loss(cfg, logits, sizes, epoch=0)
        assert torch.equal(paper, want)  # the paper's setting goes through penalty_from_logits itself


def test_per_class_size_penalty_is_the_sum_over_classes():
    cfg = _cfg(constrained="all", **MULTI)
    assert constrained_channels(cfg) == (1, 2, 3)
    torch.manual_seed(2)
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    targets = torch.tensor([[10.0, 0.0, 20.0], [5.0, 12.0, 0.0]])
    loss, inside = cons.unlabeled_loss(cfg, logits, targets, epoch=0)
    probs = torch.softmax(logits.detach(), 1)
    want = 0.0
    for k, ch in enumerate((1, 2, 3)):
        lo, hi = 0.9 * targets[:, k], 1.1 * targets[:, k]
        want += size_penalty(probs[:, ch], lo, hi).item()  # an empty class: bounds [0, 0], penalty s²
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert inside.shape == (2,)
    loss.backward()  # every constrained channel gets a gradient
    assert logits.grad is not None and logits.grad[:, 1:].abs().sum() > 0


def _one_hot_logits(mask: torch.Tensor, channel: int, channels: int = 2) -> torch.Tensor:
    """Logits whose softmax is (to ~1e-13) ``mask`` on ``channel`` and background elsewhere."""
    lg = torch.zeros(1, channels, *mask.shape)
    lg[0, channel] = torch.where(mask.bool(), 30.0, -30.0)
    return lg


def test_centroid_penalty_hand_computed_and_empty_class_rule():
    side = 32
    disc = _disc(side, 12.0, 16.0, 4.0).float()
    size = float(disc.sum())
    logits = _one_hot_logits(disc, 1)
    tol = 2 / side
    cfg = _cfg(constraint="size+centroid", centroid_tol=tol)
    # target centroid 3 px below in y: the lower bound (15 − 2 px) is 1 px above the soft centroid (12)
    target = torch.tensor([[size, 15.0, 16.0]])
    loss, inside = cons.unlabeled_loss(cfg, logits, target, epoch=0)
    assert loss.item() == pytest.approx(1.0 / side**2, rel=1e-4)  # (1 px)² / (H·W); the size is inside
    assert inside.tolist() == [False]
    inside_target = torch.tensor([[size, 13.0, 17.0]])
    loss_in, inside_in = cons.unlabeled_loss(cfg, logits, inside_target, epoch=0)
    assert loss_in.item() == pytest.approx(0.0, abs=1e-6) and inside_in.tolist() == [True]
    # absent (Oracle: true size 0; Proposed: (1+γ)R < 1 px): no centroid term, only the size one (s²/HW)
    for r in (0.0, 0.9):
        absent = torch.tensor([[r, 15.0, 16.0]])
        loss_abs, _ = cons.unlabeled_loss(cfg, logits, absent, epoch=0)
        size_only = (size - 1.1 * r) ** 2 / side**2
        assert loss_abs.item() == pytest.approx(size_only, rel=1e-4)


def test_logbarrier_schedule_and_centroid_in_reference_units():
    cfg = _cfg(scheme="logbarrier", barrier_t=2.0, barrier_growth=1.5)
    assert cons.barrier_t(cfg, 0) == 2.0 and cons.barrier_t(cfg, 2) == pytest.approx(4.5)
    assert cons.barrier_t(_cfg(), 3) == pytest.approx(1.331)  # the authors' t = 1, × 1.1 per epoch
    side = 32
    disc = _disc(side, 12.0, 16.0, 4.0).float()
    logits = _one_hot_logits(disc, 1)
    size = float(disc.sum())
    target = torch.tensor([[size]])
    lo, hi = 0.9 * size, 1.1 * size
    for epoch in (0, 2):
        t = cons.barrier_t(cfg, epoch)
        loss, _ = cons.unlabeled_loss(cfg, logits, target, epoch=epoch)
        want = log_barrier(torch.tensor([lo - size, size - hi], dtype=torch.float64), t).sum() / side**2
        assert loss.item() == pytest.approx(want.item(), rel=1e-5)


# ------------------------------------------------------------------------------------------ regressor
def test_regressor_outputs_and_loss():
    assert regressor_outputs(_cfg()) == 1
    cfg = _cfg(constrained="all", constraint="size+centroid", **MULTI, reg_layers=(1, 1, 1, 1), reg_groups=2)
    assert regressor_outputs(cfg) == 9
    net = build_regressor(cfg).eval()
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, 9)
    pred = torch.zeros(1, 9)
    target = torch.tensor([[4.0, 0.0, 2.0, 3.0, 1.0, 7.0, 7.0, 2.0, 2.0]])
    # sizes: mean of (16, 0, 4); centroids: the present classes (RV, LV) only: mean of (9, 1, 4, 4)
    want = (16 + 0 + 4) / 3 + (9 + 1 + 4 + 4) / 4
    assert cons.regression_loss(cfg, pred, target).item() == pytest.approx(want)
    authors = cfg.replace(reg_arch="resnext-authors", constraint="size", image_size=256)
    net = build_regressor(authors).eval()  # its 4 outputs are the labels: RV, Myo, LV are columns 1, 2, 3
    x = torch.rand(2, 1, 256, 256)
    assert torch.equal(net(x), net.outputs(x)[:, [1, 2, 3]])
    paper = _cfg()
    assert cons.regression_loss(paper, torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])).item() == pytest.approx(
        14 / 3
    )


# ------------------------------------------------------------------------------------------ config, run ids
# computed at the parent commit bf0cd8e (before the constraint family existed), with the presets' values of
# that time (PRESET_VALUES_BEFORE: the fields a preset has changed since)
PARENT_RUN_IDS = {
    ("paper", "fs"): "seg-fs-n5-s0-aacbedbad3",
    ("paper", "proposals"): "seg-proposals-n5-s0-fa35cc72d7",
    ("paper", "proposed"): "seg-proposed-n5-s0-g0.1-l0.01-ad3b353b3e",
    ("paper", "oracle"): "seg-oracle-n5-s0-g0.1-l0.01-b8ee6bc5d1",
    ("paper", "regressor"): "reg-n5-s0-e59b56592c",
    ("smoke", "proposed"): "seg-proposed-n5-s0-g0.1-l0.01-f6d0b236ce",
    ("smoke", "oracle"): "seg-oracle-n5-s0-g0.1-l0.01-8de26ff81d",
    ("smoke", "regressor"): "reg-n5-s0-98759ebd9c",
    ("code", "proposed"): "seg-proposed-n5-s0-g0.1-l0.01-0be2235b4e",
    ("fidelity", "oracle"): "seg-oracle-n5-s0-g0.1-l0.0001-66000e1ab0",
}


def test_regressor_logs_the_size_error_of_every_constrained_class():
    from suite.stages.regressor import other_class_metrics

    cfg = RunConfig.from_preset("smoke", constrained="all", **MULTI)
    # columns: size_RV, size_Myo, size_LV; two slices, the second without an RV
    true = np.array([[100.0, 50.0, 80.0], [0.0, 40.0, 60.0]])
    pred = np.array([[110.0, 50.0, 0.0], [5.0, 30.0, 0.0]])
    got = other_class_metrics(cfg.replace(gamma=0.1), pred, true)
    assert set(got) == {
        f"{m}_{c}" for m in ("size_abs_err", "size_abs_err_pct", "bounds_ok") for c in ("rv", "myo")
    }
    assert got["size_abs_err_rv"] == pytest.approx(7.5) and got["size_abs_err_pct_rv"] == pytest.approx(10.0)
    assert got["size_abs_err_myo"] == pytest.approx(5.0) and got["size_abs_err_pct_myo"] == pytest.approx(
        12.5
    )
    # RV: 100 in [99, 121] yes; 0 in [4.5, 5.5] no. Myo: 50 in [45, 55] yes; 40 in [27, 33] no
    assert got["bounds_ok_rv"] == 0.5 and got["bounds_ok_myo"] == 0.5
    assert other_class_metrics(RunConfig.from_preset("smoke"), pred[:, 2:], true[:, 2:]) == {}


def test_regressor_logs_the_centroid_error_of_every_constrained_class():
    from suite.stages.regressor import centroid_errors

    cfg = RunConfig.from_preset("smoke", constrained="all", constraint="size+centroid", **MULTI)
    # columns: size_RV, size_Myo, size_LV, then cy, cx of RV, Myo, LV; the second slice has no RV
    true = np.array([[9.0, 9, 9, 10, 10, 20, 20, 30, 30], [0.0, 9, 9, 0, 0, 20, 20, 30, 30]])
    pred = np.array([[0.0, 0, 0, 12, 10, 21, 20, 30, 34], [0.0, 0, 0, 50, 50, 20, 22, 30, 30]])
    got = centroid_errors(cfg, pred, true)
    # RV: slice 0 only, |2|, |0|; Myo: |1|, |0|, |0|, |2|; LV: |0|, |4|, |0|, |0|
    assert got == {
        "centroid_abs_err_rv": pytest.approx(1.0),
        "centroid_abs_err_myo": pytest.approx(0.75),
        "centroid_abs_err_lv": pytest.approx(1.0),
        "centroid_abs_err": pytest.approx(9 / 10),  # every present (slice, class) coordinate
    }
    lv = RunConfig.from_preset("smoke", constraint="size+centroid")  # one class: its error alone
    assert centroid_errors(lv, pred[:, [2, 7, 8]], true[:, [2, 7, 8]]) == {"centroid_abs_err": 1.0}


def test_fields_that_do_not_act_do_not_change_the_run_id():
    """The log-barrier's t under scheme=penalty and the centroid tolerance under constraint=size change no
    number, so they change no run id: the same work is never trained twice under two ids."""
    for method in ("proposed", "oracle"):
        base = RunConfig.from_preset("smoke", method=method)
        for change in ({"barrier_t": 2.0}, {"barrier_growth": 2.0}, {"centroid_tol": 0.1}):
            assert base.replace(**change).run_id == base.run_id, (method, change)
        barrier = base.replace(scheme="logbarrier")
        assert barrier.replace(barrier_t=2.0).run_id != barrier.run_id
        assert barrier.replace(barrier_growth=2.0).run_id != barrier.run_id
        centroid = base.replace(constraint="size+centroid", reg_arch="resnext")
        assert centroid.replace(centroid_tol=0.1).run_id != centroid.run_id


@pytest.mark.parametrize(
    "change",
    [
        {"barrier_t": 1e200},  # used to pass, then log(1/t^2) failed at the first step
        {"barrier_t": 1e-200},
        {"barrier_growth": 10.0, "seg_epochs": 155},  # t = 10^154 by the last epoch
        {"barrier_t": 1e6, "barrier_growth": 1.5, "seg_epochs": 40},
    ],
)
def test_a_log_barrier_t_that_would_overflow_is_refused_when_read(change):
    cfg = RunConfig.from_preset("smoke", method="oracle", scheme="logbarrier")
    with pytest.raises(ConfigError, match=r"field barrier_(t|growth)=.*(must be|takes t)"):
        RunConfig.from_dict({**cfg.to_dict(include_derived=False), **change}, source="--set")
    # the authors' schedule over the paper's 200 epochs is fine
    RunConfig.from_preset("paper", method="oracle", scheme="logbarrier")


def test_default_run_ids_are_the_parents():
    for (preset, method), run_id in PARENT_RUN_IDS.items():
        stage = "regressor" if method == "regressor" else "segmenter"
        then = PRESET_VALUES_BEFORE.get(preset, {})
        assert RunConfig.from_preset(preset, stage=stage, method=method, **then).run_id == run_id
        if stage == "segmenter":  # no semi-supervised term, named: the same run
            assert RunConfig.from_preset(preset, method=method, ssl="none", **then).run_id == run_id
    multi = RunConfig.from_preset("paper", method="oracle", classes="multi", seg_out_channels=4)
    assert multi.run_id == "seg-oracle-n5-s0-g0.1-l0.01-8f7687b3f7"


def test_which_runs_each_new_field_changes():
    base = {m: RunConfig.from_preset("smoke", method=m) for m in ("fs", "proposals", "proposed", "oracle")}
    reg = RunConfig.from_preset("smoke", stage="regressor", method="regressor")
    for field, value in (("constrained", "all"), ("constraint", "size+centroid"), ("scheme", "logbarrier")):
        extra = MULTI if field == "constrained" else {}
        for m, cfg in base.items():
            ref = cfg.replace(**extra)
            changed = ref.replace(**{field: value}).run_id != ref.run_id
            assert changed == (m in ("proposed", "oracle")), (field, m)
        # the regressor predicts the constrained targets, whatever the scheme
        assert (reg.replace(**extra, **{field: value}).run_id != reg.replace(**extra).run_id) == (
            field != "scheme"
        )
    active = {"centroid_tol": {"constraint": "size+centroid"}, "barrier_t": {"scheme": "logbarrier"}}
    active["barrier_growth"] = active["barrier_t"]
    for field, value in (("centroid_tol", 0.1), ("barrier_t", 5.0), ("barrier_growth", 1.0)):
        oracle = base["oracle"].replace(**active[field])  # where the field acts
        assert oracle.replace(**{field: value}).run_id != oracle.run_id
        assert base["fs"].replace(**{field: value}).run_id == base["fs"].run_id
        assert reg.replace(**{field: value}).run_id == reg.run_id


def test_bad_combinations_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="constrained='all' needs seg_out_channels=4"):
        _cfg(constrained="all")
    with pytest.raises(ConfigError, match="reg_arch='resnext-authors' predicts sizes only"):
        RunConfig.from_preset(
            "paper", method="proposed", constraint="size+centroid", reg_arch="resnext-authors"
        )
    with pytest.raises(ConfigError, match="scheme"):
        _cfg(scheme="lagrangian")


# ------------------------------------------------------------------------------------------ the space
def test_constraints_space_plan_shares_fs_and_regressors():
    from search_spaces import get_space
    from suite.planner import build_plan

    space = get_space("constraints")
    cfgs = space.configs("smoke", seeds=[0], base={"data_hash": "abc"})
    seg = [c for c in cfgs if c.method != "fs"]
    assert len(seg) == 2 * 2 * 2 * 2 and len(cfgs) == len(seg) + 1  # 16 + one FS
    axes = {(c.method, c.constraint, c.scheme, c.constrained) for c in seg}
    assert len(axes) == 16
    plan = build_plan(cfgs)
    regs = [c for c in plan.runs.values() if c.stage == "regressor"]
    # one regressor per target set (classes x attributes), shared by both schemes
    assert len(regs) == 4
    assert {(r.constrained, r.constraint) for r in regs} == {
        (a, b) for a in ("lv", "all") for b in ("size", "size+centroid")
    }
    assert {c.classes for c in cfgs} == {"multi"} and {c.seg_out_channels for c in cfgs} == {4}
    with pytest.raises(ConfigError, match="sweeps scheme"):
        space.configs("smoke", seeds=[0], overrides=["scheme=logbarrier"])


# ------------------------------------------------------------------------------------------ end to end
def _run_values(paths) -> dict[str, float]:
    from suite.stages.metrics_log import read_metrics

    return {f"{r['epoch']}/{r['metric']}": r["value"] for r in read_metrics(paths.metrics) if not r["volume"]}


@pytest.mark.parametrize("method", ["oracle", "proposed"])
def test_default_lv_size_run_is_the_papers_penalty_bit_for_bit(prepared_small, tmp_path, monkeypatch, method):
    """At the family's defaults a run is the paper's: the same run with the unlabeled term replaced by eq. 4
    written out (softmax LV channel, soft size, squared violation of the γ bounds, / H·W) gives the same
    floats in every logged metric. Compared in one process: floats pinned on one CPU differ on another."""
    import suite.stages.segmenter as seg
    from suite.losses import size_bounds, size_penalty
    from suite.models import lv_channel
    from suite.stages.runner import execute

    cfg = small_run_config(prepared_small, method=method, seg_epochs=2, reg_epochs=1, reg_aug_copies=1)
    got = _run_values(execute(cfg, tmp_path / "family"))

    def eq4(c, logits, targets, epoch):
        fg = torch.softmax(logits.float(), dim=1)[:, lv_channel(c)]
        lower, upper = size_bounds(targets[:, 0], c.gamma)
        s = fg.sum(dim=(1, 2))
        return size_penalty(fg, lower, upper), (s >= lower) & (s <= upper)

    monkeypatch.setattr(seg, "unlabeled_loss", eq4)
    want = _run_values(execute(cfg, tmp_path / "eq4"))
    timing = {k for k in got if k.endswith("epoch_time_s")}
    assert {k: v for k, v in got.items() if k not in timing} == {
        k: v for k, v in want.items() if k not in timing
    }
    assert not any("_rv" in k or "_myo" in k for k in got)  # metrics.csv vocabulary unchanged


def test_all_classes_size_centroid_logbarrier_run(prepared_small, tmp_path):
    from suite.paths import ExperimentPaths
    from suite.stages.runner import execute

    cfg = small_run_config(
        prepared_small,
        method="proposed",
        seg_epochs=1,
        reg_epochs=1,
        reg_aug_copies=1,
        constrained="all",
        constraint="size+centroid",
        scheme="logbarrier",
        **MULTI,
    )
    got = _run_values(execute(cfg, tmp_path))
    for key in ("0/loss_penalty", "0/dice_mean", "0/dice_mean_rv", "0/dice_mean_myo", "0/in_bounds"):
        assert np.isfinite(got[key]), key
    reg_cfg = cfg.replace(data_hash=_hash(prepared_small)).regressor_config()
    reg = ExperimentPaths(tmp_path).run(reg_cfg.run_id)
    reg_got = _run_values(reg)
    for name in ("rv", "myo"):  # every constrained class's size error is logged, not only the LV's
        for metric in ("size_abs_err", "size_abs_err_pct", "bounds_ok"):
            assert np.isfinite(reg_got[f"0/{metric}_{name}"]), (metric, name)
    assert reg_got["0/size_abs_err_rv"] != reg_got["0/size_abs_err"]
    for name in ("rv", "myo", "lv"):  # and its centroid error (constraint=size+centroid)
        assert np.isfinite(reg_got[f"0/centroid_abs_err_{name}"]), name
    with np.load(reg.sizes) as z:
        assert z["targets"].shape == (len(z["sizes"]), 9) and z["columns"][-1] == "cx_LV"
        assert np.array_equal(z["sizes"], z["targets"][:, 2])  # `sizes` stays the LV size


def _hash(prepared) -> str:
    from suite.data.dataset import PreparedData

    return PreparedData.open(prepared).data_hash


# ------------------------------------------------------------------------------------------ the report
def test_report_table_separates_schemes_and_shows_defaults(tmp_path):
    from analysis.constraint_family import constraint_family_section, constraint_family_table
    from analysis.load import load_experiment
    from analysis.stats import analyse
    from suite.testing.synthetic_runs import write_experiment, write_run

    write_experiment(tmp_path)
    for seed in (0, 1):
        write_run(tmp_path, method="fs", seed=seed, dice=0.4, **MULTI)
        write_run(tmp_path, method="proposed", seed=seed, dice=0.5, **MULTI)  # the defaults
        write_run(tmp_path, method="proposed", seed=seed, dice=0.7 + 0.1 * seed, scheme="logbarrier", **MULTI)
        write_run(
            tmp_path,
            method="oracle",
            seed=seed,
            dice=0.9,
            constrained="all",
            constraint="size+centroid",
            **MULTI,
        )
    a = analyse(load_experiment(tmp_path))
    assert {"constrained", "constraint", "scheme"} <= set(a.cond)
    prop = a.conditions.loc[a.conditions["method"] == "proposed"]
    assert sorted(prop["mean"].round(6)) == [0.5, 0.75]  # penalty and logbarrier are two conditions
    t = constraint_family_table(a)
    rows = t.set_index(["method", "constraint", "scheme", "classes"])
    assert rows.loc[("proposed", "size", "penalty", "LV"), "LV %"] == "50.00 ± 0.00"
    assert rows.loc[("proposed", "size", "logbarrier", "LV"), "LV %"] == "75.00 ± 7.07"
    assert rows.loc[("oracle", "size+centroid", "penalty", "RV+Myo+LV"), "seeds"] == 2
    assert rows.loc[("fs", "–", "–", "–"), "RV %"] == "–"  # no RV Dice logged by these runs
    assert constraint_family_section(a)[0] == "## Constraint family"
    from analysis.tables import table1, table1_markdown

    t1 = table1_markdown(table1(a, "phantom"))
    assert "=nan" not in t1 and t1.count("| n labeled | FS |") == 3  # FS beside each constraint setting
    plain = tmp_path / "plain"
    write_experiment(plain)
    write_run(plain, method="proposed")
    write_run(plain, method="fs")
    assert constraint_family_section(analyse(load_experiment(plain))) == []


def test_logbarrier_run_resumes_exactly(prepared_small, tmp_path):
    """t grows with the epoch (a function of it, no state): a resumed run continues the schedule exactly."""
    from suite.stages.metrics_log import read_metrics
    from suite.stages.runner import execute

    cfg = small_run_config(
        prepared_small,
        method="oracle",
        seg_epochs=2,
        scheme="logbarrier",
        constraint="size+centroid",
        barrier_growth=2.0,
    )

    def numbers(paths):
        return [tuple(r.values()) for r in read_metrics(paths.metrics) if r["metric"] != "epoch_time_s"]

    whole = execute(cfg, tmp_path / "whole")
    part = execute(cfg, tmp_path / "part", stop_after_epoch=0)
    assert part.status() == "partial"
    assert numbers(execute(cfg, tmp_path / "part")) == numbers(whole)


def test_all_constrained_classes_are_evaluated_and_mapped_back():
    from suite.evaluation import evaluated_classes
    from suite.models import label_map

    lv_only = _cfg(seg_out_channels=4)
    both = _cfg(seg_out_channels=4, constrained="all")  # RV and Myo trained by their constraints only
    assert evaluated_classes(lv_only) == {"LV": 3}
    assert evaluated_classes(both) == {"LV": 3, "Myo": 2, "RV": 1}
    assert cons.reported_labels(both) == (1, 2, 3) and cons.CLASS_NAMES[2] == "Myo"
    channels = torch.tensor([[0, 1, 2, 3]])
    assert label_map(lv_only, channels).tolist() == [[0, 0, 0, 3]]
    assert label_map(both, channels).tolist() == [[0, 1, 2, 3]]
