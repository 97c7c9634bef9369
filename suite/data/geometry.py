"""The prepared grid and the original one: resampling of slice stacks, the crop box, and the way back.

``suite prepare`` takes each volume ``(X, Y, Z)`` to slices ``(Z, X, Y)``, keeps the central ``crop`` box of
each slice (:func:`crop_box`) and resizes it to ``size x size`` (:func:`resize_stack`). What it records to
undo that (``manifest.json``'s volume records and ``originals.npz``) is a :class:`VolumeGeometry`;
:func:`probabilities_to_original` is the one way back of a network's prediction from slices at any
resolution to the original matrix (class probabilities resampled, then the arg-max), shared by the held-out
evaluation (metrics against the original labels) and ``suite export`` (NIfTI files);
:func:`to_original_geometry` takes back a label map that has no probabilities behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from suite.errors import InputError

ORIGINALS = "originals.npz"  # per volume: the original label map and the image's NIfTI header


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


def crop_box(h: int, w: int, crop: float) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of the central ``crop`` fraction of an ``h x w`` slice (at least one
    pixel kept)."""
    ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
    top, left = (h - ch) // 2, (w - cw) // 2
    return top, top + ch, left, left + cw


def center_crop(arr: np.ndarray, crop: float) -> np.ndarray:
    """The central ``crop`` fraction of each in-plane axis of ``(N, H, W)`` (:func:`crop_box`)."""
    if crop == 1.0:
        return arr
    top, bottom, left, right = crop_box(arr.shape[1], arr.shape[2], crop)
    return arr[:, top:bottom, left:right]


@dataclass(frozen=True)
class VolumeGeometry:
    """Where one prepared volume came from: its image file's name (``patient001_frame01``), original matrix
    ``(X, Y, Z)``, voxel spacing (mm), crop box in the ``(X, Y)`` plane and, from preparations that recorded
    them, the image's affine and NIfTI header bytes."""

    volume: str
    image_name: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    box: tuple[int, int, int, int]
    affine: np.ndarray | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any], crop: float) -> VolumeGeometry:
        """From a ``manifest.json`` volume record (older records lack the box and name: derived)."""
        x, y, z = (int(v) for v in record["shape"])
        box = record.get("crop_box") or crop_box(x, y, crop)
        name = record.get("image_name") or f"{record['patient']}_frame{int(record['frame_number']):02d}"
        affine = record.get("affine")
        return cls(
            volume=str(record["volume"]),
            image_name=str(name),
            shape=(x, y, z),
            spacing=(float(record["spacing"][0]), float(record["spacing"][1]), float(record["spacing"][2])),
            box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])),
            affine=None if affine is None else np.asarray(affine, dtype=np.float64),
        )


def probabilities_to_original(probs: np.ndarray, geom: VolumeGeometry) -> np.ndarray:
    """Class probabilities ``(Z, C, S, S)`` on the prepared grid → the arg-max channel ``(X, Y, Z)`` (uint8)
    on the original matrix: the way back of a network's prediction (the evaluation, ``suite export``).

    Each channel is resampled bilinearly (half-pixel centres, as the forward resize of the images) to the
    crop box and the arg-max is taken there, as nnU-Net's export does; outside the box, channel 0 (the crop
    removed only background from the network's view). Taking the arg-max first and the label map back by
    nearest neighbour moves every boundary by up to half a prepared pixel (0.6-0.9 mm at 256 on ACDC), which
    biases HD95 and ASSD. One channel at a time in float32, with a running maximum: a 256² volume of 20
    slices holds two channels of the original matrix, not all ``C``.
    """
    z = geom.shape[2]
    if probs.ndim != 4 or probs.shape[0] != z:
        raise ValueError(f"{geom.volume}: {probs.shape} probabilities for a volume of {z} slices")
    top, bottom, left, right = geom.box
    box = (bottom - top, right - left)
    best = resize_stack(probs[:, 0], box, "linear")
    arg = np.zeros(best.shape, dtype=np.uint8)
    for c in range(1, probs.shape[1]):
        p = resize_stack(probs[:, c], box, "linear")
        higher = p > best  # strictly: a tie keeps the lower channel, as argmax does
        arg[higher] = c
        np.maximum(best, p, out=best)
    return _uncrop(arg, geom)


