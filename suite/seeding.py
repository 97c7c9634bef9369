"""Every random draw derives from a recorded seed (benchopt-style hashing of the run's axes)."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(base: int, *axes: object) -> int:
    """A 31-bit seed that is a pure function of ``base`` and the named axes.

    >>> derive_seed(0, "segmenter", 5) == derive_seed(0, "segmenter", 5)
    True
    """
    key = "|".join([str(int(base))] + [repr(a) for a in axes]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little") & 0x7FFFFFFF


def numpy_rng(base: int, *axes: object) -> np.random.Generator:
    """A NumPy generator seeded from ``derive_seed(base, *axes)``."""
    return np.random.default_rng(derive_seed(base, *axes))
