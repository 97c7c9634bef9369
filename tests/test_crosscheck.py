"""``scripts/crosscheck_authors.py``: what it hands the authors' code, tested without their code.

The converter (their folders, file names and gt values, the split's patients), the weight export (their key
names, round-tripping to the suite run's initial weights), the exported data order and epoch seeds (what the
segmenter stage trains on), the recipes (``learn_size.make``'s text) and the one-line errors of bad inputs.
Running their code is the script's job, by hand (docs/fidelity.md, "Side by side").
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from suite.data.dataset import PreparedData
from suite.models import build_segmenter, load_authors_state_dict
from suite.paths import ExperimentPaths
from suite.stages.base import RunContext
from suite.stages.checkpoint import seed_epoch
from suite.stages.segmenter import SegmenterStage

ROOT = Path(__file__).resolve().parents[1]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def xc():
    spec = importlib.util.spec_from_file_location(
        "crosscheck_script", ROOT / "scripts" / "crosscheck_authors.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cfg(xc, prepared: Path, work: Path, method: str, seed: int, epochs: int = 2):
    ns = argparse.Namespace(data=str(prepared), work=work, labeled=5, split_seed=1, size=64, epochs=epochs)
    return xc.suite_config(xc.suite_argv(ns, method, seed))


def _stage(cfg, data: PreparedData, root: Path) -> SegmenterStage:
    ctx = RunContext(cfg, ExperimentPaths(root).run(cfg.run_id), root, data, torch.device("cpu"), 0, 1)
    return SegmenterStage(ctx)


def test_convert_writes_their_folders_names_gt_values_and_the_split(xc, prepared_small, tmp_path):
    data = PreparedData.open(prepared_small)
    cfg = _cfg(xc, prepared_small, tmp_path, "oracle", 0)
    root = tmp_path / "ACDC-2D-LS"
    (root / "stale").mkdir(parents=True)  # a folder left from another split is replaced
    out = xc.convert(data, cfg, root)
    split = data.split(5, "paper", 1)
    assert sorted(p.name for p in root.iterdir()) == ["train_b_5", "train_r_5", "val_20"]
    assert out == {"train_b_5": split.labeled, "train_r_5": split.unlabeled, "val_20": split.val_seg}
    # the 30-patient phantom scales n = 5 to 2 labeled patients (tests/conftest.py)
    assert len(split.labeled) == 2 and len(split.val_seg) == 6
    names = np.asarray(xc.slice_names(data))
    for folder, patients in out.items():
        assert sorted(p.name for p in (root / folder).iterdir()) == ["gt", "img"]
        files = sorted(p.name for p in (root / folder / "img").iterdir())
        assert files == sorted(p.name for p in (root / folder / "gt").iterdir())
        assert files == sorted(names[data.indices(patients)])
        # their grouping regex (learn_size.make G_RGX) groups a folder's slices by volume: patient_frame_0
        groups = {re.match(xc.G_RGX, Path(f).stem).group(1) for f in files}
        assert groups == {f"{p}_{v['frame_number']:02d}_0" for p in patients for v in _volumes(data, p)}
    first = split.labeled[0]
    ed = next(v for v in _volumes(data, first) if v["frame"] == "ED")
    name = f"{first}_{ed['frame_number']:02d}_0_3.png"  # slice 3 of the ED volume, by hand
    i = ed["start"] + 3
    img = Image.open(root / "train_b_5" / "img" / name)
    gt = Image.open(root / "train_b_5" / "gt" / name)
    assert img.mode == gt.mode == "L"
    assert np.array_equal(np.array(img), data.images[i])
    # learn_size.make:83-84: {3: 3, else 0}, slice by slice
    unl = data.indices(split.unlabeled)
    gts = np.stack([np.array(Image.open(root / "train_r_5" / "gt" / names[j])) for j in unl])
    assert set(np.unique(gts)) == {0, 3}
    assert np.array_equal(gts, np.where(np.asarray(data.labels)[unl] == 3, 3, 0))


def _volumes(data: PreparedData, patient: str) -> list[dict]:
    return [v for v in data.manifest["volumes"] if v["patient"] == patient]


def test_weight_export_has_their_keys_and_round_trips_to_the_stage_init(xc, prepared_small, tmp_path):
    data = PreparedData.open(prepared_small)
    cfg = _cfg(xc, prepared_small, tmp_path, "fs", 3)
    state = xc.export_weights(cfg)
    # their ENet(1, 4) has 463,475 parameters (suite/models/enet_authors.py): the replica's 458,281 and the
    # tensors it never calls, under their names
    assert sum(v.numel() for k, v in state.items() if not k.endswith(BUFFERS)) == 463_475
    assert tuple(state["out_025.weight"].shape) == (4, 128, 3, 3)
    assert tuple(state["out_05.weight"].shape) == (4, 16, 3, 3)
    assert state["bottleNeck_Up_1_0.PReLU3.weight"].tolist() == [0.25]
    assert "bottleNeck1_0.conv0.weight" in state and "deconv3.1.0.weight" in state and "final.bias" in state
    replica = load_authors_state_dict(build_segmenter(cfg), state)
    stage = _stage(cfg, data, tmp_path / "exp")
    ours = stage.net.state_dict()
    assert ours.keys() == replica.state_dict().keys()
    for k, v in replica.state_dict().items():
        assert torch.equal(v, ours[k]), k
    other = xc.export_weights(_cfg(xc, prepared_small, tmp_path, "fs", 4))  # another seed, other weights
    assert not torch.equal(other["final.weight"], state["final.weight"])


@pytest.mark.parametrize("method", ["fs", "oracle"])
def test_exported_order_and_seeds_are_what_the_stage_trains_on(xc, prepared_small, tmp_path, method):
    data = PreparedData.open(prepared_small)
    cfg = _cfg(xc, prepared_small, tmp_path, method, 1)
    order = xc.export_order(cfg, data, 2)
    stage = _stage(cfg, data, tmp_path / "exp")
    seen: list[int] = []

    def forward(idx):  # record the slices, skip the network (a loss on zeros still steps)
        seen.extend(int(i) for i in idx)
        return torch.zeros((len(idx), 4, cfg.image_size, cfg.image_size), requires_grad=True)

    stage._forward = forward
    names = xc.slice_names(data)
    for e in range(2):
        seen.clear()
        seed_epoch(cfg, e)  # what the runner does before each epoch
        assert torch.initial_seed() == order["epochs"][e]["torch_seed"]
        stage.train_epoch(e)
        exported = order["epochs"][e]
        flat = [n for b in exported["labeled"] + exported["unlabeled"] for n in b]
        assert [names[i] for i in seen] == flat
        assert len(exported["labeled"]) == len(stage.sd.lab_idx)
        assert len(exported["unlabeled"]) == (len(stage.sd.unl_idx) if method == "oracle" else 0)
    assert order["epochs"][0]["labeled"] != order["epochs"][1]["labeled"]


def test_recipes_are_learn_size_make_s(xc, tmp_path):
    # learn_size.make:144-146 (fs_%) and :157-160 (semi_oracle_size_%), the B_DATA of :14 substituted
    b_data = "[('img', png_transform, False), ('gt', gt_transform, True)]"
    theirs = {
        "fs": (
            "[('CrossEntropy', {'idc': [0, 3]}, None, None, None, 1)]",
            f"{b_data}+[('gt', gt_transform, True)]",
        ),
        "oracle": (
            "[[('CrossEntropy', {'idc': [0, 3]}, None, None, None, 1)], [('NaivePenalty', {'idc': [3]}, "
            "'PreciseBounds', {'margin': 0.10, 'mode': 'percentage'}, 'soft_size', 1e-2)]]",
            f"[{b_data}+[('gt', gt_transform, True)], {b_data}+[('gt', dummy_gt, False)]]",
        ),
    }
    names = {"png_transform": "png", "gt_transform": "gt", "dummy_gt": "dummy"}
    for method, (losses, folders) in theirs.items():
        r = xc.their_recipe(method, 5, 1e-2, 0.1)
        assert eval(r["losses"]) == eval(losses)
        assert eval(r["folders"], {}, names) == eval(folders, {}, names)
    args = xc.main_args(tmp_path / "d", tmp_path / "w", 7, xc.their_recipe("oracle", 5, 1e-2, 0.1))
    assert args[args.index("--training_folders") + 1 : args.index("--training_folders") + 3] == [
        "train_b_5",
        "train_r_5",
    ]
    assert "--n_epoch=7" in args and "--in_memory" in args and args[-2:] == ["--val_loader_id", "0"]


def test_bad_inputs_are_one_line_and_exit_2(xc, prepared_small, tmp_path, capsys):
    authors = tmp_path / "authors"
    authors.mkdir()
    fake = tmp_path / "python"  # a Python without scikit-image
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'skimage'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    base = ["--data", str(prepared_small), "--work", str(tmp_path / "w")]
    cases = [
        (["--authors", str(tmp_path / "nowhere"), "--their-python", str(fake)], "no such folder"),
        (["--authors", str(authors), "--their-python", str(fake)], "no main.py"),
    ]
    for m in xc.AUTHORS_MODULES:
        (tmp_path / "full").mkdir(exist_ok=True)
        (tmp_path / "full" / m).write_text("")
    full = str(tmp_path / "full")
    cases += [
        (["--authors", full, "--their-python", str(tmp_path / "no-python")], "cannot be run"),
        (["--authors", full, "--their-python", str(fake)], "cannot import skimage"),
    ]
    for extra, expected in cases:
        assert xc.main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: --") and expected in err, err
