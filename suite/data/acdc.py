"""Read and validate the official ACDC training layout.

The release (Bernard et al., IEEE TMI 2018) has one folder per patient::

    training/
      patient001/
        Info.cfg                     ED: 1 / ES: 12 / Group: DCM / Height: 184.0 / NbFrame: 30 / Weight: 95.0
        patient001_4d.nii.gz         (the whole cine sequence: ignored here)
        patient001_frame01.nii.gz    ED image  (int16, x × y × slices)
        patient001_frame01_gt.nii.gz ED labels (uint8: 0 background, 1 RV, 2 myocardium, 3 LV cavity)
        patient001_frame12.nii.gz    ES image
        patient001_frame12_gt.nii.gz ES labels

:func:`scan` checks the layout (cheap: folder names, ``Info.cfg``, the frame files exist) and
:func:`load_frame` checks one frame's content. Every problem raises :class:`~suite.errors.InputError` with
one line naming the file, the problem and the fix. Other files in the root (``MANDATORY_CITATION.md``, the
``testing`` folder, a ``phantom.json``) are ignored; anything *named* like a patient must be a well-formed
one.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from suite.errors import InputError

log = logging.getLogger("suite.data.acdc")

GROUPS = ("NOR", "DCM", "HCM", "MINF", "RV")
LABELS = {0: "background", 1: "RV cavity", 2: "myocardium", 3: "LV cavity"}
LV_LABEL = 3
_PATIENT_RE = re.compile(r"^patient(\d{3})$")
_LOOKS_LIKE_PATIENT = re.compile(r"^patient", re.IGNORECASE)


@dataclass(frozen=True)
class FrameRef:
    """One frame of one patient: where its image and label files are."""

    patient: str
    frame: str  # "ED" | "ES"
    number: int  # the frame number from Info.cfg (1-based, as in the file name)
    image: Path
    label: Path

    @property
    def volume(self) -> str:
        return f"{self.patient}_{self.frame}"


@dataclass(frozen=True)
class PatientRef:
    """A patient folder with its parsed ``Info.cfg``."""

    pid: str
    path: Path
    ed: int
    es: int
    group: str
    height: float | None
    weight: float | None
    nb_frame: int | None
    frames: tuple[FrameRef, FrameRef]  # (ED, ES)


@dataclass
class Frame:
    """The validated content of one frame: float32 image, uint8 labels, voxel spacing (mm)."""

    ref: FrameRef
    image: np.ndarray  # (X, Y, Z) float32, finite
    label: np.ndarray  # (X, Y, Z) uint8 in {0, 1, 2, 3}
    spacing: tuple[float, float, float]
    # the image's voxel-to-world affine and NIfTI header bytes: what an exported prediction carries over
    affine: np.ndarray | None = None
    header: bytes = b""


# ---------------------------------------------------------------------------------------------- layout
def resolve_root(src: str | os.PathLike) -> Path:
    """The folder holding the patient folders: ``src`` itself or its ``training`` sub-folder (release zip)."""
    root = Path(src)
    if not root.exists():
        raise InputError(
            f"{root}: folder does not exist; give the ACDC 'training' folder or a `suite phantom` output"
        )
    if not root.is_dir():
        raise InputError(f"{root}: is a file, not a folder; give the folder that holds patientXXX/ folders")
    has_patients = any(_LOOKS_LIKE_PATIENT.match(p.name) for p in root.iterdir())
    if not has_patients and (root / "training").is_dir():
        log.info("using %s/training (the release's training folder)", root)
        return root / "training"
    return root


def parse_info(path: Path) -> dict[str, str]:
    """Parse an ACDC ``Info.cfg`` (``Key: value`` lines) into a dict of strings."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        raise InputError(
            f"{path}: Info.cfg is missing; every patient folder needs the release's Info.cfg"
        ) from None
    except OSError as e:
        raise InputError(f"{path}: cannot read Info.cfg ({e.strerror}); check its permissions") from None
    info: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if ":" not in line:
            raise InputError(
                f"{path}:{lineno}: malformed line {line[:40]!r}; expected 'Key: value' like 'ED: 1'"
            )
        key, value = line.split(":", 1)
        info[key.strip()] = value.strip()
    return info


def _int_key(info: dict[str, str], key: str, path: Path) -> int:
    if key not in info:
        raise InputError(
            f"{path}: key '{key}' is missing; add a line '{key}: <frame number>' as in the ACDC release"
        )
    try:
        value = float(info[key])
        if not value.is_integer() or value < 1:
            raise ValueError
        return int(value)
    except ValueError:
        raise InputError(
            f"{path}: key '{key}' has value {info[key]!r}; expected a positive frame number"
        ) from None


