"""``suite prepare``: ACDC-format folder -> 2-D slices stored as memory-mappable arrays.

For every patient, the ED and ES frames named in ``Info.cfg`` are read and validated
(:mod:`suite.data.acdc`), each 3-D image is min-max normalised over the whole volume (as the authors do:
``norm_arr``), and every slice is resized to ``size x size`` (bilinear with half-pixel centres for the image,
nearest for the labels; no anti-aliasing, like ``skimage.transform.resize(..., anti_aliasing=False)``). The
image is quantised to uint8 *after* resizing (the authors quantise before and truncate after: at most one grey
level apart). Output, written into a temporary folder beside ``OUT`` and renamed only when complete::

    OUT/images.npy      uint8 (N, size, size)  per-volume min-max -> 0..255
    OUT/labels.npy      uint8 (N, size, size)  0 bg, 1 RV, 2 myocardium, 3 LV cavity (the target)
    OUT/manifest.json   patients, volumes (slice ranges, spacings), per-slice LV areas, data_hash, options
    OUT/splits.json     the paper split and effective counts (suite.data.splits)

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
from suite.data.splits import PAPER_SEED, splits_document
from suite.errors import InputError

log = logging.getLogger("suite.data.prepare")

FORMAT_VERSION = 1
DEFAULT_SIZE = 256
FILES = ("images.npy", "labels.npy", "manifest.json", "splits.json")


@dataclass(frozen=True)
class PrepareResult:
    path: Path
    data_hash: str
    skipped: bool
    seconds: float
    n_slices: int


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``i0, i1`` and weight ``w1`` of 1-D linear interpolation, half-pixel centres, clamped.

    Identical to ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)``
    along one axis: ``src = max(0, (dst + 0.5) * n_in / n_out - 0.5)``.
    """
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel, nearest with half-pixel centres (torch ``nearest-exact``)."""
    return np.minimum(np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_stack(arr: np.ndarray, size: int | tuple[int, int], kind: str) -> np.ndarray:
    """Resize a stack of 2-D slices ``(N, H, W)`` to ``(N, size, size)`` (pure NumPy, no torch needed).

    ``kind="linear"``: bilinear, half-pixel centres, edges clamped, no anti-aliasing (as
    ``F.interpolate(mode="bilinear", align_corners=False)``), float32 out. ``kind="nearest"``: nearest
    neighbour with half-pixel centres (``nearest-exact``), same dtype out. Separable gathers, no BLAS.
    """
    oh, ow = (size, size) if isinstance(size, int) else tuple(size)
    n, h, w = arr.shape
    if kind == "linear":
        if (h, w) == (oh, ow):
            return arr.astype(np.float32)
        # separable gathers (no BLAS: its threads stall on a busy machine)
        a = arr.astype(np.float32, copy=False)
        j0, j1, wj = _linear_taps(w, ow)
        cols = a[:, :, j0] * (1.0 - wj) + a[:, :, j1] * wj  # (n, h, ow)
        i0, i1, wi = _linear_taps(h, oh)
        return cols[:, i0, :] * (1.0 - wi)[:, None] + cols[:, i1, :] * wi[:, None]
    if kind == "nearest":
        if (h, w) == (oh, ow):
            return arr.copy()
        return arr[:, _nearest_index(h, oh)][:, :, _nearest_index(w, ow)]
    raise ValueError(f"kind {kind!r}: expected linear or nearest")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 0..255 (rounded, clipped)."""
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


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


def center_crop(arr: np.ndarray, crop: float) -> np.ndarray:
    """The central ``crop`` fraction of each in-plane axis of ``(N, H, W)`` (at least one pixel kept)."""
    if crop == 1.0:
        return arr
    _, h, w = arr.shape
    ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
    top, left = (h - ch) // 2, (w - cw) // 2
    return arr[:, top : top + ch, left : left + cw]


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
    that holds a prepared dataset of other inputs or options (never an unrelated folder).
    """
    from suite.atomic import atomic_dir, write_json_atomic

    t0 = time.perf_counter()
    if size < 8 or size > 2048:
        raise InputError(f"--size {size}: must be between 8 and 2048 pixels")
    if not 0.1 <= crop <= 1.0:
        raise InputError(f"--crop {crop}: must be a fraction of the field of view between 0.1 and 1.0")
    out = Path(out)
    old = _existing_key(out) if out.exists() else None
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out}: is a file; choose a folder path for the prepared dataset")
        if old is None and any(out.iterdir()):
            raise InputError(f"{out}: exists and is not a prepared dataset; choose a new or empty folder")
    patients = acdc.scan(src)
    key = input_key(patients, size, split_seed, crop)
    if out.exists():
        damage = _damage(out) if old == key and not force else None
        if old == key and not force and damage is None:
            log.info("prepared dataset %s is up to date (data_hash %s): skipped", out, key)
            return PrepareResult(out, key, True, time.perf_counter() - t0, _n_slices(out))
        if damage:
            log.warning("prepared dataset %s: %s; rebuilding it from the inputs", out, damage)
        if old is not None and old != key and not force:
            raise InputError(
                f"{out}: holds a prepared dataset of other inputs or options (data_hash {old}, this one "
                f"{key}); use --force to replace it or choose another folder"
            )

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

    with atomic_dir(out) as tmp:
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
                    }
                )
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
        ids = [p.pid for p in patients]
        try:
            splits = splits_document(ids, split_seed)
        except InputError as e:
            log.warning("%s: no splits written (%s)", out, e)
            splits = {"n_patients": len(ids), "paper_seed": split_seed, "unavailable": str(e)}
        manifest = {
            "format": FORMAT_VERSION,
            "data_hash": key,
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
    dt = time.perf_counter() - t0
    log.info(
        "prepared %d patients, %d volumes, %d slices at %dx%d into %s in %.1f s (data_hash %s)",
        len(patients),
        len(volumes),
        n_slices,
        size,
        size,
        out,
        dt,
        key,
    )
    return PrepareResult(out, key, False, dt, n_slices)


# what "up to date" verifies besides the input key: the data_hash names the inputs and options, not the bytes
# written, so a truncated or edited array would otherwise pass as prepared (sha256 of 272 MB: ~1 s)
CHECKED_FILES = ("images.npy", "labels.npy", "splits.json")


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
