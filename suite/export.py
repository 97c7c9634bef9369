"""``suite export``: a run's predicted volumes as NIfTI files in the original geometry.

Each file is named after its input image (``patient101_frame01.nii.gz``) and carries the input's affine and
header (data type set to uint8, no intensity scaling), on the original matrix with the crop undone
(:func:`suite.data.geometry.probabilities_to_original`: the class probabilities resampled, then the
arg-max; the one way back the held-out evaluation uses too): a
viewer (ITK-SNAP, 3D Slicer) overlays it on the input image. Labels in ACDC numbering (0 background, 1 RV,
2 myocardium, 3 LV cavity; only 0 and 3 from a network trained on the LV alone).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from suite.config import RunConfig
from suite.data.dataset import PreparedData
from suite.data.geometry import Originals, VolumeGeometry
from suite.errors import InputError
from suite.paths import RunPaths

log = logging.getLogger("suite.export")


def nifti_bytes(label: np.ndarray, geom: VolumeGeometry, header: bytes) -> bytes:
    """A uint8 label volume ``(X, Y, Z)`` as a gzipped NIfTI file with the input image's header and affine."""
    import gzip

    import nibabel as nib

    if label.shape != geom.shape:
        raise ValueError(f"{geom.volume}: label shape {label.shape} is not the original {geom.shape}")
    kind = {348: nib.Nifti1Header, 540: nib.Nifti2Header}.get(len(header))
    if kind is None or geom.affine is None:
        raise InputError(
            f"{geom.volume}: the prepared data records no NIfTI header/affine for it (prepared by an older "
            "version); rerun `suite prepare SRC PREPARED --force` with the options it was prepared with"
        )
    hdr = kind(binaryblock=header)
    img = (nib.Nifti1Image if kind is nib.Nifti1Header else nib.Nifti2Image)(
        np.asarray(label, dtype=np.uint8), geom.affine, header=hdr
    )
    img.set_data_dtype(np.uint8)
    img.header.set_slope_inter(1.0, 0.0)
    return gzip.compress(img.to_bytes(), mtime=0)


def export_run(
    cfg: RunConfig,
    paths: RunPaths,
    data: PreparedData,
    split: str,
    checkpoint: str,
    out: Path,
    device: torch.device,
) -> list[str]:
    """Write the ``checkpoint`` model's prediction of every volume of ``split`` into ``out``; the file names.

    Only the files of the volumes written now are replaced: an earlier export of another split into ``out``
    stays (``keep_previous``), and a file the suite did not write there is never touched."""
    from suite.atomic import suite_outputs
    from suite.evaluation import predicted_volumes, split_data
    from suite.inference import network, read_checkpoint

    split_ds, volumes = split_data(data, cfg, split)
    net = network(cfg, read_checkpoint(paths, checkpoint, device), device)
    originals = Originals(split_ds.path)
    names = []
    try:
        with suite_outputs(out, "OUT", keep_previous=True) as stage:
            for geom, _rec, pred in predicted_volumes(net, cfg, split_ds, volumes, device):
                name = f"{geom.image_name}.nii.gz"
                (stage / name).write_bytes(nifti_bytes(pred, geom, originals.header(geom.volume)))
                names.append(name)
    finally:
        originals.close()
    log.info(
        "%s: %d %s volumes (%s checkpoint) written to %s", paths.run_id, len(names), split, checkpoint, out
    )
    return names
