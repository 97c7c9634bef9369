"""The start-up variants of the evidence study: λ's sigmoid ramp, the soft-size dynamics the segmenter
logs, the ``repro`` preset (``extends: code``) and the ``repro`` space."""

from __future__ import annotations

import math

import pytest
import torch

from search_spaces import get_space
from suite.config import RunConfig
from suite.constraints import DYNAMICS, dynamics_metrics, lam_at, size_dynamics
from suite.errors import ConfigError
from suite.presets import load_preset
from suite.ramps import sigmoid_rampup


def test_sigmoid_rampup_by_hand():
    assert sigmoid_rampup(0, 40) == pytest.approx(math.exp(-5))  # 0.0067
    assert sigmoid_rampup(20, 40) == pytest.approx(math.exp(-5 * 0.25))  # t = 0.5: 0.2865
    assert sigmoid_rampup(20, 40) == pytest.approx(0.28650480)
    assert sigmoid_rampup(40, 40) == 1.0 and sigmoid_rampup(99, 40) == 1.0
    assert sigmoid_rampup(-3, 40) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(0, 0) == 1.0  # no ramp


def test_lam_ramp_is_identity_only_when_set_and_only_for_penalty_methods():
    oracle = RunConfig.from_preset("smoke", method="oracle")
    assert lam_at(oracle, 0) == oracle.lam  # the paper: λ from the first step
    ramped = oracle.replace(lam_rampup=40)
    assert lam_at(ramped, 0) == pytest.approx(oracle.lam * math.exp(-5))
    assert lam_at(ramped, 40) == oracle.lam
    assert "lam_rampup" not in oracle.identity_keys()  # run ids from before the field are kept
    assert "lam_rampup" in ramped.identity_keys() and ramped.run_id != oracle.run_id
    fs = RunConfig.from_preset("smoke", method="fs")
    assert fs.replace(lam_rampup=40).run_id == fs.run_id  # FS has no λ
    with pytest.raises(ConfigError, match="lam_rampup"):
        RunConfig.from_dict({"lam_rampup": -1})


def test_size_dynamics_by_hand():
    """Two 2x2 slices, 2-channel head (LV = channel 1): soft sizes 2 and 0.5 against R = 1 (bounds 0.9,
    1.1: above) and R = 0 (empty: bounds 0, 0; above)."""
    cfg = RunConfig.from_preset("smoke", method="oracle", gamma=0.1)
    logits = torch.zeros(2, 2, 2, 2)  # softmax 0.5 everywhere: soft size 2 per slice
    logits[1, 1] = -math.log(3.0)  # p_LV = 1/(1+3) = 0.25: soft size 1
    sums = size_dynamics(cfg, logits, torch.tensor([[1.0], [0.0]]))
    d = dict(zip(DYNAMICS, sums.tolist(), strict=True))
    assert d["soft_size"] == pytest.approx(3.0) and d["target_size"] == 1.0
    assert (d["above_bounds"], d["below_bounds"], d["empty_slices"]) == (2.0, 0.0, 1.0)
    assert d["soft_size_empty"] == pytest.approx(1.0)
    m = dynamics_metrics(sums.tolist(), 2)
    assert m["soft_size"] == pytest.approx(1.5) and m["above_bounds"] == 1.0 and m["empty_slices"] == 0.5
    assert m["soft_size_empty"] == pytest.approx(1.0)
    assert "soft_size_empty" not in dynamics_metrics([2.0, 1.0, 1.0, 0.0, 0.0, 0.0], 1)


def test_repro_preset_is_the_code_preset_but_for_its_departures():
    code, repro = load_preset("code"), load_preset("repro")
    departures = {k for k in repro if repro[k] != code.get(k)}
    assert departures == {
        "image_size",
        "reg_arch",
        "reg_layers",
        "reg_groups",
        "reg_loss_reduction",
        "reg_lr",
        "reg_epochs",
        "reg_milestones",
        "threads",
    }
    cfg = RunConfig.from_preset("repro", method="proposed")
    assert (cfg.seg_arch, cfg.seg_out_channels, cfg.lr_rule, cfg.lam, cfg.gamma) == (
        "enet-authors",
        4,
        "code",
        1e-2,
        0.1,
    )
    assert (cfg.seg_epochs, cfg.stat_window, cfg.seg_batch, cfg.unl_batch, cfg.update) == (
        100,
        50,
        1,
        1,
        "alternating",
    )


def test_preset_extends_cycle_is_one_line(monkeypatch):
    import suite.presets as presets

    texts = {"a": "extends: b\nlam: 1.0\n", "b": "extends: a\n"}

    class Files:
        def joinpath(self, name):
            return type("T", (), {"read_text": lambda self: texts[name[:-5]]})()

    monkeypatch.setattr(presets, "available_presets", lambda: ["a", "b"])
    monkeypatch.setattr(presets.resources, "files", lambda _pkg: Files())
    with pytest.raises(ConfigError, match=r"preset 'a'.*cycle \(b -> a\)|preset 'b'.*cycle"):
        load_preset("a")


def test_repro_space_runs_fs_once_and_each_variant_of_proposed_and_oracle():
    cfgs = get_space("repro").configs(seeds=[0, 1])
    per_seed = [c for c in cfgs if c.seed == 0]
    assert sorted(c.method for c in per_seed) == ["fs"] + ["oracle"] * 4 + ["proposed"] * 4
    variants = {(c.penalty_warmup, c.lam_rampup, c.scheme) for c in per_seed if c.method == "oracle"}
    assert variants == {(0, 0, "penalty"), (10, 0, "penalty"), (0, 40, "penalty"), (0, 0, "logbarrier")}
    assert len({c.run_id for c in cfgs}) == len(cfgs) == 18
    # one regressor per seed, shared by the four Proposed variants
    regs = {c.regressor_config().run_id for c in cfgs if c.method == "proposed"}
    assert len(regs) == 2
    # the authors' start keeps the plain Oracle's run id (the fields at their defaults)
    plain = RunConfig.from_preset("repro", method="oracle", seed=0)
    assert plain.run_id in {c.run_id for c in per_seed}