def to_original_geometry(slices: np.ndarray, geom: VolumeGeometry) -> np.ndarray:
    """A label map ``(Z, S, S)`` on the prepared grid (any ``S``) → ``(X, Y, Z)`` on the original matrix, for
    labels that have no probabilities behind them (a network's prediction goes back through
    :func:`probabilities_to_original`).

    Nearest-neighbour (half-pixel centres) back to the crop box, zeros outside it (the crop removed only
    background from the network's view), so the map keeps its values. Exact where the forward resize was
    (e.g. an integer down-scaling of a label constant on blocks).
    """
    z = geom.shape[2]
    if slices.ndim != 3 or slices.shape[0] != z:
        raise ValueError(f"{geom.volume}: {slices.shape} slices for a volume of {z} slices")
    top, bottom, left, right = geom.box
    return _uncrop(resize_stack(slices, (bottom - top, right - left), "nearest"), geom)


def _uncrop(inside: np.ndarray, geom: VolumeGeometry) -> np.ndarray:
    """``(Z, h, w)`` values of the crop box → ``(X, Y, Z)`` on the original matrix, zeros outside the box."""
    top, bottom, left, right = geom.box
    out = np.zeros((geom.shape[2], geom.shape[0], geom.shape[1]), dtype=inside.dtype)
    out[:, top:bottom, left:right] = inside
    return np.ascontiguousarray(np.moveaxis(out, 0, 2))


def prepare_command(prepared: Path) -> str:
    """The ``suite prepare`` command that rebuilds the prepared dataset holding ``prepared`` (its root, or
    its ``test/`` split) exactly as it was made: the dataset root, never the test split (that would nest a new
    dataset inside it), with the recorded source and options (without them ``--force`` would prepare at the
    defaults, under another data hash, and every run trained on the old one would refuse it)."""
    import json

    prepared = Path(prepared)
    root = prepared
    try:
        manifest = json.loads((prepared / "manifest.json").read_text())
        if manifest.get("role") == "test":
            root = prepared.parent
            manifest = json.loads((root / "manifest.json").read_text())
        src = str(manifest["source"])
        opts = manifest.get("options", {})
        flags = f" --size {int(opts['size'])} --crop {opts['crop']} --split-seed {int(opts['split_seed'])}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        src, flags = "SRC", " --size SIZE --crop CROP"
    return f"suite prepare {src} {root}{flags} --force"


class Originals:
    """``originals.npz`` of a prepared dataset: each volume's original label map and NIfTI header bytes.

    Read lazily, one array at a time, without pickle; a dataset prepared before it existed, or a damaged
    file, is refused with the command that rebuilds it (:func:`prepare_command`).
    """

    def __init__(self, prepared: Path) -> None:
        self.path = Path(prepared) / ORIGINALS
        if not self.path.is_file():
            raise InputError(
                f"{self.path}: missing (the dataset was prepared by an older version, or the file was "
                f"removed); rerun `{prepare_command(Path(prepared))}` to record the original geometry"
            )
        try:
            self._npz = np.load(self.path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - zipfile, zlib and numpy raise many types for a damaged file
            raise self._damaged(e) from None
        if not hasattr(self._npz, "files"):  # np.load of a plain .npy: not the suite's archive
            raise self._damaged(ValueError("not an .npz archive"))

    def _damaged(self, e: Exception) -> InputError:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        return InputError(
            f"{self.path}: unreadable ({reason}); rerun `{prepare_command(self.path.parent)}` to rebuild it"
        )

    def _array(self, key: str) -> np.ndarray:
        try:
            return np.asarray(self._npz[key])
        except KeyError:
            raise InputError(
                f"{self.path}: has no {key} (it does not match manifest.json); rerun "
                f"`{prepare_command(self.path.parent)}` to rebuild it"
            ) from None
        except Exception as e:  # noqa: BLE001 - a member truncated or corrupt inside the archive
            raise self._damaged(e) from None

    def label(self, volume: str) -> np.ndarray:
        return self._array(f"label_{volume}")

    def header(self, volume: str) -> bytes:
        return bytes(self._array(f"header_{volume}").astype(np.uint8).tobytes())

    def close(self) -> None:
        self._npz.close()
