"""``suite phantom OUT --patients N --seed S``: write a synthetic cohort in the ACDC release layout."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  suite phantom data/acdc-phantom --patients 100 --seed 0                 # the size of ACDC's training set
  suite phantom data/phantom-test --patients 30 --test-patients 10       # + testing/ (held-out test split)
  suite phantom data/acdc-phantom --patients 100 --seed 1 --force        # replace it (other files stay)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "phantom",
        help="write a synthetic ACDC-format cohort (patientXXX/Info.cfg, frames, _gt)",
        description="Write a synthetic cardiac cine-MR cohort in exactly the ACDC training layout "
        "(patientXXX/Info.cfg, patientXXX_frameYY.nii.gz, patientXXX_frameYY_gt.nii.gz). Deterministic per "
        "seed; patient k does not depend on --patients. See docs/phantom.md.",
        epilog=EPILOG,
    )
    p.add_argument(
        "out", metavar="OUT", help="folder to write the cohort into (created when missing; `.` works)"
    )
    p.add_argument("--patients", type=int, default=100, help="number of patients (default 100, as ACDC)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    p.add_argument(
        "--test-patients",
        type=int,
        default=0,
        help="also write N held-out test patients, numbered after the training ones, to OUT/testing/ (as "
        "ACDC's testing/patient101…150); `suite prepare OUT` takes them as the test split (default 0)",
    )
    p.add_argument(
        "--group-order",
        choices=("interleaved", "acdc"),
        default="interleaved",
        help="interleaved (default): NOR, DCM, HCM, MINF, RV repeating, every prefix balanced; acdc: "
        "blocks of 20 as in the release (001-020 DCM, 021-040 HCM, 041-060 MINF, 061-080 NOR, 081-100 RV)",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing, different phantom in OUT (only the files a phantom wrote: anything else "
        "there stays)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from suite.data.phantom.cohort import write_cohort

    t0 = time.perf_counter()
    out = write_cohort(
        args.out,
        patients=args.patients,
        seed=args.seed,
        group_order=args.group_order,
        force=args.force,
        workers=args.workers,
        test_patients=args.test_patients,
    )
    test = f" + {args.test_patients} test patients in testing/" if args.test_patients else ""
    took = time.perf_counter() - t0
    print(f"phantom: {args.patients} patients{test} (seed {args.seed}) in {out} [{took:.1f} s]")
    return 0
