"""A phantom cohort on disk in the ACDC release layout: patient groups, the NIfTI files, ``write_cohort``.

``patientXXX/patientXXX_frameNN.nii.gz`` (int16) and ``_gt`` (uint8 labels) for the ED and ES frames, with the
pixel spacing in the header, and ``Info.cfg``; ``phantom.json`` beside the patient folders records what was
asked (``PhantomSpec``), so asking again for the same cohort does nothing.
"""

from __future__ import annotations

import json
import logging
import os
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


def write_cohort(
    out: str | os.PathLike,
    patients: int = 100,
    seed: int = 0,
    group_order: str = "interleaved",
    force: bool = False,
    workers: int | None = None,
) -> Path:
    """Write a phantom cohort to ``out`` atomically (built in a temporary folder beside it, then renamed).

    If ``out`` already holds the same cohort (same ``phantom.json``) nothing is done; a different cohort or
    any other folder is an :class:`InputError` unless ``force`` (which only replaces an earlier phantom).
    """
    from suite.atomic import atomic_dir, write_json_atomic

    out = Path(out)
    if patients < 1 or patients > 999:
        raise InputError(f"--patients {patients}: must be between 1 and 999")
    spec = PhantomSpec(patients=patients, seed=seed, group_order=group_order)
    groups = [patient_group(k, group_order) for k in range(1, patients + 1)]
    marker = out / "phantom.json"
    if out.exists():
        if marker.is_file():
            try:
                old = json.loads(marker.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            if old == asdict(spec):
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
    jobs = [(k, seed, groups[k - 1], "") for k in range(1, patients + 1)]
    with atomic_dir(out) as tmp:
        jobs = [(k, s, g, str(tmp)) for k, s, g, _ in jobs]
        if workers > 1 and patients > 2:
            import multiprocessing as mp

            # forkserver/spawn: never fork a caller that may hold threads (torch, Ray, gRPC)
            ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                list(ex.map(_write_patient, jobs, chunksize=max(1, patients // (4 * workers))))
        else:
            for j in jobs:
                _write_patient(j)
        write_json_atomic(tmp / "phantom.json", asdict(spec))
    log.info("wrote %d phantom patients to %s", patients, out)
    return out
