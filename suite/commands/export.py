"""``suite export RUN OUT``: a run's predictions as NIfTI files in the original geometry.

    suite export RESULTS/<experiment>/runs/<run_id> --split test exported/
    suite export RUN --split val --checkpoint best exported-best/

One ``OUT/patientXXX_frameYY.nii.gz`` per volume of the split, named after its input image: uint8 labels in
ACDC numbering (0 background, 1 RV, 2 myocardium, 3 LV cavity) on the original matrix with any --crop of
suite prepare undone, with the input image's affine and header, so that ITK-SNAP or 3D Slicer overlays it on
the input. Only files the suite wrote earlier in OUT are ever replaced, and only those of the volumes
written now: an earlier export of the other split into OUT stays.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a run's predicted volumes as NIfTI in the original geometry",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="a finished segmenter run directory")
    p.add_argument("out", metavar="OUT", help="folder for the .nii.gz files (created when missing)")
    p.add_argument("--split", choices=("test", "val"), default="test", help="which split to predict")
    p.add_argument(
        "--checkpoint",
        choices=("final", "best"),
        default="final",
        help="final: checkpoint_last.pt; best: the best-on-validation checkpoint_best.pt",
    )
    p.add_argument(
        "--data", help="the prepared dataset, when it moved since training (its data_hash must match)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from suite.errors import InputError
    from suite.evaluation import open_run
    from suite.export import export_run
    from suite.paths import RunPaths, output_folder
    from suite.stages.base import configure_torch, select_device

    paths = RunPaths(Path(args.run))
    if not paths.config.is_file():
        raise InputError(
            f"{paths.root}: not a run directory (no config.json); give RESULTS/<exp>/runs/<run_id>"
        )
    if not paths.is_finished():
        raise InputError(
            f"{paths.root}: the run has not finished ({paths.status()}); finish it with suite run"
        )
    cfg, data = open_run(paths, args.data)
    if cfg.stage != "segmenter":
        raise InputError(f"{paths.root}: a {cfg.stage} run; export takes a segmenter run")
    out = output_folder(args.out, "OUT")
    device = select_device(cfg)
    configure_torch(cfg, device)
    names = export_run(cfg, paths, data, args.split, args.checkpoint, out, device)
    print(f"exported {len(names)} volumes ({args.split}, {args.checkpoint} checkpoint) to {out}")
    return 0
