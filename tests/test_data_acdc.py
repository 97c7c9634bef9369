"""The ACDC reader: layout and content validation through ``suite prepare`` (exit 2, one line, no output)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from suite.cli import main
from suite.data import acdc
from suite.errors import InputError


def write_patient(
    root: Path,
    k: int,
    shape=(20, 18, 4),
    ed: int = 1,
    es: int = 7,
    group: str = "NOR",
    spacing=(1.5, 1.5, 10.0),
) -> Path:
    """A small valid ACDC-format patient (fast: no phantom), LV disc larger at ED than ES."""
    pid = f"patient{k:03d}"
    folder = root / pid
    folder.mkdir(parents=True)
    (folder / "Info.cfg").write_text(
        f"ED: {ed}\nES: {es}\nGroup: {group}\nHeight: 170.0\nNbFrame: 30\nWeight: 70.0\n"
    )
    rng = np.random.default_rng(k)
    xx, yy = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    for frame, r in ((ed, 6), (es, 4)):
        img = rng.integers(0, 500, size=shape).astype(np.int16)
        lab = np.zeros(shape, np.uint8)
        disc = (xx - shape[0] / 2) ** 2 + (yy - shape[1] / 2) ** 2 < r**2
        lab[..., :] = np.where(disc, 3, 0)[..., None]
        lab[0, 0, :] = 1
        lab[1, 1, :] = 2
        aff = np.diag([*spacing, 1.0])
        nib.save(nib.Nifti1Image(img, aff), str(folder / f"{pid}_frame{frame:02d}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, aff), str(folder / f"{pid}_frame{frame:02d}_gt.nii.gz"))
    return folder


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    root = tmp_path / "acdc"
    for k in (1, 2):
        write_patient(root, k)
    return root


def run_prepare(src: Path, tmp_path: Path, capsys) -> tuple[int, str, Path]:
    out = tmp_path / "prepared"
    rc = main(["prepare", str(src), str(out), "--size", "16"])
    err = capsys.readouterr().err.strip()
    return rc, err, out


def expect_error(src: Path, tmp_path: Path, capsys, *needles: str) -> str:
    rc, err, out = run_prepare(src, tmp_path, capsys)
    assert rc == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    assert not out.exists(), "no prepared output may be left behind"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".prepared")], "temporary folder left"
    return err


def _resave(path: Path, data: np.ndarray, like: Path | None = None) -> None:
    aff = nib.load(str(like or path)).affine
    nib.save(nib.Nifti1Image(data, aff), str(path))


# ------------------------------------------------------------------------------------------ valid input
def test_valid_cohort_scans_and_prepares(cohort, tmp_path, capsys):
    pats = acdc.scan(cohort)
    assert [p.pid for p in pats] == ["patient001", "patient002"]
    p = pats[0]
    assert (p.ed, p.es, p.group, p.height, p.weight, p.nb_frame) == (1, 7, "NOR", 170.0, 70.0, 30)
    assert [f.frame for f in p.frames] == ["ED", "ES"]
    assert p.frames[1].image.name == "patient001_frame07.nii.gz"
    f = acdc.load_frame(p.frames[0])
    assert f.image.dtype == np.float32 and f.label.dtype == np.uint8 and f.spacing == (1.5, 1.5, 10.0)
    rc, err, out = run_prepare(cohort, tmp_path, capsys)
    assert rc == 0, err
    assert (out / "images.npy").exists() and (out / "manifest.json").exists()


def test_release_parent_folder_with_training_subfolder(tmp_path):
    root = tmp_path / "database"
    write_patient(root / "training", 1)
    (root / "MANDATORY_CITATION.md").write_text("cite")
    assert [p.pid for p in acdc.scan(root)] == ["patient001"]


def test_other_files_are_ignored_and_4d_file_ignored(cohort):
    (cohort / "README.txt").write_text("x")
    (cohort / "patient001" / "patient001_4d.nii.gz").write_bytes(b"not even gzip")
    assert len(acdc.scan(cohort)) == 2


# ------------------------------------------------------------------------------------------ layout errors
def test_missing_src(tmp_path, capsys):
    expect_error(tmp_path / "nope", tmp_path, capsys, "nope", "does not exist")


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path / "empty", tmp_path, capsys, "empty", "no patientXXX folders", "suite phantom")


def test_malformed_patient_folder(cohort, tmp_path, capsys):
    (cohort / "patient01").mkdir()
    expect_error(cohort, tmp_path, capsys, "patient01", "malformed patient folder name", "patient001")


def test_file_named_like_patient_folder(cohort, tmp_path, capsys):
    (cohort / "patient003").write_text("oops")
    expect_error(cohort, tmp_path, capsys, "patient003", "is a file named like a patient folder")


def test_duplicate_patient_via_symlink(cohort, tmp_path, capsys):
    os.symlink(cohort / "patient001", cohort / "patient003")
    expect_error(cohort, tmp_path, capsys, "patient003", "duplicate patient folder", "patient001")


def test_duplicate_patient_via_case(cohort, tmp_path, capsys):
    probe = cohort / "PATIENT001"
    try:
        probe.mkdir()
    except FileExistsError:
        pytest.skip("case-insensitive file system")
    expect_error(cohort, tmp_path, capsys, "duplicate patient folder")


def test_upper_case_patient_folder(tmp_path, capsys):
    root = tmp_path / "acdc"
    write_patient(root, 1)
    (root / "patient001").rename(root / "Patient001")
    expect_error(root, tmp_path, capsys, "Patient001", "lower case", "patient001")


def test_missing_info_cfg(cohort, tmp_path, capsys):
    (cohort / "patient002" / "Info.cfg").unlink()
    expect_error(cohort, tmp_path, capsys, "patient002/Info.cfg", "Info.cfg is missing")


@pytest.mark.parametrize("key", ["ED", "ES"])
def test_missing_ed_es_key(cohort, tmp_path, capsys, key):
    cfg = cohort / "patient001" / "Info.cfg"
    cfg.write_text(
        "".join(line + "\n" for line in cfg.read_text().splitlines() if not line.startswith(key + ":"))
    )
    expect_error(cohort, tmp_path, capsys, "patient001/Info.cfg", f"key '{key}' is missing")


def test_bad_ed_value(cohort, tmp_path, capsys):
    cfg = cohort / "patient001" / "Info.cfg"
    cfg.write_text(cfg.read_text().replace("ED: 1", "ED: one"))
    expect_error(cohort, tmp_path, capsys, "Info.cfg", "'ED' has value 'one'")


def test_frame_named_in_info_but_absent(cohort, tmp_path, capsys):
    cfg = cohort / "patient002" / "Info.cfg"
    cfg.write_text(cfg.read_text().replace("ES: 7", "ES: 9"))
    expect_error(cohort, tmp_path, capsys, "patient002_frame09.nii.gz", "ES image file is missing", "frame 9")


def test_missing_label_file(cohort, tmp_path, capsys):
    (cohort / "patient001" / "patient001_frame01_gt.nii.gz").unlink()
    expect_error(cohort, tmp_path, capsys, "patient001_frame01_gt.nii.gz", "ED label file is missing")


# ------------------------------------------------------------------------------------------ content errors
def test_unreadable_nifti(cohort, tmp_path, capsys):
    p = cohort / "patient002" / "patient002_frame07.nii.gz"
    p.write_bytes(gzip.compress(b"this is not a nifti header at all" * 20))
    expect_error(cohort, tmp_path, capsys, "patient002_frame07.nii.gz", "unreadable NIfTI")


def test_not_gzip_at_all(cohort, tmp_path, capsys):
    p = cohort / "patient002" / "patient002_frame07.nii.gz"
    p.write_bytes(b"plain text, not gzip")
    expect_error(cohort, tmp_path, capsys, "patient002_frame07.nii.gz", "not a gzip file")


def test_truncated_gzip(cohort, tmp_path, capsys):
    p = cohort / "patient001" / "patient001_frame07.nii.gz"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    expect_error(
        cohort, tmp_path, capsys, "patient001_frame07.nii.gz", "truncated or corrupt gzip", "re-extract"
    )


def test_gzip_truncated_inside_header(cohort, tmp_path, capsys):
    p = cohort / "patient002" / "patient002_frame01_gt.nii.gz"
    p.write_bytes(p.read_bytes()[:60])
    expect_error(cohort, tmp_path, capsys, "patient002_frame01_gt.nii.gz", "truncated or corrupt gzip")


def test_shape_mismatch(cohort, tmp_path, capsys):
    p = cohort / "patient001" / "patient001_frame01_gt.nii.gz"
    _resave(p, np.zeros((20, 18, 5), np.uint8))
    expect_error(
        cohort,
        tmp_path,
        capsys,
        "patient001_frame01_gt.nii.gz",
        "does not match image shape",
        "(20, 18, 5)",
        "(20, 18, 4)",
    )


def test_label_values_outside_range(cohort, tmp_path, capsys):
    p = cohort / "patient002" / "patient002_frame01_gt.nii.gz"
    lab = np.asarray(nib.load(str(p)).dataobj).copy()
    lab[3, 3, 2] = 7
    _resave(p, lab)
    expect_error(cohort, tmp_path, capsys, "patient002_frame01_gt.nii.gz", "label values [7]", "{0, 1, 2, 3}")


def test_non_3d_data(cohort, tmp_path, capsys):
    p = cohort / "patient001" / "patient001_frame01.nii.gz"
    _resave(p, np.ones((20, 18, 4, 2), np.int16))
    expect_error(cohort, tmp_path, capsys, "patient001_frame01.nii.gz", "4-D", "expected 3-D")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_intensities(cohort, tmp_path, capsys, bad):
    p = cohort / "patient001" / "patient001_frame07.nii.gz"
    img = np.asarray(nib.load(str(p)).dataobj).astype(np.float32)
    img[2, 2, 1] = bad
    _resave(p, img)
    expect_error(cohort, tmp_path, capsys, "patient001_frame07.nii.gz", "1 NaN/inf intensities")


def test_error_in_last_patient_leaves_nothing(tmp_path, capsys):
    """The failure happens after other volumes were already written into the temporary folder."""
    root = tmp_path / "acdc"
    for k in (1, 2, 3):
        write_patient(root, k)
    p = root / "patient003" / "patient003_frame07_gt.nii.gz"
    lab = np.asarray(nib.load(str(p)).dataobj).copy()
    lab[0, 0, 0] = 4
    _resave(p, lab)
    expect_error(root, tmp_path, capsys, "patient003_frame07_gt.nii.gz", "label values [4]")


def test_api_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="no patientXXX folders"):
        acdc.scan(tmp_path)
