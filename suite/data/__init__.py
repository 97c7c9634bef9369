"""The ACDC data layer: read and validate the release layout, the synthetic phantom, preparation, splits.

- :mod:`suite.data.acdc`      read + validate an ACDC folder (``patientXXX/Info.cfg``, frames, ``_gt``)
- :mod:`suite.data.phantom`   (package) synthetic cohort written in exactly that layout (``suite phantom``)
- :mod:`suite.data.prepare`   slice, normalise, resize, store (``suite prepare``); atomic and content-keyed
- :mod:`suite.data.splits`    the paper's split (``random.seed(1)``; ``random.sample``) and the random mode
- :mod:`suite.data.dataset`   :class:`PreparedData` (what training code opens)
- :mod:`suite.data.augment`   the size regressor's ×copies flip / mirror / rotation augmentation

Import the sub-modules directly; this package imports nothing itself.
"""

from __future__ import annotations
