"""The ACDC data layer: read and validate the release layout, the synthetic phantom, preparation, splits.

- :mod:`suite.data.acdc`      read + validate an ACDC folder (``patientXXX/Info.cfg``, frames, ``_gt``)
- :mod:`suite.data.phantom`   (package) synthetic cohort written in exactly that layout (``suite phantom``)
- :mod:`suite.data.prepare`   slice, normalise, resize, store (``suite prepare``); atomic and content-keyed
- :mod:`suite.data.splits`    the paper's split (``random.seed(1)``; ``random.sample``) and the random mode
- :mod:`suite.data.dataset`   :class:`PreparedData` (what training code opens)
- :mod:`suite.data.augment`   the size regressor's ×copies flip / mirror / rotation augmentation

Heavy modules (torch, nibabel) are imported by the submodules that need them, not here.
"""

from __future__ import annotations

__all__ = ["PreparedData", "Split"]


def __getattr__(name: str):  # lazy: ``from suite.data import PreparedData`` without importing nibabel
    if name in ("PreparedData", "Split"):
        from suite.data import dataset

        return getattr(dataset, name)
    raise AttributeError(name)