def _opt_float(info: dict[str, str], key: str) -> float | None:
    try:
        return float(info[key]) if key in info else None
    except ValueError:
        return None


def _nifti(folder: Path, stem: str) -> Path:
    for ext in (".nii.gz", ".nii"):
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return folder / f"{stem}.nii.gz"


def scan(src: str | os.PathLike) -> list[PatientRef]:
    """Validate an ACDC-format folder's layout and return its patients sorted by ID.

    Raises :class:`InputError` for an empty folder, malformed or duplicate patient folders, a missing
    ``Info.cfg`` or ED/ES key, and a frame named in ``Info.cfg`` whose image or label file is absent.
    """
    root = resolve_root(src)
    seen: dict[str, Path] = {}
    real: dict[Path, Path] = {}
    patients: list[PatientRef] = []
    candidates = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if not _LOOKS_LIKE_PATIENT.match(entry.name):
            log.debug("ignoring %s (not a patient folder)", entry)
            continue
        if not _PATIENT_RE.match(entry.name.lower()):
            raise InputError(
                f"{entry}: malformed patient folder name; expected 'patient' + 3 digits (e.g. patient001), "
                "rename or remove it"
            )
        if not entry.is_dir():
            raise InputError(f"{entry}: is a file named like a patient folder; remove it or make it a folder")
        key = entry.name.lower()
        if key in seen:
            raise InputError(f"{entry}: duplicate patient folder (same ID as {seen[key]}); keep only one")
        resolved = entry.resolve()
        if resolved in real:
            raise InputError(
                f"{entry}: duplicate patient folder (links to the same data as {real[resolved]}); keep only "
                "one"
            )
        seen[key], real[resolved] = entry, entry
        candidates.append(entry)
    for entry in candidates:
        if entry.name != entry.name.lower():
            raise InputError(
                f"{entry}: patient folder name must be lower case like the release; rename it to "
                f"{entry.name.lower()}"
            )
        patients.append(_scan_patient(entry))
    if not patients:
        raise InputError(
            f"{root}: no patientXXX folders found (empty folder?); give the ACDC 'training' folder or run "
            "`suite phantom` to make a synthetic one"
        )
    return patients


def _scan_patient(folder: Path) -> PatientRef:
    pid = folder.name
    info_path = folder / "Info.cfg"
    if not info_path.is_file():
        raise InputError(
            f"{info_path}: Info.cfg is missing; every patient folder needs the release's Info.cfg"
        )
    info = parse_info(info_path)
    ed = _int_key(info, "ED", info_path)
    es = _int_key(info, "ES", info_path)
    nb = _opt_float(info, "NbFrame")
    frames = []
    for name, number in (("ED", ed), ("ES", es)):
        image = _nifti(folder, f"{pid}_frame{number:02d}")
        label = _nifti(folder, f"{pid}_frame{number:02d}_gt")
        for p, what in ((image, "image"), (label, "label")):
            if not p.exists():
                raise InputError(
                    f"{p}: {name} {what} file is missing (Info.cfg names frame {number}); restore it from "
                    "the release or fix 'ED'/'ES' in Info.cfg"
                )
            if not p.is_file():
                raise InputError(
                    f"{p}: is not a regular file; replace it with the NIfTI {what} of frame {number}"
                )
        frames.append(FrameRef(pid, name, number, image, label))
    group = info.get("Group", "")
    if group and group not in GROUPS:
        log.warning("%s: unknown Group %r (ACDC groups: %s)", info_path, group, ", ".join(GROUPS))
    return PatientRef(
        pid=pid,
        path=folder,
        ed=ed,
        es=es,
        group=group,
        height=_opt_float(info, "Height"),
        weight=_opt_float(info, "Weight"),
        nb_frame=int(nb) if nb else None,
        frames=(frames[0], frames[1]),
    )


