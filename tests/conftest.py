"""Shared fixtures (session-scoped, built once per test session).

``phantom_dir`` -> Path
    A 30-patient synthetic cohort (``suite.data.phantom.cohort.write_cohort(patients=30, seed=0)``) in the
    ACDC release layout: ``patient001`` … ``patient030``, each with ``Info.cfg`` and the ED/ES frames +
    ``_gt``.
    30 is the smallest cohort the split rules accept (N >= 30: validation 8 = 6 segmenter + 2 regressor,
    training 22, labeled n=5,10,20,30,40,75 -> 2,3,6,9,12,22). Groups interleaved NOR, DCM, HCM, MINF, RV.
    Read-only: copy it (``shutil.copytree``) before changing anything.

``prepared_small`` -> Path
    ``suite prepare phantom_dir OUT --size 64`` (split seed 1): ``images.npy``/``labels.npy`` (N, 64, 64)
    uint8, ``manifest.json``, ``splits.json``. Open with ``suite.data.dataset.PreparedData.open(path)``.
    Read-only as well.

Both take a few seconds on 2 cores (the phantom is written with 2 processes).

Synthetic run directories for the analysis tests come from :mod:`suite.testing.synthetic_runs` (an
importable module, so no test puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

PHANTOM_PATIENTS = 30
PHANTOM_SEED = 0
SMALL_SIZE = 64


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from suite.data.phantom.cohort import write_cohort

    out = tmp_path_factory.mktemp("acdc-phantom") / "training"
    write_cohort(out, patients=PHANTOM_PATIENTS, seed=PHANTOM_SEED, workers=2)
    return out


@pytest.fixture(scope="session")
def prepared_small(phantom_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from suite.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared") / f"phantom{PHANTOM_PATIENTS}-{SMALL_SIZE}"
    prepare(phantom_dir, out, size=SMALL_SIZE, split_seed=1)
    return out


@pytest.fixture
def loss_images(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of the images each segmenter loss sees (``ce``: partial CE, ``penalty``: the unlabeled term),
    through spies on the segmenter module's two losses; reset them with ``.update(ce=0, penalty=0)``."""
    import suite.stages.segmenter as seg

    seen = {"ce": 0, "penalty": 0}
    real_ce, real_pen = seg.partial_ce, seg.unlabeled_loss

    def ce_spy(logits, target, mask=None):
        seen["ce"] += logits.shape[0]
        return real_ce(logits, target, mask)

    def pen_spy(cfg, logits, targets, epoch):
        seen["penalty"] += logits.shape[0]
        return real_pen(cfg, logits, targets, epoch)

    monkeypatch.setattr(seg, "partial_ce", ce_spy)
    monkeypatch.setattr(seg, "unlabeled_loss", pen_spy)
    return seen
