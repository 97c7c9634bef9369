"""A phantom cohort on disk in the ACDC release layout: patient groups, the NIfTI files, ``write_cohort``.

``patientXXX/patientXXX_frameNN.nii.gz`` (int16) and ``_gt`` (uint8 labels) for the ED and ES frames, with the
pixel spacing in the header, and ``Info.cfg``; ``phantom.json`` beside the patient folders records what was
asked (``PhantomSpec``), so asking again for the same cohort does nothing. ``test_patients`` more patients,
numbered after the training ones, go to ``testing/`` beside them (as ACDC's ``testing/patient101…150``), so a
plain ``suite prepare`` takes them as the held-out test split.
"""

from __future__ import annotations

import json
import logging
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from suite.data.phantom.anatomy import GROUPS
from suite.data.phantom.imaging import make_patient
from suite.errors import InputError

log = logging.getLogger("suite.data.phantom")

PHANTOM_VERSION = 1
ACDC_BLOCK_ORDER = ("DCM", "HCM", "MINF", "NOR", "RV")


@dataclass(frozen=True)
class PhantomSpec:
    """What ``suite phantom`` was asked for (written to ``phantom.json`` beside the patient folders)."""

    patients: int = 100
    seed: int = 0
    group_order: str = "interleaved"  # interleaved | acdc
    version: int = PHANTOM_VERSION
    test_patients: int = 0  # patients patients+1 … in testing/ (the held-out test split)


def patient_group(k: int, order: str = "interleaved") -> str:
    """The group of patient ``k`` (1-based)."""
    if order == "interleaved":
        return GROUPS[(k - 1) % len(GROUPS)]
    if order == "acdc":  # the release: 001-020 DCM, 021-040 HCM, 041-060 MINF, 061-080 NOR, 081-100 RV
        return ACDC_BLOCK_ORDER[((k - 1) // 20) % len(ACDC_BLOCK_ORDER)]
    raise InputError(f"--group-order {order!r}: unknown; choose interleaved or acdc")


def _write_patient(args: tuple[int, int, str, str]) -> str:
    import nibabel as nib

    k, seed, group, out = args
    pid = f"patient{k:03d}"
    p = make_patient(k, seed, group)
    folder = Path(out) / pid
    folder.mkdir(parents=True, exist_ok=True)
    sx, sy, sz = p["spacing"]
    affine = np.diag([sx, sy, sz, 1.0])
    for number, (img, lab) in p["frames"].items():
        for arr, suffix, dtype in ((img, "", np.int16), (lab, "_gt", np.uint8)):
            nii = nib.Nifti1Image(arr, affine)
            nii.header.set_data_dtype(dtype)
            nii.header.set_zooms((sx, sy, sz))
            nii.header.set_xyzt_units("mm", "sec")
            nib.save(nii, str(folder / f"{pid}_frame{number:02d}{suffix}.nii.gz"))
    info = p["info"]
    (folder / "Info.cfg").write_text("".join(f"{k_}: {v}\n" for k_, v in info.items()))
    return pid


_PATIENT_DIR = re.compile(r"patient\d{3}")


def _cohort_files(out: Path) -> list[str]:
    """The files in ``out`` that a cohort writes (``phantom.json``, each ``[testing/]patientXXX``'s
    ``Info.cfg`` and frames), when ``out`` holds one: what a cohort written before the suite kept its outputs
    manifest owns."""
    if not (out / "phantom.json").is_file():
        return []
    found = ["phantom.json"]
    for d in [*out.glob("patient*"), *out.glob("testing/patient*")]:
        if not (d.is_dir() and _PATIENT_DIR.fullmatch(d.name)):
            continue
        frame = re.compile(rf"{d.name}_frame\d{{2}}(_gt)?\.nii\.gz")
        found += [
            f.relative_to(out).as_posix()
            for f in d.iterdir()
            if f.is_file() and (f.name == "Info.cfg" or frame.fullmatch(f.name))
        ]
    return found


def write_cohort(
    out: str | os.PathLike,
    patients: int = 100,
    seed: int = 0,
    group_order: str = "interleaved",
    force: bool = False,
    workers: int | None = None,
    test_patients: int = 0,
) -> Path:
    """Write a phantom cohort to ``out`` (built in a temporary folder, then moved in file by file).

    If ``out`` already holds the same cohort (same ``phantom.json``) nothing is done; a different cohort is
    an :class:`InputError` unless ``force``, which replaces the earlier phantom's files only (anything else in
    ``out`` stays); any other non-empty folder is an :class:`InputError`.
    ``test_patients``: patients ``patients + 1 …`` (each a pure function of the seed and its number, like the
    training ones) written to ``out/testing/``.
    """
    from suite.atomic import suite_outputs, write_json_atomic
    from suite.paths import output_folder

    out = output_folder(out, "OUT")
    if patients < 1 or patients > 999:
        raise InputError(f"--patients {patients}: must be between 1 and 999")
    if test_patients < 0 or patients + test_patients > 999:
        raise InputError(
            f"--test-patients {test_patients}: must be 0 or more, with at most 999 patients in all "
            "(patient numbers have three digits)"
        )
    spec = PhantomSpec(patients=patients, seed=seed, group_order=group_order, test_patients=test_patients)
    total = patients + test_patients
    groups = [patient_group(k, group_order) for k in range(1, total + 1)]
    marker = out / "phantom.json"
    if out.exists():
        if marker.is_file():
            try:
                old = json.loads(marker.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            if isinstance(old, dict) and {"test_patients": 0, **old} == asdict(spec):  # older: no test
                log.info(
                    "phantom %s already holds this cohort (%d patients, seed %d): skipped",
                    out,
                    patients,
                    seed,
                )
                return out
            if not force:
                raise InputError(
                    f"{out}: holds a different phantom cohort ({old}); use --force to replace it "
                    "or choose another folder"
                )
        elif any(out.iterdir()):
            raise InputError(f"{out}: exists and is not a phantom cohort; choose a new or empty folder")
    workers = workers or min(os.cpu_count() or 1, 8)
    # --force replaces only what the suite wrote (its outputs manifest, or a cohort of an older version by the
    # names it writes); anything else in OUT, a user's notes or analysis, stays
    with suite_outputs(out, "OUT", adopt=_cohort_files(out)) as tmp:
        folder = {k: str(tmp if k <= patients else tmp / "testing") for k in range(1, total + 1)}
        jobs = [(k, seed, groups[k - 1], folder[k]) for k in range(1, total + 1)]
        if workers > 1 and total > 2:
            import multiprocessing as mp

            # forkserver/spawn: never fork a caller that may hold threads (torch, Ray, gRPC)
            ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                list(ex.map(_write_patient, jobs, chunksize=max(1, total // (4 * workers))))
        else:
            for j in jobs:
                _write_patient(j)
        write_json_atomic(tmp / "phantom.json", asdict(spec))
    kept = out / "testing"
    if not test_patients and kept.is_dir():
        log.warning(
            "%s: kept (it holds files the suite did not write); `suite prepare %s` takes testing/ as the "
            "test split: move it away to prepare the training patients only",
            kept,
            out,
        )
    log.info("wrote %d phantom patients (+%d test patients in testing/) to %s", patients, test_patients, out)
    return out
