"""The stages with the authors' segmenter and 4-channel head, and the regressor with their loss and
augmentation settings: end-to-end runs on the small phantom (32×32, few steps)."""

from __future__ import annotations

import json

import numpy as np

from suite.paths import ExperimentPaths
from suite.stages.runner import execute
from suite.testing.small_runs import small_run_config

TINY = dict(seg_epochs=1, reg_epochs=1, reg_aug_copies=2)


def test_authors_segmenter_and_head_train_every_method(prepared_small, tmp_path):
    exp = tmp_path / "exp"
    authors = dict(seg_arch="enet-authors", seg_out_channels=4, seg_width=1.0, reg_loss_reduction="sum")
    runs = {}
    for method in ("fs", "oracle", "proposed", "proposals"):
        cfg = small_run_config(prepared_small, method=method, **TINY, **authors)
        paths = runs[method] = execute(cfg, exp)
        assert paths.status() == "finished", method
        written = json.loads(paths.config.read_text())
        assert (
            written["identity_keys"] == cfg.identity_keys() and "seg_out_channels" in written["identity_keys"]
        )
        if method != "fs":
            continue
        with np.load(paths.predictions / "val_examples.npz") as z:
            assert int(z["lv_channel"]) == 3
            assert set(np.unique(z["label"])) <= {0, 3}  # targets in channel indices: background 0, LV 3
            assert set(np.unique(z["pred"])) <= {0, 1, 2, 3}
    with np.load(runs["fs"].pseudo_labels) as z:
        assert set(np.unique(z["labels"])) <= {0, 1, 2, 3}
    (reg,) = [r for r in ExperimentPaths(exp).all_runs() if r.run_id.startswith("reg-")]
    assert json.loads(reg.config.read_text())["reg_loss_reduction"] == "sum" and reg.sizes.exists()


def test_regressor_nearest_augmentation_and_summed_loss_change_the_run(prepared_small, tmp_path):
    base = small_run_config(prepared_small, stage="regressor", method="regressor", **TINY)
    variant = base.replace(reg_aug_interp="nearest", reg_loss_reduction="sum", reg_aug_copies=3)
    assert variant.run_id != base.run_id
    paths = execute(variant, tmp_path)
    assert paths.status() == "finished"
    with np.load(paths.sizes) as z:
        assert np.all(np.isfinite(z["sizes"]))
