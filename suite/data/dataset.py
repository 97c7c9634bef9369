""":class:`PreparedData`: the prepared dataset as training code sees it (``PreparedData.open(path)``).

Opening memory-maps ``images.npy`` / ``labels.npy`` and reads the JSON manifest (milliseconds for 100
patients); nothing is decoded until used. Per-slice arrays (``patient``, ``frame``, ``slice_index``,
``volume``, ``spacing``, ``lv_area_px``, ``lv_area_mm2``, ``group``) are NumPy arrays aligned with the first
axis of ``images``. ``spacing`` is the pixel size *of the prepared grid* (the original in-plane spacing times
original/prepared matrix size; slice spacing unchanged), so ``lv_area_mm2 = lv_area_px * spacing[:, 0] *
spacing[:, 1]`` and a volume's LV volume in ml is ``sum(lv_area_mm2) * spacing[0, 2] / 1000``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from suite.data import splits as _splits
from suite.data.splits import Split
from suite.errors import InputError


@dataclass
class PreparedData:
    """An opened prepared dataset (see module docstring); create with :meth:`open`."""

    path: Path
    images: np.ndarray  # uint8 (N, S, S), memory-mapped
    labels: np.ndarray  # uint8 (N, S, S), memory-mapped, 0..3
    manifest: dict
    splits: dict
    patient: np.ndarray  # (N,) str
    frame: np.ndarray  # (N,) "ED" | "ES"
    slice_index: np.ndarray  # (N,) int
    volume: np.ndarray  # (N,) "patient001_ED"
    spacing: np.ndarray  # (N, 3) float mm, of the prepared grid
    lv_area_px: np.ndarray  # (N,) int64, LV cavity pixels at ``size``
    lv_area_mm2: np.ndarray  # (N,) float
    group: np.ndarray  # (N,) str
    _resized: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ open
    @classmethod
    def open(cls, path: str | os.PathLike) -> PreparedData:
        """Open a folder written by ``suite prepare``; :class:`InputError` when missing or corrupt."""
        path = Path(path)
        if not path.is_dir():
            raise InputError(
                f"{path}: prepared dataset folder does not exist; run `suite prepare SRC {path}` first"
            )
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            splits = json.loads((path / "splits.json").read_text())
        except FileNotFoundError as e:
            if _is_source_folder(path):
                raise InputError(
                    f"{path}: an ACDC-format source folder (patientXXX/ folders), not a prepared dataset: "
                    f"run `suite prepare {path} OUT` and pass OUT"
                ) from None
            raise InputError(
                f"{e.filename}: missing; the folder is not a complete prepared dataset: rerun "
                f"`suite prepare SRC {path}` (SRC: the folder it was prepared from)"
            ) from None
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(
                f"{path}: unreadable manifest.json/splits.json ({e}); rerun `suite prepare` with --force"
            ) from None
        try:
            images = np.load(path / "images.npy", mmap_mode="r")
            labels = np.load(path / "labels.npy", mmap_mode="r")
        except (OSError, ValueError) as e:
            raise InputError(
                f"{path}: cannot map images.npy/labels.npy ({e}); rerun `suite prepare` with --force"
            ) from None
        n, size = manifest.get("n_slices"), manifest.get("size")
        for name, arr in (("images.npy", images), ("labels.npy", labels)):
            if arr.dtype != np.uint8 or arr.shape != (n, size, size):
                raise InputError(
                    f"{path / name}: shape {arr.shape} dtype {arr.dtype} does not match the manifest "
                    f"({n}, {size}, {size}) uint8; rerun `suite prepare` with --force"
                )
        vols = manifest["volumes"]
        sl = manifest["slices"]
        vi = np.asarray(sl["volume"], dtype=np.int64)
        vol_names = np.array([v["volume"] for v in vols])
        return cls(
            path=path,
            images=images,
            labels=labels,
            manifest=manifest,
            splits=splits,
            patient=np.array([v["patient"] for v in vols])[vi],
            frame=np.array([v["frame"] for v in vols])[vi],
            slice_index=np.asarray(sl["slice_index"], dtype=np.int64),
            volume=vol_names[vi],
            spacing=np.array([v["spacing_prepared"] for v in vols], dtype=np.float64)[vi],
            lv_area_px=np.asarray(sl["lv_area_px"], dtype=np.int64),
            lv_area_mm2=np.asarray(sl["lv_area_mm2"], dtype=np.float64),
            group=np.array([v.get("group", "") for v in vols])[vi],
        )

    # ------------------------------------------------------------------ basic facts
    @property
    def data_hash(self) -> str:
        return str(self.manifest["data_hash"])

    @property
    def size(self) -> int:
        return int(self.manifest["size"])

    @property
    def patients(self) -> list[str]:
        return [p["id"] for p in self.manifest["patients"]]

    @property
    def volumes(self) -> list[str]:
        return [v["volume"] for v in self.manifest["volumes"]]

    def test_split(self) -> PreparedData | None:
        """The held-out test split prepared beside this dataset (``OUT/test``), or None without one.

        Only the held-out evaluation, after training, opens it (:mod:`suite.data.test_split`)."""
        from suite.data.test_split import TEST_DIR

        path = self.path / TEST_DIR
        if not path.is_dir():
            return None
        test = PreparedData.open(path)
        if test.manifest.get("role") != "test":
            raise InputError(
                f"{path}: not a prepared test split (manifest role {test.manifest.get('role')!r}); rerun "
                f"`suite prepare SRC {self.path} --force`"
            )
        return test

    def __len__(self) -> int:
        return int(self.images.shape[0])

    # ------------------------------------------------------------------ splits
    def split(self, n_labeled: int, mode: str = "paper", split_seed: int | None = None) -> Split:
        """Labeled / unlabeled / validation patients for paper-scale ``n_labeled`` (scaled to this cohort).

        ``mode="paper"``: the authors' split drawn with ``split_seed`` (default: the seed the dataset was
        prepared with, i.e. ``splits.json``'s ``paper_seed``). ``mode="random"``: the paper's validation
        (``paper_seed``) and a nested labeled draw seeded by ``split_seed``.
        """
        if "unavailable" in self.splits:
            raise InputError(f"{self.path / 'splits.json'}: {self.splits['unavailable']}")
        paper_seed = int(self.splits.get("paper_seed", _splits.PAPER_SEED))
        seed = paper_seed if split_seed is None else int(split_seed)
        return _splits.make_split(self.patients, n_labeled, mode, seed, paper_seed)

    def indices(
        self, patients: list[str] | tuple[str, ...] | set[str], frames: tuple[str, ...] = ("ED", "ES")
    ) -> np.ndarray:
        """Slice indices (ascending) of the given patients (and frames)."""
        mask = np.isin(self.patient, list(patients)) & np.isin(self.frame, list(frames))
        return np.flatnonzero(mask)

    # ------------------------------------------------------------------ resolution
    def resized(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)`` at ``size x size`` (bilinear image / nearest labels), cached in memory."""
        if size == self.size:
            return self.images, self.labels
        if size not in self._resized:
            from suite.data.geometry import resize_stack, to_uint8

            imgs = np.empty((len(self), size, size), np.uint8)
            labs = np.empty((len(self), size, size), np.uint8)
            step = 512
            for i in range(0, len(self), step):
                imgs[i : i + step] = to_uint8(
                    resize_stack(np.asarray(self.images[i : i + step]), size, "linear") / 255.0
                )
                labs[i : i + step] = resize_stack(np.asarray(self.labels[i : i + step]), size, "nearest")
            self._resized[size] = (imgs, labs)
        return self._resized[size]


def _is_source_folder(path: Path) -> bool:
    """Whether ``path`` looks like what ``suite prepare`` reads (patient folders, the release's training/, a
    phantom cohort) rather than what it writes."""
    root = path / "training" if (path / "training").is_dir() else path
    return (path / "phantom.json").is_file() or any(
        p.is_dir() and p.name.lower().startswith("patient") for p in root.iterdir()
    )