# ---------------------------------------------------------------------------------------------- content
def _read_nifti(path: Path, what: str) -> tuple[np.ndarray, tuple[float, ...], Any]:
    import nibabel as nib

    try:
        img = cast("nib.spatialimages.SpatialImage", nib.load(str(path)))
        data = np.asarray(img.dataobj)
        zooms = tuple(float(z) for z in img.header.get_zooms())
        header = img.header
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(
            f"{path}: truncated or corrupt gzip ({type(e).__name__}); re-extract the file from the release"
        ) from None
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file is missing; restore it from the release") from None
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for unreadable files
        msg = _short(e, path)
        if _truncated_gzip(path):
            raise InputError(
                f"{path}: truncated or corrupt gzip; re-extract the file from the release"
            ) from None
        if "not a gzip" in msg.lower():
            raise InputError(
                f"{path}: not a gzip file although named .nii.gz; replace it with the release's file"
            ) from None
        if "gzip" in msg.lower() or "compressed" in msg.lower() or "end-of-stream" in msg.lower():
            raise InputError(
                f"{path}: truncated or corrupt gzip ({msg}); re-extract the file from the release"
            ) from None
        raise InputError(
            f"{path}: unreadable NIfTI {what} ({msg}); replace it with a valid .nii.gz file"
        ) from None
    return data, zooms, header


def load_frame(ref: FrameRef) -> Frame:
    """Read one frame's image and labels and check their content.

    Checks: readable NIfTI (and complete gzip), 3-D data, same shape, finite intensities (no NaN/inf), a
    non-constant image, label values in {0, 1, 2, 3}, positive finite voxel spacing.
    """
    image, zooms, header = _read_nifti(ref.image, "image")
    label, _, _ = _read_nifti(ref.label, "label")
    for arr, p, what in ((image, ref.image, "image"), (label, ref.label, "label")):
        if arr.ndim != 3:
            raise InputError(
                f"{p}: {what} is {arr.ndim}-D with shape {arr.shape}; expected 3-D (x, y, slices) frame data"
            )
    if image.shape != label.shape:
        raise InputError(
            f"{ref.label}: label shape {label.shape} does not match image shape {image.shape} "
            f"({ref.image.name}); use the label file of the same frame"
        )
    image = image.astype(np.float32, copy=False)
    if not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise InputError(f"{ref.image}: {bad} NaN/inf intensities; fix or replace the image")
    if float(image.max()) == float(image.min()):
        raise InputError(
            f"{ref.image}: image is constant ({float(image.min())}); replace it with the real frame"
        )
    if label.dtype.kind == "f":
        if not np.isfinite(label).all() or not np.array_equal(label, np.round(label)):
            raise InputError(f"{ref.label}: non-integer label values; labels must be 0, 1, 2 or 3")
    lmin, lmax = (label.min(), label.max()) if label.size else (0, 0)
    if lmin < 0 or lmax > 3:
        values = np.unique(label)
        extra = [v.item() for v in values if v not in (0, 1, 2, 3)][:5]
        raise InputError(
            f"{ref.label}: label values {extra} outside {{0, 1, 2, 3}} (0 bg, 1 RV, 2 myo, 3 LV); "
            "use the ACDC ground-truth file"
        )
    spacing = tuple(zooms[:3])
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"{ref.image}: invalid voxel spacing {zooms}; the header's pixdim must be positive")
    return Frame(
        ref=ref,
        image=image,
        label=label.astype(np.uint8, copy=False),
        spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        affine=np.asarray(header.get_best_affine(), dtype=np.float64),
        header=bytes(header.binaryblock),
    )


def frame_shape(ref: FrameRef) -> tuple[int, ...]:
    """The image shape from the header only (cheap), for pre-allocating the prepared arrays."""
    import nibabel as nib

    try:
        return tuple(int(s) for s in cast("nib.spatialimages.SpatialImage", nib.load(str(ref.image))).shape)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(
            f"{ref.image}: truncated or corrupt gzip ({type(e).__name__}); re-extract the file from the "
            "release"
        ) from None
    except Exception as e:  # noqa: BLE001
        msg = _short(e, ref.image)
        if _truncated_gzip(ref.image):
            raise InputError(
                f"{ref.image}: truncated or corrupt gzip; re-extract the file from the release"
            ) from None
        if "not a gzip" in msg.lower():
            raise InputError(
                f"{ref.image}: not a gzip file although named .nii.gz; replace it with the release's file"
            ) from None
        raise InputError(
            f"{ref.image}: unreadable NIfTI header ({msg}); replace it with a valid .nii.gz"
        ) from None


def _truncated_gzip(path: Path) -> bool:
    """True when ``path`` starts like gzip but its stream ends early or is corrupt (only on the error
    path)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                return False
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError):
        return True
    return False


def _short(e: BaseException, path: Path) -> str:
    """First line of an exception message without the (already named) file path."""
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    msg = msg.replace(f'"{path}"', "the file").replace(f"'{path}'", "the file").replace(str(path), "the file")
    return msg[:120]
