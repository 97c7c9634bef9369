"""``arch``: does the segmenter change the ordering? FS, Proposed and Oracle with each segmenter.

Two segmenters, both at the published width: the original ENet of Paszke et al. with the suite's 2-channel
head (``seg_arch=enet``) and the authors' ENet variant with their init and 4-channel head
(``seg_arch=enet-authors``, the network behind the paper's Table 1) — each x FS / Proposed / Oracle x the
smallest n x seeds. The regressor does not depend on the segmenter, so the Proposed runs of both share it.
With the ``fidelity`` preset (64x64 crops of a 40-patient phantom) the report shows, per segmenter, whether
Oracle >= Proposed > FS; ``seg_arch`` and ``seg_out_channels`` become condition columns.
"""

from __future__ import annotations

from collections.abc import Sequence

from search_spaces import Axes, Space, segmenter_grid

METHODS = ("fs", "proposed", "oracle")
LABELED = (5,)
SEGMENTERS = (
    {"seg_arch": "enet", "seg_out_channels": 2, "seg_width": 1.0},
    {"seg_arch": "enet-authors", "seg_out_channels": 4, "seg_width": 1.0},
)


def grid(seeds: Sequence[int], labeled: Sequence[int] | None) -> list[Axes]:
    return [row for seg in SEGMENTERS for row in segmenter_grid(METHODS, labeled or LABELED, seeds, **seg)]


SPACE = Space(
    name="arch",
    description="fs/proposed/oracle x {enet, enet-authors} x smallest n x >= 3 seeds (fidelity preset)",
    grid=grid,
    default_preset="fidelity",
    default_seeds=(0, 1, 2),
    default_labeled=LABELED,
    swept=("stage", "method", "n_labeled", "seed", "seg_arch", "seg_out_channels", "seg_width"),
)
