"""Config input is checked where it is read: every field's domain, on every path a config is built by (a
preset's overrides, a YAML ``--config``, ``--set``, a Ray trial / SLURM task dict, a run's ``config.json``),
and the derived keys that ``config.json`` carries are never taken as input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from suite.cli import main
from suite.config import DERIVED_KEYS, RunConfig
from suite.domains import Domain
from suite.errors import ConfigError

# one value outside each field's domain, as YAML text (what --set and a --config file give)
OUTSIDE = {
    "stage": "trainer",
    "method": "semi",
    "n_labeled": "76",
    "seed": "-1",
    "split_mode": "fold",
    "split_seed": "-2",
    "gamma": "1.0",
    "lam": ".nan",
    "penalty_warmup": "-1",
    "update": "both",
    "preset": "mine",
    "data": "[a, b]",
    "data_hash": "ab/cd",
    "image_size": "8",
    "classes": "rv",
    "size_units": "mm",
    "seg_arch": "unet",
    "seg_out_channels": "3",
    "seg_width": "0.001",
    "seg_epochs": "0",
    "seg_lr": "nan",
    "seg_betas": "[2, 3]",
    "seg_weight_decay": "-1e-4",
    "seg_batch": "0",
    "unl_batch": "0",
    "lr_rule": "cosine",
    "lr_patience": "0",
    "lr_factor": "5",
    "best_metric": "hd95",
    "reg_arch": "resnet",
    "reg_layers": "[1, 1]",
    "reg_groups": "0",
    "reg_width_per_group": "0",
    "reg_epochs": "0",
    "reg_lr": "0",
    "reg_momentum": "-3",
    "reg_weight_decay": ".inf",
    "reg_milestones": "[150, 100]",
    "reg_lr_factor": "2",
    "reg_batch": "0",
    "reg_loss_reduction": "max",
    "reg_aug_copies": "0",
    "reg_aug_interp": "cubic",
    "constrained": "rv",
    "constraint": "shape",
    "scheme": "lagrangian",
    "centroid_tol": "1.5",
    "barrier_t": "0",
    "barrier_growth": "0.5",
    "lam_rampup": "-1",
    "optim_impl": "sgd",
    "ssl": "fixmatch",
    "ssl_weight": "0",
    "ssl_rampup": "1.5",
    "ssl_ema_decay": "1",
    "ssl_noise": "-0.1",
    "threads": "0",
    "world_size": "0",
    "amp": "fp16",
    "channels_last": "maybe",
    "compile": "2",
    "device": "tpu",
    "stat_window": "0",
    "checkpoint_every": "-1",
}
# more of the same class: the examples and the edges of ranges and list rules
MORE_OUTSIDE = [
    ("seg_lr", "-1"),
    ("seg_lr", ".inf"),
    ("image_size", "100"),  # not a multiple of 8
    ("image_size", "2048"),
    ("n_labeled", "0"),
    ("gamma", "-0.1"),
    ("seg_betas", "[0.9]"),
    ("seg_betas", "[0.9, 1.0]"),
    ("reg_layers", "[3, 4, 0, 3]"),
    ("reg_layers", "[1, 1, 1, 1, 1]"),
    ("reg_milestones", "[0, 10]"),
    ("reg_milestones", "[10, 10]"),
    ("reg_milestones", "[1.5]"),
    ("lr_factor", "1"),
    ("lr_factor", "0"),
    ("reg_momentum", "1"),
    ("seg_width", "0"),
    ("seg_epochs", "2.5"),
]


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_every_field_declares_a_domain_and_the_table_covers_them():
    assert set(OUTSIDE) == set(RunConfig.field_names())
    for name in RunConfig.field_names():
        domain = RunConfig.domain(name)
        assert isinstance(domain, Domain) and domain.describe()
        # the default and every preset's value lie inside
        assert domain.problem(getattr(RunConfig(), name)) is None, name


@pytest.mark.parametrize("key, text", [*OUTSIDE.items(), *MORE_OUTSIDE])
@pytest.mark.parametrize("path", ["set", "yaml", "dict", "config.json"])
def test_a_value_outside_the_domain_is_one_line_naming_field_value_and_range(key, text, path, tmp_path):
    value = yaml.safe_load(text)
    smoke = RunConfig.from_preset("smoke")
    with pytest.raises(ConfigError) as e:
        if path == "set":
            smoke.with_overrides([f"{key}={text}"])
        elif path == "yaml":
            f = tmp_path / "cfg.yaml"
            f.write_text(("" if key == "preset" else "preset: smoke\n") + f"{key}: {text}\n")
            RunConfig.from_yaml(f)
        elif path == "dict":  # a Ray trial's or a SLURM task's dict
            RunConfig.from_dict({**smoke.to_dict(include_derived=False), key: value}, source="trial config")
        else:
            RunConfig.from_config_json({**smoke.to_dict(), key: value}, source="runs/x/config.json")
    msg = _one_line(e)
    if key == "preset" and path == "yaml":  # a YAML file's preset: names the preset it starts from
        assert "preset 'mine' does not exist; available presets: " in msg
        return
    assert f"field {key}=" in msg
    domain = RunConfig.domain(key).describe()
    assert domain.removeprefix("one of ") in msg or "has the wrong type" in msg, msg


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(stage="segmenter", method="regressor"), "method='regressor' is not one of fs, proposals"),
        (dict(world_size=2, seg_batch=3), "seg_batch=3 .global batch. must be divisible by world_size=2"),
        (dict(method="proposed", world_size=2, seg_batch=2, unl_batch=2, reg_batch=5), "reg_batch=5"),
        (dict(classes="multi"), "seg_out_channels=2 cannot hold classes=multi"),
    ],
)
def test_cross_field_rules_stay_one_line(change, message):
    with pytest.raises(ConfigError, match=message) as e:
        RunConfig.from_preset("smoke", **change)
    _one_line(e)


def test_values_inside_the_domain_are_accepted_at_their_edges():
    cfg = RunConfig.from_preset("smoke").with_overrides(
        [
            "image_size=16",
            "seg_width=0.0625",
            "seg_betas=[0, 0.999]",
            "reg_layers=[1, 1, 1, 1]",
            "reg_milestones=[]",
            "reg_lr_factor=1",
            "reg_momentum=0",
            "gamma=0",
            "lam=0",
            "n_labeled=75",
            "seed=0",
        ]
    )
    assert cfg.image_size == 16 and cfg.reg_milestones == () and cfg.seg_betas == (0.0, 0.999)


@pytest.mark.parametrize("key", sorted(DERIVED_KEYS))
def test_derived_keys_are_rejected_as_input_on_every_path(key, tmp_path):
    value = {"epochs": 1, "run_id": "seg-fs-n5-s0-0123456789", "identity_keys": ["seed"]}[key]
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump({"preset": "smoke", key: value}))
    attempts = [
        lambda: RunConfig.from_yaml(f),
        lambda: RunConfig.from_preset("smoke").with_overrides([f"{key}={json.dumps(value)}"]),
        lambda: RunConfig.from_dict({key: value}),
        lambda: RunConfig.from_preset("smoke", **{key: value}),
    ]
    for attempt in attempts:
        with pytest.raises(ConfigError, match=f"key {key} is derived, not an input") as e:
            attempt()
        msg = _one_line(e)
    if key == "epochs":
        assert "seg_epochs" in msg and "reg_epochs" in msg


def test_every_yaml_key_takes_effect(tmp_path):
    # every field set away from the smoke preset in one YAML file: each value is what the config holds
    want = RunConfig.from_preset("code").replace(
        stage="regressor", method="regressor", n_labeled=10, seed=3, split_mode="random", split_seed=4,
        gamma=0.2, lam=0.5, penalty_warmup=2, update="joint", data="/d", data_hash="abc", classes="multi",
        size_units="fraction", seg_weight_decay=1e-5, seg_batch=2, unl_batch=4, lr_factor=0.25,
        best_metric="dice3d", reg_weight_decay=0.0, reg_lr_factor=0.1, reg_batch=4, threads=3,
        world_size=2, amp="bf16", channels_last=True, compile=True, device="cpu", stat_window=7,
        checkpoint_every=3, seg_lr=1e-3, seg_betas=(0.8, 0.9), seg_epochs=7, lr_patience=3,
        reg_width_per_group=8, reg_momentum=0.8, seg_out_channels=4, constrained="all",
        scheme="logbarrier", centroid_tol=0.1, barrier_t=5.0, barrier_growth=1.2, ssl_weight=0.5,
        ssl_rampup=0.5, ssl_ema_decay=0.9, ssl_noise=0.2, lam_rampup=5, optim_impl="fused",
    )  # fmt: skip
    # the authors' regressor (the code preset's) predicts sizes only: the centroid takes effect on its own;
    # ssl is refused on a regressor: it too
    assert RunConfig.from_preset("smoke", constraint="size+centroid").constraint == "size+centroid"
    assert RunConfig.from_preset("smoke", ssl="cps").ssl == "cps"
    data = want.to_dict(include_derived=False)
    smoke = RunConfig.from_preset("smoke").to_dict(include_derived=False)
    assert {k for k in data if k != "preset" and data[k] == smoke[k]} == {"constraint", "ssl"}
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump({**data, "preset": "smoke"}))
    got = RunConfig.from_yaml(f)
    assert got.to_dict(include_derived=False) == {**data, "preset": "smoke"}


def test_config_json_written_by_the_suite_loads_back():
    cfg = RunConfig.from_preset("smoke", method="proposed", data_hash="abc123")
    written = json.loads(cfg.to_json())
    assert set(DERIVED_KEYS) <= set(written)
    assert RunConfig.from_config_json(written, source="config.json") == cfg


@pytest.mark.parametrize(
    "override, field",
    [
        ("seg_lr=nan", "seg_lr"),
        ("seg_betas=[2,3]", "seg_betas"),
        ("image_size=8", "image_size"),
        ("reg_layers=[1,1]", "reg_layers"),
        ("lr_factor=5", "lr_factor"),
        ("epochs=1", "epochs"),
    ],
)
def test_suite_run_refuses_before_any_work(override, field, tmp_path, capsys):
    out = tmp_path / "exp"
    argv = ["run", "--data", str(tmp_path / "none"), "--out", str(out), "--preset", "smoke"]
    assert main([*argv, "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{field}" in err
    assert not (out / "runs").exists()


def test_list_keys_prints_each_fields_domain(capsys):
    assert main(["run", "--list-keys"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    by_name = {line.split()[0]: line for line in lines}
    assert set(by_name) == set(RunConfig.field_names())
    for name, line in by_name.items():
        assert line.rstrip().endswith(RunConfig.domain(name).describe())
    assert "an integer in [16, 1024], a multiple of 8" in by_name["image_size"]


def test_cli_yaml_epochs_is_refused(tmp_path: Path, capsys):
    f = tmp_path / "cfg.yaml"
    f.write_text("preset: smoke\nepochs: 1\n")
    rc = main(["run", "--config", str(f), "--data", str(tmp_path), "--out", str(tmp_path / "exp")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "epochs is derived" in err and "seg_epochs" in err


def test_a_key_given_twice_in_a_yaml_config_is_refused_naming_both_lines(tmp_path: Path, capsys):
    # YAML itself keeps the last one silently: the run would have trained at gamma 0.2
    f = tmp_path / "cfg.yaml"
    f.write_text("preset: smoke\ngamma: 0.1\nlam: 0.01\ngamma: 0.2\n")
    rc = main(["run", "--config", str(f), "--data", str(tmp_path), "--out", str(tmp_path / "exp")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {f}: key 'gamma' is given twice, on lines 2 and 4 (YAML would keep the second " + (
        "silently); keep one of them"
    )
    assert not (tmp_path / "exp").exists()
    # on one line, in a flow mapping, and through a --set value too
    f.write_text("{gamma: 0.1, gamma: 0.2}\n")
    with pytest.raises(ConfigError, match="key 'gamma' is given twice, on lines 1 and 1"):
        RunConfig.from_yaml(f)
    with pytest.raises(ConfigError, match=r"--set seg_betas=\[\{a: 1, a: 2\}\]: key 'a' is given twice"):
        RunConfig.from_preset("smoke").with_overrides(["seg_betas=[{a: 1, a: 2}]"])


def test_yaml_that_repeats_no_key_reads_as_before(tmp_path: Path):
    # a merge key (<<) and keys it brings that the mapping then overrides are no duplicates
    from suite.yaml_input import load_yaml

    text = "base: &b {gamma: 0.1, lam: 0.5}\nrun:\n  <<: *b\n  gamma: 0.2\nother: {gamma: 0.3}\n"
    assert load_yaml(text, "t") == yaml.safe_load(text)
    assert load_yaml(text, "t")["run"] == {"gamma": 0.2, "lam": 0.5}
    f = tmp_path / "cfg.yaml"
    f.write_text("preset: smoke\ngamma: 0.2\n")
    assert RunConfig.from_yaml(f).gamma == 0.2


@pytest.mark.parametrize("world_size, reg_batch", [(1, 37), (1, 1)])
def test_a_regressor_batch_norm_cannot_train_is_refused_before_any_work(
    prepared_small, tmp_path, world_size, reg_batch
):
    # 38 labeled slices at n=5 (one copy each): global batches of 37 leave a last batch of 1 sample
    from suite.errors import InputError
    from suite.stages.runner import execute

    cfg = RunConfig.from_preset(
        "smoke",
        stage="regressor",
        method="regressor",
        data=str(prepared_small),
        image_size=32,
        reg_aug_copies=1,
        reg_batch=reg_batch,
        reg_epochs=1,
        threads=1,
        device="cpu",
    )
    with pytest.raises(InputError, match="image_size=32, reg_batch=.*a batch of 1 sample per rank") as e:
        execute(cfg, tmp_path / "exp")
    _one_line(e)
    assert "use image_size >= 64" in str(e.value)
    assert cfg.replace(image_size=64).image_size == 64  # the fix it names is a valid config
