"""``suite prepare``: ACDC-format folder -> 2-D slices stored as memory-mappable arrays.

For every patient, the ED and ES frames named in ``Info.cfg`` are read and validated
(:mod:`suite.data.acdc`), each 3-D image is min-max normalised over the whole volume (as the authors do:
``norm_arr``), and every slice is resized to ``size x size`` (bilinear with half-pixel centres for the image,
nearest for the labels; no anti-aliasing, like ``skimage.transform.resize(..., anti_aliasing=False)``). The
image is quantised to uint8 *after* resizing (the authors quantise before and truncate after: at most one grey
level apart). Output, staged in a temporary folder and moved into ``OUT`` only when complete::

    OUT/images.npy      uint8 (N, size, size)  per-volume min-max -> 0..255
    OUT/labels.npy      uint8 (N, size, size)  0 bg, 1 RV, 2 myocardium, 3 LV cavity (the target)
    OUT/manifest.json   patients, volumes (slice ranges, spacings), per-slice LV areas, data_hash, options
    OUT/splits.json     the paper split and effective counts (suite.data.splits)
    OUT/originals.npz   each volume's original label map and image header (suite.data.geometry)
    OUT/test/           the held-out test split (SRC/testing, when there is one): the same files, its own
                        data_hash (the test hash), no split (suite.data.test_split)

The key (``data_hash``) hashes the bytes of every input file used, the options and the format version: a
second ``prepare`` with the same inputs and options finds the key in ``OUT/manifest.json`` and does nothing.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from suite.data import acdc
from suite.data.geometry import ORIGINALS, center_crop, crop_box, resize_stack, to_uint8
from suite.data.splits import PAPER_SEED, splits_document
from suite.data.test_split import TEST_DIR, TESTING, UNAVAILABLE, scan_testing, testing_root
from suite.errors import InputError

log = logging.getLogger("suite.data.prepare")

FORMAT_VERSION = 1
DEFAULT_SIZE = 256
FILES = ("images.npy", "labels.npy", "manifest.json", "splits.json", ORIGINALS)


@dataclass(frozen=True)
class PrepareResult:
    path: Path
    data_hash: str
    skipped: bool
    seconds: float
    n_slices: int
    test_hash: str | None = None  # the test split's data_hash (OUT/test), None without one
    test_state: str | None = None  # beside an up-to-date training dataset: what was done to the test split


def input_key(patients: list[acdc.PatientRef], size: int, split_seed: int, crop: float = 1.0) -> str:
    """Content key of a preparation: bytes of Info.cfg and the four frame files of every patient + options."""
    h = hashlib.sha256()
    opts: dict[str, float] = {"format": FORMAT_VERSION, "size": size, "split_seed": split_seed}
    if crop != 1.0:  # keys of uncropped preparations stay as they were
        opts["crop"] = crop
    h.update(json.dumps(opts, sort_keys=True).encode())
    for p in patients:
        h.update(p.pid.encode())
        for f in [p.path / "Info.cfg"] + [x for fr in p.frames for x in (fr.image, fr.label)]:
            h.update(f.name.encode())
            try:
                _hash_file(h, f)
            except OSError as e:
                raise InputError(
                    f"{f}: cannot read ({e.strerror}); check the file and its permissions"
                ) from None
    return h.hexdigest()[:16]


def _existing_key(out: Path) -> str | None:
    try:
        return json.loads((out / "manifest.json").read_text()).get("data_hash")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def prepare(
    src: str | os.PathLike,
    out: str | os.PathLike,
    size: int = DEFAULT_SIZE,
    split_seed: int = PAPER_SEED,
    force: bool = False,
    crop: float = 1.0,
) -> PrepareResult:
    """Prepare ``src`` (ACDC-format folder) into ``out``; a no-op when ``out`` already holds the same key.

    ``crop`` < 1 keeps only the central fraction of the field of view along each in-plane axis before resizing
    (a heart-centred crop, common in ACDC pipelines: the LV covers more pixels at a given ``size``). Slices
    whose LV the crop cuts are counted and logged; the LV areas in the manifest are those of the cropped
    slices.

    Any bad input raises :class:`InputError` before ``out`` is touched (the work happens in a temporary
    folder that is removed on error). ``force`` rebuilds even when the key matches, and replaces an ``out``
    that holds a prepared dataset of other inputs or options (never an unrelated folder). Only the files the
    suite wrote in ``out`` are ever replaced or removed: a user's file beside them stays.
    """
    from suite.atomic import suite_outputs
    from suite.paths import output_folder

    t0 = time.perf_counter()
    if size < 8 or size > 2048:
        raise InputError(f"--size {size}: must be between 8 and 2048 pixels")
    if not 0.1 <= crop <= 1.0:
        raise InputError(f"--crop {crop}: must be a fraction of the field of view between 0.1 and 1.0")
    out = output_folder(out, "OUT")
    if out.exists() and out.resolve() in (Path(src).resolve(), (Path(src) / "training").resolve()):
        raise InputError(
            f"{out}: is the source folder SRC; give another folder for the prepared dataset "
            f"(e.g. {Path(src).resolve()}-prepared)"
        )
    old = _existing_key(out) if out.exists() else None
    if out.exists() and old is None and not _ours(out) and any(out.iterdir()):
        raise InputError(f"{out}: exists and is not a prepared dataset; choose a new or empty folder")
    patients = acdc.scan(src)
    test_patients = scan_testing(src, patients)
    key = input_key(patients, size, split_seed, crop)
    # the test split's own key: the training data_hash (and every run id) never depends on it
    test_key = input_key(test_patients, size, split_seed, crop) if test_patients else None
    if out.exists():
        damage = _damage(out) if old == key and not force else None
        if old == key and not force and damage is None:
            test_state = _update_test_split(src, out, test_patients, test_key, size, split_seed, crop)
            log.info(
                "prepared dataset %s is up to date: %s (data_hash %s)", out, test_state or "skipped", key
            )
            seconds = time.perf_counter() - t0
            return PrepareResult(out, key, test_state is None, seconds, _n_slices(out), test_key, test_state)
        if damage:
            log.warning("prepared dataset %s: %s; rebuilding it from the inputs", out, damage)
        if old is not None and old != key and not force:
            raise InputError(
                f"{out}: holds a prepared dataset of other inputs or options (data_hash {old}, this one "
                f"{key}); use --force to replace it or choose another folder"
            )

    # only the suite's own files are replaced or removed: anything else in OUT stays. Both splits are staged
    # before either moves in (the test split is moved in first)
    with suite_outputs(out, "OUT", adopt=FILES if old is not None else ()) as tmp:
        n_slices = _write_prepared(src, tmp, patients, key, size, split_seed, crop, "training")
        _update_test_split(src, out, test_patients, test_key, size, split_seed, crop, force=True)
    dt = time.perf_counter() - t0
    log.info(
        "prepared %d training patients (data_hash %s)%s into %s in %.1f s",
        len(patients),
        key,
        f" and {len(test_patients)} test patients (test hash {test_key})" if test_patients else "",
        out,
        dt,
    )
    return PrepareResult(out, key, False, dt, n_slices, test_key)


def _ours(out: Path) -> bool:
    """Whether the suite's outputs manifest in ``out`` lists a prepared dataset (one whose manifest.json is
    missing or unreadable: damaged, rebuilt rather than refused as an unrelated folder)."""
    from suite.atomic import recorded_outputs

    return "manifest.json" in recorded_outputs(out)


def _update_test_split(
    src: str | os.PathLike,
    out: Path,
    test_patients: list[acdc.PatientRef],
    test_key: str | None,
    size: int,
    split_seed: int,
    crop: float,
    force: bool = False,
) -> str | None:
    """Bring ``OUT/test`` in line with ``SRC/testing``: what was done ("test split rewritten" or "test split
    removed", when SRC has no testing/ folder any more), or None when it already was (``force``: rewrite it
    anyway). Only the files the suite wrote there are replaced or removed."""
    from suite.atomic import remove_suite_outputs, suite_outputs

    test_out = out / TEST_DIR
    legacy = FILES if (test_out / "manifest.json").is_file() else ()  # written before the outputs manifest
    if not test_patients:
        if not test_out.is_dir():
            return None
        foreign = remove_suite_outputs(test_out, adopt=legacy)
        if foreign:
            raise InputError(
                f"{test_out / foreign[0]}: not written by the suite, in the prepared test split that is to "
                f"be removed ({src} has no {TESTING}/ folder any more): move that file away, or put the "
                f"{TESTING}/ folder back"
            )
        log.warning("%s: SRC has no %s/ folder any more; removed the prepared test split", test_out, TESTING)
        return "test split removed"
    if not force and _existing_key(test_out) == test_key and _damage(test_out) is None:
        return None
    assert test_key is not None  # made with test_patients
    with suite_outputs(test_out, "OUT", adopt=legacy) as tmp:
        root = testing_root(src) or Path(src)
        _write_prepared(root, tmp, test_patients, test_key, size, split_seed, crop, "test")
    return "test split rewritten"


def _write_prepared(
    src: str | os.PathLike,
    tmp: Path,
    patients: list[acdc.PatientRef],
    key: str,
    size: int,
    split_seed: int,
    crop: float,
    role: str,
) -> int:
    """Write one prepared dataset (arrays, originals, manifest, splits) of ``patients`` into ``tmp``; the
    number of slices. ``role``: training (with the paper's splits) or test (no split: never trained on)."""
    from suite.atomic import write_json_atomic

    tmp.mkdir(parents=True, exist_ok=True)
    # headers first: total slice count to pre-allocate the arrays
    shapes = {}
    for p in patients:
        for fr in p.frames:
            shape = acdc.frame_shape(fr)
            if len(shape) != 3:
                raise InputError(
                    f"{fr.image}: image is {len(shape)}-D with shape {shape}; expected 3-D frame data"
                )
            shapes[fr.volume] = shape
    n_slices = sum(s[2] for s in shapes.values())

    images = np.lib.format.open_memmap(
        tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(n_slices, size, size)
    )
    labels = np.lib.format.open_memmap(
        tmp / "labels.npy", mode="w+", dtype=np.uint8, shape=(n_slices, size, size)
    )
    volumes: list[dict[str, Any]] = []
    slice_vol: list[int] = []
    slice_idx: list[int] = []
    area_px: list[int] = []
    area_mm2: list[float] = []
    start, lv_cut = 0, 0
    originals: dict[str, np.ndarray] = {}  # what goes back to the original geometry needs
    from suite.log import progress

    for p in progress(patients, desc="prepare", total=len(patients)):
        for fr in p.frames:
            f = acdc.load_frame(fr)
            if f.image.shape != shapes[fr.volume]:
                raise InputError(
                    f"{fr.image}: header shape {shapes[fr.volume]} differs from the data "
                    f"{f.image.shape}; replace the file"
                )
            nx, ny, nz = f.image.shape
            lo, hi = float(f.image.min()), float(f.image.max())
            norm = (f.image - lo) / (hi - lo)
            lab_full = np.moveaxis(f.label, 2, 0)
            lab_crop = center_crop(lab_full, crop)
            if crop != 1.0:
                lv_cut += int(
                    (
                        (lab_full == acdc.LV_LABEL).sum(axis=(1, 2))
                        != (lab_crop == acdc.LV_LABEL).sum(axis=(1, 2))
                    ).sum()
                )
            img = resize_stack(center_crop(np.moveaxis(norm, 2, 0), crop), size, "linear")
            lab = resize_stack(lab_crop, size, "nearest")
            stop = start + nz
            images[start:stop] = to_uint8(img)
            labels[start:stop] = lab
            sx, sy, sz = f.spacing
            psx, psy = sx * lab_crop.shape[1] / size, sy * lab_crop.shape[2] / size
            px = (lab == acdc.LV_LABEL).sum(axis=(1, 2)).astype(np.int64)
            vi = len(volumes)
            volumes.append(
                {
                    "volume": fr.volume,
                    "patient": p.pid,
                    "frame": fr.frame,
                    "frame_number": fr.number,
                    "group": p.group,
                    "start": start,
                    "stop": stop,
                    "shape": [nx, ny, nz],
                    "spacing": [sx, sy, sz],
                    "spacing_prepared": [psx, psy, sz],
                    "intensity_range": [lo, hi],
                    "lv_volume_ml": float((f.label == acdc.LV_LABEL).sum() * sx * sy * sz / 1000.0),
                    "image_name": fr.image.name.split(".nii")[0],
                    "crop_box": list(crop_box(nx, ny, crop)),
                    "affine": None if f.affine is None else f.affine.tolist(),
                }
            )
            originals[f"label_{fr.volume}"] = f.label
            originals[f"header_{fr.volume}"] = np.frombuffer(f.header, dtype=np.uint8)
            slice_vol += [vi] * nz
            slice_idx += list(range(nz))
            area_px += px.tolist()
            area_mm2 += (px * psx * psy).round(3).tolist()
            start = stop
    if lv_cut:
        log.warning(
            "--crop %.2f cuts the LV of %d of %d slices (their LV areas are those of the crop)",
            crop,
            lv_cut,
            n_slices,
        )
    images.flush()
    labels.flush()
    del images, labels
    with open(tmp / ORIGINALS, "wb") as fh:
        np.savez_compressed(fh, **originals)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    ids = [p.pid for p in patients]
    splits: dict[str, Any] = {"n_patients": len(ids), "paper_seed": split_seed, "unavailable": UNAVAILABLE}
    if role == "training":
        try:
            splits = splits_document(ids, split_seed)
        except InputError as e:
            log.warning("%s: no splits written (%s)", src, e)
            splits = {"n_patients": len(ids), "paper_seed": split_seed, "unavailable": str(e)}
    manifest = {
        "format": FORMAT_VERSION,
        "data_hash": key,
        "role": role,
        "size": size,
        "source": str(Path(src).resolve()),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": {
            "size": size,
            "split_seed": split_seed,
            "crop": crop,
            "lv_cut_slices": lv_cut,
            "normalise": "per-volume min-max -> 0..255",
            "resize": "bilinear (image), nearest-exact (labels), half-pixel centres, no anti-aliasing",
        },
        "n_patients": len(patients),
        "n_volumes": len(volumes),
        "n_slices": n_slices,
        "labels": {str(k): v for k, v in acdc.LABELS.items()},
        "target_label": acdc.LV_LABEL,
        "patients": [
            {
                "id": p.pid,
                "group": p.group,
                "ed": p.ed,
                "es": p.es,
                "height": p.height,
                "weight": p.weight,
                "nb_frame": p.nb_frame,
            }
            for p in patients
        ],
        "volumes": volumes,
        "slices": {
            "volume": slice_vol,
            "slice_index": slice_idx,
            "lv_area_px": area_px,
            "lv_area_mm2": area_mm2,
        },
    }
    write_json_atomic(tmp / "splits.json", splits)
    manifest["files"] = {f: file_digest(tmp / f) for f in CHECKED_FILES}
    (tmp / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":")) + "\n")
    log.info(
        "%s split: %d patients, %d volumes, %d slices at %dx%d",
        role,
        len(patients),
        len(volumes),
        n_slices,
        size,
        size,
    )
    return n_slices


