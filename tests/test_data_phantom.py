"""The synthetic ACDC-format cohort: layout, headers, labels, anatomy, groups, determinism, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from suite.cli import main
from suite.data import acdc
from suite.data.phantom.anatomy import GROUPS
from suite.data.phantom.cohort import patient_group, write_cohort
from suite.data.phantom.imaging import make_patient


def _frames(folder: Path):
    info = acdc.parse_info(folder / "Info.cfg")
    pid = folder.name
    out = {}
    for key in ("ED", "ES"):
        n = int(info[key])
        out[key] = (
            nib.load(str(folder / f"{pid}_frame{n:02d}.nii.gz")),
            nib.load(str(folder / f"{pid}_frame{n:02d}_gt.nii.gz")),
        )
    return info, out


def test_layout_is_the_release_layout(phantom_dir):
    names = sorted(p.name for p in phantom_dir.iterdir() if not p.name.startswith("."))
    assert names == [f"patient{k:03d}" for k in range(1, 31)] + ["phantom.json"]
    for folder in phantom_dir.glob("patient*"):
        files = sorted(p.name for p in folder.iterdir())
        info = acdc.parse_info(folder / "Info.cfg")
        ed, es = int(info["ED"]), int(info["ES"])
        pid = folder.name
        assert files == sorted(
            [
                "Info.cfg",
                f"{pid}_frame{ed:02d}.nii.gz",
                f"{pid}_frame{ed:02d}_gt.nii.gz",
                f"{pid}_frame{es:02d}.nii.gz",
                f"{pid}_frame{es:02d}_gt.nii.gz",
            ]
        )
        assert list(info) == ["ED", "ES", "Group", "Height", "NbFrame", "Weight"]
        assert ed == 1 and 1 < es <= int(info["NbFrame"])
        assert info["Group"] in GROUPS
    # the reader accepts it as it is
    assert [p.pid for p in acdc.scan(phantom_dir)] == [f"patient{k:03d}" for k in range(1, 31)]


def test_headers_dtypes_and_spacing_ranges(phantom_dir):
    thick, slices = set(), []
    for folder in sorted(phantom_dir.glob("patient*")):
        _, frames = _frames(folder)
        for img, lab in frames.values():
            assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
            assert img.shape == lab.shape and len(img.shape) == 3
            sx, sy, sz = img.header.get_zooms()
            assert 1.2 <= sx <= 1.8 and 1.2 <= sy <= 1.8
            assert sz in (5.0, 6.5, 7.0, 10.0)
            assert 200 <= img.shape[0] <= 260 and 200 <= img.shape[1] <= 260
            assert 6 <= img.shape[2] <= 18
            assert np.allclose(lab.header.get_zooms(), img.header.get_zooms())
            thick.add(float(sz))
            slices.append(img.shape[2])
    assert len(thick) >= 2, "slice spacings should vary across patients"
    assert len(set(slices)) >= 3


def test_labels_and_anatomy(phantom_dir):
    ratios = []
    for folder in sorted(phantom_dir.glob("patient*")):
        _, frames = _frames(folder)
        lv = {}
        for key, (img, lab) in frames.items():
            data = np.asarray(lab.dataobj)
            assert set(np.unique(data)) == {0, 1, 2, 3}
            lv[key] = (data == 3).sum()
            per_slice = (data == 3).sum(axis=(0, 1))
            nz = per_slice[per_slice > 0]
            # base -> apex: the largest LV slice is in the basal half, the last labeled one is small
            assert np.argmax(per_slice) < len(per_slice) / 2
            assert nz[-1] < 0.6 * nz.max()
            im = np.asarray(img.dataobj)
            assert im.min() >= 0 and im.max() > 100
            # blood brighter than myocardium; RV blood pool about as bright as the LV's (a confounder)
            m_lv, m_myo, m_rv = (float(np.median(im[data == k])) for k in (3, 2, 1))
            assert m_lv > 1.5 * m_myo
            assert 0.6 < m_rv / m_lv < 1.5
        assert lv["ED"] > lv["ES"], folder.name
        ratios.append(lv["ES"] / lv["ED"])
    assert 0.2 < float(np.mean(ratios)) < 0.8


def _ed(phantom_dir: Path, k: int):
    info, frames = _frames(phantom_dir / f"patient{k:03d}")
    img, lab = frames["ED"]
    return info, np.asarray(img.dataobj), np.asarray(lab.dataobj), img.header.get_zooms()


def test_groups_change_size_and_wall(phantom_dir):
    """DCM: large cavity, thin wall; HCM: small cavity, thick wall (6 patients each in the 30-patient
    cohort)."""
    cav: dict[str, list[float]] = {}
    ratio: dict[str, list[float]] = {}
    for k in range(1, 31):
        info, _, lab, (sx, sy, sz) = _ed(phantom_dir, k)
        g = info["Group"]
        cav.setdefault(g, []).append((lab == 3).sum() * sx * sy * sz / 1000)
        ratio.setdefault(g, []).append((lab == 2).sum() / max((lab == 3).sum(), 1))
    mc = {g: np.mean(v) for g, v in cav.items()}
    mr = {g: np.mean(v) for g, v in ratio.items()}
    assert len(cav) == 5 and all(len(v) == 6 for v in cav.values())
    assert mc["DCM"] > mc["NOR"] > mc["HCM"], mc
    assert mr["HCM"] > mr["NOR"] > mr["DCM"], mr


def test_patients_vary_a_lot(phantom_dir):
    pos, scale, fov = [], [], []
    for k in range(1, 11):
        _, img, lab, zooms = _ed(phantom_dir, k)
        xs, ys, _ = np.nonzero(lab == 3)
        pos.append((xs.mean() / lab.shape[0], ys.mean() / lab.shape[1]))
        scale.append(np.percentile(img, 99))
        fov.append(lab.shape[0] * zooms[0])
    pos = np.array(pos)
    assert pos.std(axis=0).min() > 0.03, "heart position should vary"
    assert max(scale) / min(scale) > 2, "intensity scale should vary"
    assert max(fov) - min(fov) > 40, "field of view should vary (mm)"


def test_deterministic_and_patient_k_independent_of_cohort_size(phantom_dir, tmp_path):
    small = write_cohort(tmp_path / "two", patients=2, seed=0, workers=1)
    for pid in ("patient001", "patient002"):
        for f in (phantom_dir / pid).glob("*.nii.gz"):
            a = np.asarray(nib.load(str(f)).dataobj)
            b = np.asarray(nib.load(str(small / pid / f.name)).dataobj)
            assert np.array_equal(a, b), f.name
        assert (phantom_dir / pid / "Info.cfg").read_text() == (small / pid / "Info.cfg").read_text()
    other = make_patient(1, 1, "NOR")["frames"][1][0]
    assert not np.array_equal(other, make_patient(1, 0, "NOR")["frames"][1][0])


def test_group_orders():
    assert [patient_group(k) for k in range(1, 7)] == ["NOR", "DCM", "HCM", "MINF", "RV", "NOR"]
    assert [patient_group(k, "acdc") for k in (1, 20, 21, 41, 61, 81, 100)] == [
        "DCM",
        "DCM",
        "HCM",
        "MINF",
        "NOR",
        "RV",
        "RV",
    ]


def test_cli_phantom_idempotent_and_refuses_other(tmp_path, capsys):
    out = tmp_path / "ph"
    assert main(["phantom", str(out), "--patients", "2", "--seed", "5", "--workers", "1"]) == 0
    spec = json.loads((out / "phantom.json").read_text())
    assert spec["patients"] == 2 and spec["seed"] == 5
    mtime = (out / "patient001" / "Info.cfg").stat().st_mtime_ns
    assert main(["phantom", str(out), "--patients", "2", "--seed", "5"]) == 0
    assert (out / "patient001" / "Info.cfg").stat().st_mtime_ns == mtime
    capsys.readouterr()
    assert main(["phantom", str(out), "--patients", "2", "--seed", "6"]) == 2
    assert "different phantom cohort" in capsys.readouterr().err
    assert main(["phantom", str(out), "--patients", "1", "--seed", "6", "--force", "--workers", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".suite-outputs.json", "patient001", "phantom.json"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["phantom", str(tmp_path / "mine"), "--patients", "1"]) == 2
    assert (tmp_path / "mine" / "notes.txt").exists()


@pytest.mark.parametrize("bad", ["0", "1000"])
def test_cli_phantom_bad_patient_count(tmp_path, capsys, bad):
    assert main(["phantom", str(tmp_path / "x"), "--patients", bad]) == 2
    assert "--patients" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
