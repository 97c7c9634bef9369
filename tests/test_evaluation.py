"""The held-out test split and its evaluation: preparation (own hash, run ids unchanged, refusals), the way
back to the original geometry (NIfTI round trip), the evaluation after training and its commands, and that the
test split never reaches selection, early stopping or the lr rule."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from suite.cli import main
from suite.data.dataset import PreparedData
from suite.data.geometry import Originals, VolumeGeometry, probabilities_to_original, to_original_geometry
from suite.data.phantom.cohort import _write_patient, patient_group, write_cohort
from suite.data.prepare import prepare
from suite.errors import InputError
from suite.evaluation import COLUMNS
from suite.export import nifti_bytes
from suite.paths import RunPaths
from suite.stages.runner import execute
from suite.testing.small_runs import small_run_config

TEST_IDS = (31, 32, 33)


def _release(phantom_dir: Path, root: Path) -> Path:
    """An ACDC-release-like parent folder: training/ (the session phantom) and testing/ (patients 31-33)."""
    root.mkdir()
    (root / "training").symlink_to(phantom_dir)
    for k in TEST_IDS:
        _write_patient((k, 0, patient_group(k), str(root / "testing")))
    return root


@pytest.fixture(scope="module")
def release(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _release(phantom_dir, tmp_path_factory.mktemp("release") / "acdc")


@pytest.fixture(scope="module")
def prepared_test(release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prepared-test") / "p64"
    prepare(release, out, size=64)
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------------------- data
def test_prepare_takes_testing_as_a_separately_hashed_test_split(prepared_test, prepared_small):
    train = PreparedData.open(prepared_test)
    # the training data and its hash are those of the same patients prepared without a testing/ folder
    plain = PreparedData.open(prepared_small)
    assert train.data_hash == plain.data_hash
    assert np.array_equal(np.asarray(train.images), np.asarray(plain.images))
    assert plain.test_split() is None
    test = train.test_split()
    assert test is not None and test.data_hash != train.data_hash
    assert test.patients == [f"patient{k:03d}" for k in TEST_IDS]
    assert not set(test.patients) & set(train.patients)
    with pytest.raises(InputError, match="held-out test split has no training splits"):
        test.split(5)
    # an existing run's id does not change when a test split is added
    assert small_run_config(prepared_test).replace(data_hash=train.data_hash).run_id == (
        small_run_config(prepared_small).replace(data_hash=plain.data_hash).run_id
    )


def test_testing_added_later_rewrites_only_the_test_split(release, phantom_dir, tmp_path, capsys):
    src = tmp_path / "acdc"
    src.mkdir()
    (src / "training").symlink_to(phantom_dir)
    out = tmp_path / "out"
    assert main(["prepare", str(src), str(out), "--size", "16"]) == 0
    assert "(no test split)" in capsys.readouterr().out and not (out / "test").exists()
    mtime = (out / "images.npy").stat().st_mtime_ns
    shutil.copytree(release / "testing", src / "testing")
    assert main(["prepare", str(src), str(out), "--size", "16"]) == 0
    assert "test_hash=" in capsys.readouterr().out
    assert (out / "images.npy").stat().st_mtime_ns == mtime  # the training arrays were not rewritten
    assert PreparedData.open(out).test_split() is not None
    shutil.rmtree(src / "testing")  # a removed testing/ folder takes its prepared split with it
    assert main(["prepare", str(src), str(out), "--size", "16"]) == 0
    assert not (out / "test").exists()


def test_testing_folder_without_labels_is_refused_with_one_line(release, phantom_dir, tmp_path, capsys):
    src = tmp_path / "acdc"
    src.mkdir()
    (src / "training").symlink_to(phantom_dir)
    shutil.copytree(release / "testing", src / "testing")
    for gt in (src / "testing").rglob("*_gt.nii.gz"):
        gt.unlink()
    assert main(["prepare", str(src), str(tmp_path / "out"), "--size", "16"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error")]
    assert len(err) == 1 and "no _gt label files" in err[0] and "testing" in err[0]
    assert not (tmp_path / "out").exists()


def test_phantom_writes_test_patients_beside_the_training_ones(tmp_path, capsys):
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--patients", "2", "--test-patients", "2", "--workers", "1"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["patient001", "patient002", "testing"]
    assert sorted(p.name for p in (out / "testing").iterdir()) == ["patient003", "patient004"]
    ref = tmp_path / "ref"
    write_cohort(ref, patients=4, seed=0, workers=1)  # patient k depends only on (seed, k)
    a = out / "testing" / "patient004" / "patient004_frame01_gt.nii.gz"
    b = ref / "patient004" / "patient004_frame01_gt.nii.gz"
    assert np.array_equal(np.asarray(nib.load(a).dataobj), np.asarray(nib.load(b).dataobj))
    # asking again is a no-op; a phantom.json written before test patients existed still matches
    marker = json.loads((ref / "phantom.json").read_text())
    marker.pop("test_patients")
    (ref / "phantom.json").write_text(json.dumps(marker))
    write_cohort(ref, patients=4, seed=0, workers=1)
    assert main(["phantom", str(out), "--patients", "2", "--test-patients", "3"]) == 2


# ---------------------------------------------------------------------------------------------- geometry
def _custom_testing(phantom_dir: Path, root: Path, label: np.ndarray, affine: np.ndarray) -> Path:
    """training/ (two phantom patients) and testing/patient101 whose ED and ES labels are ``label``."""
    for k in (1, 2):
        shutil.copytree(phantom_dir / f"patient{k:03d}", root / "training" / f"patient{k:03d}")
    folder = root / "testing" / "patient101"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for number in (1, 9):
        image = rng.integers(0, 1000, size=label.shape).astype(np.int16)
        for arr, suffix in ((image, ""), (label, "_gt")):
            nii = nib.Nifti1Image(arr, affine)
            nii.header.set_zooms((1.5, 1.5, 8.0))
            nib.save(nii, str(folder / f"patient101_frame{number:02d}{suffix}.nii.gz"))
    (folder / "Info.cfg").write_text("ED: 1\nES: 9\nGroup: NOR\nHeight: 170\nNbFrame: 20\nWeight: 70\n")
    return root


@pytest.mark.parametrize("crop", [1.0, 0.5])
def test_export_round_trip_is_exact_where_resampling_is_lossless(phantom_dir, tmp_path, crop):
    """A 64x64 label map constant on 2x2 blocks, prepared at 32 (crop 1: halved; crop 0.5: the central 32x32
    kept as is, background outside), exported through the way back comes back equal, with the original
    shape and affine."""
    rng = np.random.default_rng(1)
    label = np.kron(rng.integers(0, 4, size=(32, 32, 3)), np.ones((2, 2, 1))).astype(np.uint8)
    if crop != 1.0:
        keep = np.zeros_like(label)
        keep[16:48, 16:48] = label[16:48, 16:48]
        label = keep
    theta = 0.3
    affine = np.array(
        [
            [1.5 * np.cos(theta), -1.5 * np.sin(theta), 0, -40.0],
            [1.5 * np.sin(theta), 1.5 * np.cos(theta), 0, 12.5],
            [0, 0, 8.0, -30.0],
            [0, 0, 0, 1],
        ]
    )
    src = _custom_testing(phantom_dir, tmp_path / "src", label, affine)
    prepare(src, tmp_path / "out", size=32, crop=crop)
    test = PreparedData.open(tmp_path / "out").test_split()
    assert test is not None
    rec = test.manifest["volumes"][0]
    geom = VolumeGeometry.from_record(rec, crop)
    slices = np.asarray(test.labels[rec["start"] : rec["stop"]])  # what a perfect network would predict
    back = to_original_geometry(slices, geom)
    assert np.array_equal(back, label)
    # a network's certain probabilities (one-hot, 4 channels: channel = label) come back exactly too
    one_hot = (slices[:, None] == np.arange(4)[None, :, None, None]).astype(np.float32)
    assert np.array_equal(probabilities_to_original(one_hot, geom), label)
    originals = Originals(test.path)
    assert np.array_equal(originals.label(geom.volume), label)
    out = tmp_path / f"{geom.image_name}.nii.gz"
    out.write_bytes(nifti_bytes(back, geom, originals.header(geom.volume)))
    originals.close()
    img = nib.load(out)
    assert img.shape == label.shape and np.allclose(img.affine, affine, atol=1e-5)
    assert img.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(img.dataobj), label)
    assert img.header.get_zooms()[:3] == pytest.approx((1.5, 1.5, 8.0))


# A disc predicted on a 40 x 40 grid (a smooth network-like foreground probability around the analytic
# circle), to go back to its 200 x 200 matrix
DISC_SIZE, DISC_SIDE, DISC_CENTRE, DISC_RADIUS = 40, 200, np.array([97.3, 103.7]), 61.3


def _disc_probabilities() -> np.ndarray:
    """(1, 2, 40, 40): background, foreground."""
    scale = DISC_SIDE / DISC_SIZE
    coords = (np.arange(DISC_SIZE) + 0.5) * scale - 0.5  # the small grid's pixel centres on the original one
    dist = np.hypot(coords[:, None] - DISC_CENTRE[0], coords[None, :] - DISC_CENTRE[1])
    fg = (1 / (1 + np.exp(-(DISC_RADIUS - dist) / scale))).astype(np.float32)
    return np.stack([1 - fg, fg])[None]


def _disc_error(pred: np.ndarray) -> float:
    """The farthest from the circle that a pixel of ``pred`` (X, Y, 1) lies on the wrong side of it, in
    pixels of the 40-grid."""
    o = np.arange(DISC_SIDE)
    dist = np.hypot(o[:, None] - DISC_CENTRE[0], o[None, :] - DISC_CENTRE[1])
    wrong = pred[:, :, 0].astype(bool) != (dist < DISC_RADIUS)
    return float(np.abs(dist[wrong] - DISC_RADIUS).max()) * DISC_SIZE / DISC_SIDE if wrong.any() else 0.0


def _disc_geometry() -> VolumeGeometry:
    return VolumeGeometry("v", "v", (DISC_SIDE, DISC_SIDE, 1), (1.0, 1.0, 8.0), (0, DISC_SIDE, 0, DISC_SIDE))


def test_probabilities_go_back_within_a_quarter_pixel_labels_do_not():
    # the arg-max of the bilinearly resampled probabilities puts the boundary within a quarter pixel of the
    # 40-grid of the circle (measured: 0.012); the label map taken back by nearest neighbour moves it by up
    # to about half a pixel (0.56), which HD95 and ASSD see
    probs = _disc_probabilities()
    assert _disc_error(probabilities_to_original(probs, _disc_geometry())) < 0.25
    labels = probs.argmax(axis=1).astype(np.uint8)
    assert _disc_error(to_original_geometry(labels, _disc_geometry())) > 0.25


def test_the_evaluation_and_export_take_a_prediction_back_through_its_probabilities():
    from types import SimpleNamespace

    from suite.config import RunConfig
    from suite.evaluation import predicted_volumes

    class Disc(torch.nn.Module):  # a network that predicts the disc whatever it sees
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np.log(_disc_probabilities())).expand(len(x), -1, -1, -1)

    rec = {"volume": "v", "image_name": "v", "shape": [DISC_SIDE, DISC_SIDE, 1], "spacing": [1.0, 1.0, 8.0]}
    rec.update(crop_box=[0, DISC_SIDE, 0, DISC_SIDE], start=0, stop=1, patient="p", frame_number=1)
    images = np.zeros((1, DISC_SIZE, DISC_SIZE), dtype=np.uint8)
    data = SimpleNamespace(resized=lambda size: (images, images), manifest={"volumes": [rec]})
    cfg = RunConfig.from_preset("smoke", image_size=DISC_SIZE, device="cpu")
    ((geom, _, pred),) = predicted_volumes(Disc(), cfg, data, ["v"], torch.device("cpu"))
    assert geom == _disc_geometry() and pred.shape == (DISC_SIDE, DISC_SIDE, 1)
    assert set(np.unique(pred)) == {0, 3}  # ACDC labels: the LV
    assert _disc_error(pred == 3) < 0.25


# ---------------------------------------------------------------------------------------------- runs
def _train(data: Path, exp: Path, **overrides) -> RunPaths:
    return execute(small_run_config(data, seg_epochs=2, **overrides), exp)


def test_run_evaluates_its_test_split_after_training(prepared_test, tmp_path, capsys):
    paths = _train(prepared_test, tmp_path / "exp")
    rows = _csv(paths.test_metrics)
    assert tuple(rows[0]) == COLUMNS
    test = PreparedData.open(prepared_test).test_split()
    assert test is not None
    names = {v["image_name"] for v in test.manifest["volumes"]}
    assert {(r["checkpoint"], r["volume"]) for r in rows} == {
        (c, n) for c in ("final", "best") for n in names
    }
    assert {r["class"] for r in rows} == {"LV"} and {r["split"] for r in rows} == {"test"}
    for r in rows:
        assert 0.0 <= float(r["dice"]) <= 1.0 and r["phase"] in ("ED", "ES")
        assert r["volume"].startswith(r["patient"] + "_frame")
        assert float(r["volume_true_ml"]) > 0  # every phantom volume has an LV
    record = json.loads(paths.evaluation.read_text())
    assert record["test"]["source"]["data_hash"] == test.data_hash
    # suite evaluate: up to date; --split val adds the val rows beside the test rows
    assert main(["evaluate", str(paths.root.parent.parent)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["evaluate", str(paths.root), "--split", "val"]) == 0
    both = _csv(paths.test_metrics)
    assert [r for r in both if r["split"] == "test"] == rows
    assert {r["split"] for r in both} == {"test", "val"}
    # suite export: the input's shape and affine
    out = tmp_path / "nifti"
    assert main(["export", str(paths.root), str(out), "--checkpoint", "best"]) == 0
    files = sorted(p.name for p in out.glob("*.nii.gz"))
    assert files == sorted(f"{n}.nii.gz" for n in names)
    rec = test.manifest["volumes"][0]
    src = Path(test.manifest["source"]) / rec["patient"] / f"{rec['image_name']}.nii.gz"
    a, b = nib.load(out / f"{rec['image_name']}.nii.gz"), nib.load(src)
    assert a.shape == b.shape and np.allclose(a.affine, b.affine, atol=1e-5)
    assert set(np.unique(np.asarray(a.dataobj))) <= {0, 3}
    # bad paths: one line, exit 2
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert main(["export", str(tmp_path), str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_evaluation_is_redone_when_a_run_resumes_after_training(prepared_test, tmp_path):
    paths = _train(prepared_test, tmp_path / "exp")
    first, metrics = paths.test_metrics.read_text(), paths.metrics.read_bytes()
    for f in (paths.summary, paths.test_metrics, paths.evaluation):  # killed after training, before these
        f.unlink()
    assert _train(prepared_test, tmp_path / "exp") == paths and paths.is_finished()
    assert paths.test_metrics.read_text() == first and paths.metrics.read_bytes() == metrics


def test_the_test_split_never_reaches_selection_or_the_lr_rule(
    prepared_test, prepared_small, tmp_path, monkeypatch
):
    """Training on data whose test split is poisoned (random images and labels) selects, schedules and logs
    exactly as on the clean test split and without any: the test split is read only after the last epoch."""
    poisoned = tmp_path / "poisoned"
    shutil.copytree(prepared_test, poisoned)
    rng = np.random.default_rng(0)
    for name in ("images.npy", "labels.npy"):
        arr = np.load(poisoned / "test" / name, mmap_mode="r+")
        arr[:] = rng.integers(0, 4 if name == "labels.npy" else 256, size=arr.shape, dtype=np.uint8)
        arr.flush()
        del arr
    opened_at: list[int] = []
    real = PreparedData.test_split

    def spy(self: PreparedData):
        metrics = next((tmp_path / "exp-poisoned").glob("runs/*/metrics.csv"), None)
        opened_at.append(len(metrics.read_text().splitlines()) if metrics else -1)
        return real(self)

    monkeypatch.setattr(PreparedData, "test_split", spy)
    runs = {
        k: _train(d, tmp_path / f"exp-{k}") for k, d in [("poisoned", poisoned), ("clean", prepared_test)]
    }
    runs["none"] = _train(prepared_small, tmp_path / "exp-none")
    final_rows = len(runs["poisoned"].metrics.read_text().splitlines())
    assert opened_at and opened_at[0] == final_rows  # first opened when every epoch was logged
    assert len({p.run_id for p in runs.values()}) == 1
    metrics = {k: p.metrics.read_text().splitlines() for k, p in runs.items()}
    no_time = {k: [r for r in v if "epoch_time_s" not in r] for k, v in metrics.items()}
    assert no_time["poisoned"] == no_time["clean"] == no_time["none"]
    best = {k: torch.load(p.checkpoint_best, weights_only=True) for k, p in runs.items()}
    assert best["poisoned"]["epoch"] == best["clean"]["epoch"] == best["none"]["epoch"]
    for key, value in best["clean"]["model"].items():
        assert torch.equal(value, best["poisoned"]["model"][key]), key
    # the poison did reach the evaluation (so the spy saw the real reader), and only there
    assert _csv(runs["poisoned"].test_metrics) != _csv(runs["clean"].test_metrics)
    assert not runs["none"].test_metrics.exists()


def test_authors_state_dict_is_evaluated_on_the_test_split(prepared_test, tmp_path, capsys):
    sd = Path(__file__).parent / "data" / "authors_networks" / "enet_authors_state_dict.pt"
    out = tmp_path / "authors"
    argv = ["evaluate", "--state-dict", str(sd), "--data", str(prepared_test), "--preset", "code"]
    argv += [
        "--set",
        "image_size=64",
        "--set",
        "reg_arch=resnext",
        "--set",
        "threads=1",
        "--set",
        "device=cpu",
        str(out),
    ]
    assert main(argv) == 0
    rows = _csv(out / "test_metrics.csv")
    assert {r["checkpoint"] for r in rows} == {"best"} and {r["split"] for r in rows} == {"test"}
    assert len(rows) == 6  # 3 patients x ED/ES x LV
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main([*argv[:2], str(bad), *argv[3:-1], str(tmp_path / "o2")]) == 2
    assert "not a loadable state_dict" in capsys.readouterr().err