# what "up to date" verifies besides the input key: the data_hash names the inputs and options, not the bytes
# written, so a truncated or edited array would otherwise pass as prepared (sha256 of 272 MB: ~1 s)
CHECKED_FILES = ("images.npy", "labels.npy", "splits.json", ORIGINALS)


def _hash_file(h: Any, path: Path) -> None:
    """Feed the bytes of ``path`` into the hash ``h``, in 1 MiB blocks."""
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)


def file_digest(path: Path) -> dict[str, int | str]:
    """Size and sha256 of one file."""
    h = hashlib.sha256()
    _hash_file(h, path)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def _damage(out: Path) -> str | None:
    """Why the prepared files in ``out`` do not match its manifest (None when they all do)."""
    missing = [f for f in FILES if not (out / f).exists()]
    if missing:
        return f"{missing[0]} is missing"
    try:
        recorded = json.loads((out / "manifest.json").read_text()).get("files")
    except (OSError, ValueError):
        return "manifest.json is unreadable"
    if not isinstance(recorded, dict):
        return "manifest.json records no file checksums (written by an older version)"
    for name in CHECKED_FILES:
        want = recorded.get(name) or {}
        size = (out / name).stat().st_size
        if size != want.get("bytes"):
            return f"{name} has {size} bytes, the manifest says {want.get('bytes')} (truncated or replaced)"
        if file_digest(out / name)["sha256"] != want.get("sha256"):
            return f"{name} differs from the checksum in the manifest (edited in place)"
    return None


def _n_slices(out: Path) -> int:
    try:
        return int(json.loads((out / "manifest.json").read_text())["n_slices"])
    except (OSError, KeyError, ValueError, json.JSONDecodeError):
        return 0
