import pytest

from suite.config import RunConfig, available_presets
from suite.errors import ConfigError


def test_presets_load():
    assert {"paper", "code", "smoke", "fidelity"} <= set(available_presets())
    for name in available_presets():
        cfg = RunConfig.from_preset(name)
        assert cfg.preset == name


def test_paper_preset_values():
    cfg = RunConfig.from_preset("paper")
    assert cfg.reg_layers == (3, 4, 23, 3) and cfg.reg_groups == 32 and cfg.reg_width_per_group == 4
    assert cfg.reg_lr == 5e-6 and cfg.reg_milestones == (100, 150) and cfg.reg_batch == 10
    assert cfg.seg_lr == 5e-4 and cfg.seg_betas == (0.9, 0.99) and cfg.seg_epochs == 100
    assert cfg.gamma == 0.1 and cfg.lam == 1e-2 and cfg.stat_window == 50
    code = RunConfig.from_preset("code")
    assert code.reg_lr == 5e-7 and code.lr_rule == "code"


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown key.*valid keys: .*seg_lr"):
        RunConfig.from_preset("smoke", nope=1)
    with pytest.raises(ConfigError, match="--set nope"):
        RunConfig.from_preset("smoke").with_overrides(["nope=3"])


def test_wrong_type_is_one_line():
    with pytest.raises(ConfigError, match="seg_epochs='many' has the wrong type"):
        RunConfig.from_dict({"seg_epochs": "many"})


def test_identity_shares_prerequisites():
    a = RunConfig.from_preset("paper", method="proposed", gamma=0.1, lam=1e-2)
    b = RunConfig.from_preset("paper", method="proposed", gamma=0.2, lam=1e-3)
    assert a.run_id != b.run_id
    assert a.regressor_config().run_id == b.regressor_config().run_id
    fs1 = RunConfig.from_preset("paper", method="fs", gamma=0.1)
    fs2 = RunConfig.from_preset("paper", method="fs", gamma=0.3, lam=1.0)
    assert fs1.run_id == fs2.run_id
    assert a.replace(data="/elsewhere", device="cpu").run_id == a.run_id  # paths/device are not identity
    assert a.replace(threads=1).run_id != a.run_id  # thread count changes results
    assert a.replace(world_size=2, seg_batch=2, unl_batch=2, reg_batch=10).run_id != a.run_id
    p = RunConfig.from_preset("paper", method="proposals")
    assert p.fs_config().run_id == fs1.run_id
    assert [c.stage for c in a.prerequisites()] == ["regressor"]


def test_overrides_parse_yaml_values():
    cfg = RunConfig.from_preset("smoke").with_overrides(
        ["seg_lr=1e-3", "reg_milestones=[1, 2]", "compile=true"]
    )
    assert cfg.seg_lr == 1e-3 and cfg.reg_milestones == (1, 2) and cfg.compile is True


def test_to_dict_has_contract_keys():
    d = RunConfig.from_preset("smoke").to_dict()
    for key in ("stage", "method", "n_labeled", "seed", "split_seed", "gamma", "lam", "epochs", "run_id"):
        assert key in d
    assert RunConfig.from_dict(d) == RunConfig.from_preset("smoke")
