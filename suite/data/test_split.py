"""The held-out test split: ACDC's ``testing/`` patients, prepared beside the training ones, never trained on.

The current ACDC release has ``training/patient001…100`` and ``testing/patient101…150`` in the same layout,
``_gt`` files included; ``suite phantom --test-patients N`` writes ``OUT/testing/`` the same way. ``suite
prepare SRC OUT`` takes ``SRC/testing`` when it exists (SRC: the release's parent folder, or a phantom) and
prepares it into ``OUT/test/``: a prepared dataset of its own (same files and format), whose ``data_hash`` is
the *test hash*. The training dataset's ``data_hash``, and so every run id, does not depend on it.

The test split's ``splits.json`` holds no split (``PreparedData.split`` refuses it), so nothing can train or
select on it; only the held-out evaluation (``suite.evaluation``) opens it, after training.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from suite.data import acdc
from suite.errors import InputError

log = logging.getLogger("suite.data.test_split")

TESTING = "testing"  # the release's folder name, beside training/ (or inside a phantom cohort)
TEST_DIR = "test"  # the prepared test split, inside the prepared dataset
UNAVAILABLE = (
    "the held-out test split has no training splits (it is never trained or selected on); "
    "open the training dataset, its parent folder"
)


def testing_root(src: str | os.PathLike) -> Path | None:
    """``SRC/testing`` when it exists (the release's parent folder or a phantom cohort), else None."""
    root = Path(src) / TESTING
    if root.is_dir():
        return root
    if Path(src).name == "training" and (Path(src).parent / TESTING).is_dir():
        log.info(
            "%s: no test split taken; give the parent folder %s to prepare testing/ as the test split too",
            src,
            Path(src).parent,
        )
    return None


def scan_testing(src: str | os.PathLike, training: list[acdc.PatientRef]) -> list[acdc.PatientRef]:
    """The test patients of ``SRC/testing`` (validated like the training ones), or [] when there is none.

    A testing folder without ``_gt`` label files (the 2017 challenge release) is refused with one line, as is
    a test patient that is also a training patient.
    """
    root = testing_root(src)
    if root is None:
        return []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("patient"))
    if not folders:
        raise InputError(
            f"{root}: no patientXXX folders in the testing folder; put the test patients there or remove it"
        )
    if not any(next(p.glob("*_gt.nii*"), None) for p in folders):
        raise InputError(
            f"{root}: the test patients have no _gt label files (the challenge release without test labels); "
            "use the current ACDC release, whose testing/ has them, or move testing/ away to prepare the "
            "training patients only"
        )
    patients = acdc.scan(root)
    both = sorted({p.pid for p in patients} & {p.pid for p in training})
    if both:
        raise InputError(
            f"{root / both[0]}: patient {both[0]} is in the training folder too; a held-out patient must not "
            "be a training patient: remove one of the two"
        )
    return patients
