"""Preparation: round trip phantom -> prepare -> PreparedData, an independent re-computation of one volume,
the no-op second run, refusal to overwrite, resizing, ``suite info``."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from suite.cli import main
from suite.data.dataset import PreparedData
from suite.data.geometry import resize_stack
from suite.errors import InputError


def test_round_trip_arrays_and_manifest(prepared_small):
    t0 = time.perf_counter()
    d = PreparedData.open(prepared_small)
    assert time.perf_counter() - t0 < 1.0
    n = len(d)
    assert d.size == 64 and d.images.shape == (n, 64, 64) and d.labels.shape == (n, 64, 64)
    assert d.images.dtype == np.uint8 and d.labels.dtype == np.uint8
    assert isinstance(d.images, np.memmap)
    assert len(d.patients) == 30 and len(d.volumes) == 60
    assert set(np.unique(d.labels)) == {0, 1, 2, 3}
    for arr in (d.patient, d.frame, d.slice_index, d.volume, d.lv_area_px, d.lv_area_mm2, d.group):
        assert arr.shape == (n,)
    assert d.spacing.shape == (n, 3)
    assert np.array_equal(d.lv_area_px, (np.asarray(d.labels) == 3).sum(axis=(1, 2)))
    assert np.allclose(d.lv_area_mm2, d.lv_area_px * d.spacing[:, 0] * d.spacing[:, 1], atol=1e-3)
    assert set(d.frame) == {"ED", "ES"} and set(d.group) == {"NOR", "DCM", "HCM", "MINF", "RV"}
    assert len(d.data_hash) == 16
    # volumes are contiguous, slice indices 0..Z-1, names consistent
    for v in d.manifest["volumes"]:
        sl = slice(v["start"], v["stop"])
        assert list(d.slice_index[sl]) == list(range(v["shape"][2]))
        assert set(d.volume[sl]) == {v["volume"]} and set(d.patient[sl]) == {v["patient"]}
        assert v["volume"] == f"{v['patient']}_{v['frame']}"
        # per-volume min-max normalisation: the volume spans (almost) the full range
        im = np.asarray(d.images[sl])
        assert im.min() <= 5 and im.max() >= 200


def test_one_volume_recomputed_independently(prepared_small, phantom_dir):
    """nibabel + torch.interpolate from the NIfTI files give the stored arrays (image within 1 grey level)."""
    d = PreparedData.open(prepared_small)
    info = (phantom_dir / "patient007" / "Info.cfg").read_text()
    es = int(dict(line.split(": ") for line in info.splitlines())["ES"])
    img_nii = nib.load(str(phantom_dir / "patient007" / f"patient007_frame{es:02d}.nii.gz"))
    img = np.asarray(img_nii.dataobj).astype(np.float64)
    lab = np.asarray(
        nib.load(str(phantom_dir / "patient007" / f"patient007_frame{es:02d}_gt.nii.gz")).dataobj
    )
    norm = (img - img.min()) / (img.max() - img.min())
    t = torch.from_numpy(np.moveaxis(norm, 2, 0)[:, None]).float()
    exp_img = F.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False)[:, 0].numpy()
    exp_img = np.clip(np.rint(exp_img * 255), 0, 255)
    tl = torch.from_numpy(np.moveaxis(lab, 2, 0)[:, None].astype(np.float32))
    exp_lab = F.interpolate(tl, size=(64, 64), mode="nearest-exact")[:, 0].numpy().astype(np.uint8)
    sl = next(slice(v["start"], v["stop"]) for v in d.manifest["volumes"] if v["volume"] == "patient007_ES")
    assert np.abs(np.asarray(d.images[sl]).astype(int) - exp_img.astype(int)).max() <= 1
    assert np.array_equal(np.asarray(d.labels[sl]), exp_lab)
    sx, sy, sz = (float(z) for z in img_nii.header.get_zooms())
    v = next(v for v in d.manifest["volumes"] if v["volume"] == "patient007_ES")
    assert v["frame_number"] == es
    assert np.allclose(v["spacing"], [sx, sy, sz])
    assert np.allclose(d.spacing[sl][0], [sx * img.shape[0] / 64, sy * img.shape[1] / 64, sz])
    assert v["lv_volume_ml"] == pytest.approx((lab == 3).sum() * sx * sy * sz / 1000)


def test_resize_stack_matches_torch():
    rng = np.random.default_rng(0)
    for h, w, s in [(230, 212, 256), (256, 256, 64), (13, 10, 32)]:
        a = rng.random((3, h, w)).astype(np.float32)
        ref = F.interpolate(torch.from_numpy(a)[:, None], size=(s, s), mode="bilinear", align_corners=False)
        assert np.abs(resize_stack(a, s, "linear") - ref[:, 0].numpy()).max() < 1e-5
        lab = rng.integers(0, 4, (3, h, w)).astype(np.uint8)
        ref = F.interpolate(torch.from_numpy(lab)[:, None].float(), size=(s, s), mode="nearest-exact")
        assert np.array_equal(resize_stack(lab, s, "nearest"), ref[:, 0].numpy().astype(np.uint8))


def _prepare_two_patients(phantom_dir: Path, tmp_path: Path, size: int) -> tuple[Path, Path, str]:
    """Patients 1 and 2 of the phantom copied to ``tmp_path/src`` and prepared at ``size`` into
    ``tmp_path/out``: (src, out, data_hash)."""
    src = tmp_path / "src"
    for k in (1, 2):
        shutil.copytree(phantom_dir / f"patient{k:03d}", src / f"patient{k:03d}")
    out = tmp_path / "out"
    assert main(["prepare", str(src), str(out), "--size", str(size)]) == 0
    return src, out, json.loads((out / "manifest.json").read_text())["data_hash"]


def test_second_prepare_is_a_noop_and_other_options_refused(phantom_dir, tmp_path, caplog, capsys):
    src, out, key = _prepare_two_patients(phantom_dir, tmp_path, 32)
    mtimes = {f: (out / f).stat().st_mtime_ns for f in ("images.npy", "manifest.json")}
    capsys.readouterr()
    lg = logging.getLogger("suite.data.prepare")  # the suite's loggers do not propagate to the root
    lg.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="suite.data.prepare"):
            assert main(["prepare", str(src), str(out), "--size", "32"]) == 0
    finally:
        lg.removeHandler(caplog.handler)
    assert "up to date" in caplog.text and "skipped" in caplog.text
    assert "skipped" in capsys.readouterr().out
    assert {f: (out / f).stat().st_mtime_ns for f in mtimes} == mtimes
    # a different option is another dataset: refused without --force, replaced with it
    assert main(["prepare", str(src), str(out), "--size", "16"]) == 2
    assert "holds a prepared dataset of other inputs or options" in capsys.readouterr().err
    assert PreparedData.open(out).size == 32
    assert main(["prepare", str(src), str(out), "--size", "16", "--force"]) == 0
    d = PreparedData.open(out)
    assert d.size == 16 and d.data_hash != key
    # a changed input file changes the key
    info = src / "patient001" / "Info.cfg"
    info.write_text(info.read_text() + "\n")
    assert main(["prepare", str(src), str(out), "--size", "16"]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "no temporary folder left"
    # fewer than 30 patients: prepared, but splits unavailable with a clear error
    with pytest.raises(InputError, match="at least 30"):
        d.split(5)


def test_center_crop_enlarges_the_lv_and_is_part_of_the_key(phantom_dir, tmp_path, capsys):
    """``--crop 0.5``: the central half of the field of view along each axis, resized to the same size. It is
    the same image content as cropping the full-resolution slice by hand; LV areas in pixels grow ~4x;
    the crop is recorded and changes the data hash; out-of-range values are one clear error."""
    src = tmp_path / "src"
    shutil.copytree(phantom_dir / "patient001", src / "patient001")
    assert main(["prepare", str(src), str(tmp_path / "full"), "--size", "32"]) == 0
    assert main(["prepare", str(src), str(tmp_path / "crop"), "--size", "32", "--crop", "0.5"]) == 0
    full, crop = PreparedData.open(tmp_path / "full"), PreparedData.open(tmp_path / "crop")
    assert full.data_hash != crop.data_hash
    m = json.loads((tmp_path / "crop" / "manifest.json").read_text())
    assert m["options"]["crop"] == 0.5 and m["options"]["lv_cut_slices"] == 0
    a_full = np.asarray(full.manifest["slices"]["lv_area_px"], dtype=float)
    a_crop = np.asarray(crop.manifest["slices"]["lv_area_px"], dtype=float)
    big = a_full > 10
    assert 3.0 < np.median(a_crop[big] / a_full[big]) < 5.0
    # the labels equal a hand-made crop of the full-resolution label, resized nearest
    v = m["volumes"][0]
    lab = np.moveaxis(
        np.asarray(
            nib.load(str(src / "patient001" / f"patient001_frame{v['frame_number']:02d}_gt.nii.gz")).dataobj
        ),
        2,
        0,
    )
    nx, ny = lab.shape[1:]
    cx, cy = round(nx * 0.5), round(ny * 0.5)
    hand = resize_stack(
        lab[:, (nx - cx) // 2 : (nx - cx) // 2 + cx, (ny - cy) // 2 : (ny - cy) // 2 + cy], 32, "nearest"
    )
    assert np.array_equal(np.asarray(crop.labels[v["start"] : v["stop"]]), hand)
    assert np.allclose(v["spacing_prepared"][:2], [v["spacing"][0] * cx / 32, v["spacing"][1] * cy / 32])
    assert main(["prepare", str(src), str(tmp_path / "bad"), "--crop", "1.5"]) == 2
    assert "--crop 1.5" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_refuses_unrelated_out_folder(tmp_path, capsys, phantom_dir):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert main(["prepare", str(phantom_dir), str(out), "--size", "16"]) == 2
    assert "is not a prepared dataset" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious"


def test_open_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        PreparedData.open(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(InputError, match="manifest.json: missing; the folder is not a complete"):
        PreparedData.open(tmp_path / "half")


def test_resized_is_cached_and_consistent(prepared_small):
    d = PreparedData.open(prepared_small)
    imgs, labs = d.resized(32)
    assert imgs.shape == (len(d), 32, 32) and imgs.dtype == np.uint8 and labs.dtype == np.uint8
    assert d.resized(32)[0] is imgs
    assert d.resized(64)[0] is d.images
    assert np.array_equal(labs, resize_stack(np.asarray(d.labels), 32, "nearest"))
    # a quarter of the pixels: the LV area roughly scales by 1/4 on non-tiny slices
    area = (labs == 3).sum(axis=(1, 2))
    big = d.lv_area_px > 200
    assert np.allclose(area[big] / d.lv_area_px[big], 0.25, atol=0.06)


def test_indices(prepared_small):
    d = PreparedData.open(prepared_small)
    s = d.split(20)
    idx = d.indices(s.labeled)
    assert set(d.patient[idx]) == set(s.labeled) and np.all(np.diff(idx) > 0)
    assert len(d.indices(s.labeled, frames=("ED",))) + len(d.indices(s.labeled, frames=("ES",))) == len(idx)
    all_idx = np.concatenate([d.indices(x) for x in (s.labeled, s.unlabeled, s.val_seg, s.val_reg)])
    assert sorted(all_idx) == list(range(len(d)))


def test_info_command(prepared_small, capsys):
    assert main(["info", str(prepared_small)]) == 0
    out = capsys.readouterr().out
    assert "patients 30, volumes 60" in out and "at 64x64" in out
    assert "validation 8 (segmenter 6, regressor 2)" in out and "n=5->2" in out
    assert main(["info", str(prepared_small), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["patients"] == 30 and s["groups"] == {"DCM": 6, "HCM": 6, "MINF": 6, "NOR": 6, "RV": 6}
    assert s["splits"]["train"] == 22 and 0.2 < s["lv_volume_ml"]["ES_over_ED_mean"] < 0.8


@pytest.mark.slow
def test_full_cohort_of_100(tmp_path):
    """The paper-size cohort: phantom + prepare at 256, the authors' split, opening in well under a second."""
    from suite.data.phantom.cohort import write_cohort
    from suite.data.prepare import prepare

    src = write_cohort(tmp_path / "acdc", patients=100, seed=0)
    r = prepare(src, tmp_path / "prepared")
    assert not r.skipped and prepare(src, tmp_path / "prepared").skipped
    t0 = time.perf_counter()
    d = PreparedData.open(tmp_path / "prepared")
    assert time.perf_counter() - t0 < 0.5
    assert d.size == 256 and len(d.volumes) == 200 and 1500 < len(d) < 2600
    s = d.split(5)
    assert s.labeled == ["patient002", "patient003", "patient005", "patient006", "patient007"]
    assert len(s.val_seg) == 20 and s.val_reg == [
        "patient076",
        "patient078",
        "patient084",
        "patient093",
        "patient098",
    ]
    assert d.splits["labeled_effective"] == {"5": 5, "10": 10, "20": 20, "30": 30, "40": 40, "75": 75}


@pytest.mark.parametrize("damage", ["truncate", "edit", "splits", "old-manifest"])
def test_damaged_prepared_data_is_rebuilt_not_reported_up_to_date(phantom_dir, tmp_path, capsys, damage):
    src, out, key = _prepare_two_patients(phantom_dir, tmp_path, 16)
    good = (out / "images.npy").read_bytes()
    if damage == "truncate":
        (out / "images.npy").write_bytes(good[: len(good) // 2])
    elif damage == "edit":  # same size, one byte changed in place
        with open(out / "images.npy", "r+b") as f:
            f.seek(len(good) - 1)
            f.write(bytes([good[-1] ^ 0xFF]))
    elif damage == "splits":
        (out / "splits.json").write_text('{"n_patients": 2}\n')
    else:  # a manifest from before checksums were recorded
        m = json.loads((out / "manifest.json").read_text())
        del m["files"]
        (out / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert main(["prepare", str(src), str(out), "--size", "16"]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert (out / "images.npy").read_bytes() == good
    assert json.loads((out / "manifest.json").read_text())["data_hash"] == key  # the run ids stay valid
    assert main(["prepare", str(src), str(out), "--size", "16"]) == 0  # and now it is up to date
    assert "skipped" in capsys.readouterr().out
