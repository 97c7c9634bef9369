"""The values presets had before they were changed, for the tests that pin run ids computed at an earlier
commit: a pinned id keeps its meaning (the same config gets the same id) when the preset's value of that
time is given back. Add a preset's old values here when a change to the preset moves its run ids."""

from __future__ import annotations

from typing import Any

# 2026-12-08: the smoke preset went from 2 threads to 1 (Ray Tune packs two trials on 2 cores); the fidelity
# preset from the original ENet (2 channels) to the authors' (its FS learns on every seed of the demo data)
PRESET_VALUES_BEFORE: dict[str, dict[str, Any]] = {
    "smoke": {"threads": 2},
    "fidelity": {"seg_arch": "enet", "seg_out_channels": 2},
}
