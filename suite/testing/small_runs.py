"""The smallest real training run the tests start from: 32×32 images, one thread, CPU, n = 5, seed 0.

Few, large batches (8 labeled, 64 unlabeled slices): the number of optimiser steps is what costs on a
contended CPU. Each test adds what it is about (epochs, method, seed):

    from suite.testing.small_runs import small_run_config
    cfg = small_run_config(prepared, method="oracle", seg_epochs=2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suite.config import RunConfig

SMALL_RUN: dict[str, Any] = dict(
    image_size=32,
    threads=1,
    device="cpu",
    n_labeled=5,
    seed=0,
    seg_batch=8,
    unl_batch=64,
)


def small_run_config(data: str | Path, **overrides: Any) -> RunConfig:
    """The ``smoke`` preset on the prepared data at ``data`` with :data:`SMALL_RUN`, then ``overrides``."""
    return RunConfig.from_preset("smoke", data=str(data), **{**SMALL_RUN, **overrides})
