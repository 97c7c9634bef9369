import pytest

from suite.config import RunConfig, available_presets
from suite.errors import ConfigError
from suite.testing.preset_history import PRESET_VALUES_BEFORE


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
    with pytest.raises(ConfigError, match="--set: unknown key.s. nope"):
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
    assert RunConfig.from_config_json(d, source="config.json") == RunConfig.from_preset("smoke")


# run ids computed at commit edac201 (before identity was declared on the fields): configs that leave the
# fields added since at their defaults must keep them (with the presets' values of that time:
# PRESET_VALUES_BEFORE)
PINNED_RUN_IDS = {
    ("default", "regressor"): "reg-n10-s2-b2e7dc20aa",
    ("default", "fs"): "seg-fs-n10-s2-2e9996a230",
    ("default", "proposed"): "seg-proposed-n10-s2-g0.1-l0.01-92278e625c",
    ("default", "oracle"): "seg-oracle-n10-s2-g0.1-l0.01-373e0253bf",
    ("default", "proposals"): "seg-proposals-n10-s2-bb4420dd22",
    ("smoke", "regressor"): "reg-n10-s2-bd6287cb27",
    ("smoke", "fs"): "seg-fs-n10-s2-83900db2af",
    ("smoke", "proposed"): "seg-proposed-n10-s2-g0.1-l0.01-92b264328c",
    ("smoke", "oracle"): "seg-oracle-n10-s2-g0.1-l0.01-b3c0c6156b",
    ("smoke", "proposals"): "seg-proposals-n10-s2-78e385b814",
    ("fidelity", "regressor"): "reg-n10-s2-e4ef78368e",
    ("fidelity", "fs"): "seg-fs-n10-s2-b276a99d11",
    ("fidelity", "proposed"): "seg-proposed-n10-s2-g0.1-l0.0001-9f197123f6",
    ("fidelity", "oracle"): "seg-oracle-n10-s2-g0.1-l0.0001-04461285fd",
    ("fidelity", "proposals"): "seg-proposals-n10-s2-398ddd3d44",
}


@pytest.mark.parametrize("preset, method", sorted(PINNED_RUN_IDS))
def test_run_ids_of_configs_without_the_new_fields_are_unchanged(preset, method):
    kw = dict(
        stage="regressor" if method == "regressor" else "segmenter",
        method=method,
        n_labeled=10,
        seed=2,
        data_hash="abc123",
    )
    then = PRESET_VALUES_BEFORE.get(preset, {})
    cfg = RunConfig.from_dict(kw) if preset == "default" else RunConfig.from_preset(preset, **kw, **then)
    assert cfg.run_id == PINNED_RUN_IDS[(preset, method)]


def test_pinned_warmup_and_random_split_run_id():
    cfg = RunConfig.from_preset(
        "smoke",
        method="proposed",
        penalty_warmup=2,
        split_mode="random",
        split_seed=3,
        data_hash="abc123",
        **PRESET_VALUES_BEFORE["smoke"],
    )
    assert cfg.run_id == "seg-proposed-n5-s0-g0.1-l0.01-r3-a085505c6c"


