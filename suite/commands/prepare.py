"""``suite prepare SRC OUT``: validate an ACDC-format folder and store 2-D slices, manifest and splits."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  suite prepare data/acdc-phantom data/prepared                           # 256 x 256, as the paper
  suite prepare ~/ACDC/database data/acdc-128 --size 128                  # the release: training/ + testing/
  suite prepare data/acdc-phantom data/prepared-crop --size 128 --crop 0.6  # a heart-centred crop
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="validate an ACDC-format folder and write the prepared dataset (arrays, manifest, splits)",
        description="Read the ED and ES frames of every patient of SRC (the official ACDC 'training' folder "
        "or a `suite phantom` output), validate them, min-max normalise each volume, resize every slice to "
        "SIZE x SIZE and write OUT/images.npy, labels.npy, manifest.json and splits.json atomically. "
        "A second run with the same inputs and options is a no-op. SRC/testing (the current release's "
        "testing/patient101…150 beside training/, with _gt files, or `suite phantom --test-patients`) is "
        "prepared as the held-out test split into OUT/test/, with its own hash (run ids do not depend on "
        "it).",
        epilog=EPILOG,
    )
    p.add_argument(
        "src", metavar="SRC", help="ACDC-format folder (patientXXX/ folders, or its parent with training/)"
    )
    p.add_argument("out", metavar="OUT", help="prepared dataset folder to create")
    p.add_argument("--size", type=int, default=256, help="slice size in pixels (default 256, the paper's)")
    p.add_argument(
        "--split-seed",
        type=int,
        default=1,
        help="seed of the paper-mode validation draw recorded in splits.json (default 1, the authors')",
    )
    p.add_argument(
        "--crop",
        type=float,
        default=1.0,
        help="keep only the central CROP fraction of the field of view along each in-plane axis before "
        "resizing (a heart-centred crop; default 1.0 = the whole image, as the paper)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="rebuild even if OUT is up to date / replace another prepared dataset (only the files the suite "
        "wrote: anything else in OUT stays)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from suite.data.prepare import prepare

    r = prepare(
        args.src, args.out, size=args.size, split_seed=args.split_seed, force=args.force, crop=args.crop
    )
    state = f"written in {r.seconds:.1f} s"
    if r.skipped or r.test_state:
        state = f"up to date ({r.test_state or 'skipped'})"
    test = f" test_hash={r.test_hash}" if r.test_hash else " (no test split)"
    print(f"prepared: {r.path} data_hash={r.data_hash} slices={r.n_slices}{test} {state}")
    return 0
