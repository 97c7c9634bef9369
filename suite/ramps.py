"""Weight schedules over training epochs: the one home of the sigmoid ramp-up of semi-supervised training.

``sigmoid_rampup(epoch, length)`` = exp(−5 (1 − t)²) with t = clip(epoch / length, 0, 1): Laine & Aila's
ramp (ICLR 2017, "Temporal ensembling", section 3.1), which Mean Teacher (Tarvainen & Valpola, NeurIPS 2017)
and the SSL4MIS collection use for their consistency weights. It starts at exp(−5) ≈ 0.0067, is 0.2865 at
half the length and 1 from ``length`` on; ``length`` 0 means no ramp (1 throughout).
"""

from __future__ import annotations

import math

RAMP_SHARPNESS = 5.0  # the −5 of exp(−5 (1 − t)²) (Laine & Aila, section 3.1)


def sigmoid_rampup(epoch: float, length: float) -> float:
    """exp(−5 (1 − t)²), t = clip(epoch / length, 0, 1); 1.0 when ``length`` <= 0 (no ramp)."""
    if length <= 0:
        return 1.0
    t = min(max(float(epoch) / float(length), 0.0), 1.0)
    return math.exp(-RAMP_SHARPNESS * (1.0 - t) ** 2)