def test_identity_keys_come_from_the_fields_and_reach_config_json():
    fs = RunConfig.from_preset("smoke", method="fs")
    keys = fs.identity_keys()
    assert keys == sorted(keys) and "method" in keys and "seg_lr" in keys
    assert not {"gamma", "lam", "unl_batch", "reg_lr", "data", "device", "preset", "stat_window"} & set(keys)
    assert "seg_out_channels" not in keys  # a later field at its default: old run ids kept
    assert "seg_out_channels" in fs.replace(seg_out_channels=4).identity_keys()
    prop = fs.replace(method="proposed")
    assert {"gamma", "lam", "unl_batch", "reg_lr", "reg_arch"} <= set(prop.identity_keys())
    assert "reg_loss_reduction" in prop.replace(reg_loss_reduction="sum").identity_keys()
    reg = prop.regressor_config()
    assert "method" not in reg.identity_keys() and "seg_lr" not in reg.identity_keys()
    assert set(fs.identity()) == set(keys)
    d = fs.to_dict()
    assert d["identity_keys"] == keys
    assert RunConfig.from_config_json(d, source="config.json") == fs  # derived keys recomputed


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(seg_arch="unet"), "seg_arch='unet' is not one of enet, enet-authors"),
        (dict(reg_arch="resnet"), "reg_arch='resnet' is not one of resnext, resnext-authors"),
        (dict(seg_out_channels=3), "seg_out_channels=3 is not one of 2, 4"),
        (dict(classes="multi"), "seg_out_channels=2 cannot hold classes=multi.*seg_out_channels=4"),
        (dict(reg_loss_reduction="max"), "reg_loss_reduction='max' is not one of mean, sum"),
        (dict(reg_aug_interp="cubic"), "reg_aug_interp='cubic' is not one of bilinear, nearest"),
        (
            dict(seg_arch="enet-authors", seg_width=0.5),
            "seg_width=0.5 must be 1.0 with seg_arch=enet-authors",
        ),
        (
            dict(method="proposed", reg_arch="resnext-authors", image_size=192),
            "image_size=192 does not fit reg_arch=resnext-authors, the regressor this proposed run",
        ),
        (
            dict(stage="regressor", method="regressor", reg_arch="resnext-authors", image_size=448),
            "image_size=448 does not fit.*this regressor run.*200 to 416",
        ),
    ],
)
def test_new_fields_are_validated_in_one_line(change, message):
    with pytest.raises(ConfigError, match=message) as e:
        RunConfig.from_dict(change)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "change",
    [
        # FS and the Oracle build no regressor: its architecture and batch cannot refuse them
        dict(method="fs", reg_arch="resnext-authors", image_size=64),
        dict(method="oracle", reg_arch="resnext-authors", image_size=64),
        dict(method="fs", world_size=2, seg_batch=2, unl_batch=3, reg_batch=3),
        dict(method="oracle", reg_arch="resnext-authors", constraint="size+centroid"),
        # nor the log-barrier's schedule a run without the log-barrier; nor the head a regressor
        dict(method="fs", scheme="logbarrier", barrier_growth=10.0, seg_epochs=1000),
        dict(stage="regressor", method="regressor", constrained="all", seg_out_channels=2),
        dict(stage="regressor", method="regressor", seg_arch="enet-authors", seg_width=0.5),
    ],
)
def test_a_field_that_does_not_act_on_a_run_never_refuses_it(change):
    cfg = RunConfig.from_dict(change)
    unused = [k for k in change if not cfg.acts_on(k)]
    assert unused  # the case sets a field the run does not use, and that field is what would refuse it
    with pytest.raises(ConfigError) as e:  # where the fields act, the same values are refused
        RunConfig.from_dict({**change, **_ACTING[cfg.stage]})
    assert any(k in str(e.value) for k in unused), e.value


# a run on which every field of the cases above acts: Proposed builds a regressor, with the log-barrier
_ACTING = {
    "segmenter": dict(method="proposed", scheme="logbarrier", seg_out_channels=4),
    "regressor": dict(stage="segmenter", method="proposed"),
}


def test_code_and_paper_presets_use_the_authors_networks():
    code = RunConfig.from_preset("code")
    assert (code.seg_arch, code.seg_out_channels, code.reg_arch) == ("enet-authors", 4, "resnext-authors")
    assert code.reg_loss_reduction == "sum" and code.reg_lr == 5e-7 and code.reg_milestones == (101, 151)
    assert code.reg_aug_copies == 11 and code.reg_aug_interp == "nearest" and code.lr_rule == "code"
    paper = RunConfig.from_preset("paper")
    assert (paper.seg_arch, paper.seg_out_channels, paper.reg_arch) == ("enet-authors", 4, "resnext")
    assert paper.reg_loss_reduction == "mean" and paper.reg_lr == 5e-6 and paper.reg_aug_copies == 10
    assert RunConfig.from_preset("smoke").seg_arch == "enet"  # the fast one, for code paths
    # the fidelity check and the demo: the network whose FS learns on every seed of the demo data
    fid = RunConfig.from_preset("fidelity")
    assert (fid.seg_arch, fid.seg_out_channels) == ("enet-authors", 4)
    assert RunConfig.from_preset("code", reg_arch="resnext", image_size=64).image_size == 64
