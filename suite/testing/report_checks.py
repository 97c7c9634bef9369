"""What the report tests check by hand: a report section's lines and a three-seed t-interval worked out
without the analysis package (so a test of ``analysis.intervals`` through a report can fail).

    from suite.testing.report_checks import report_section, three_seed_interval
"""

from __future__ import annotations

import math

T975_2 = 4.302652729911275  # Student t quantile 0.975, 2 degrees of freedom


def three_seed_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% t-interval of three values: mean ± t_{0.975, 2} · sd / √3."""
    if len(values) != 3:
        raise ValueError(f"three_seed_interval: {len(values)} values, expected 3")
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = T975_2 * sd / math.sqrt(3)
    return mean, mean - half, mean + half


def report_section(md: str, title: str) -> list[str]:
    """The lines of the ``## title`` section of a report's Markdown."""
    part = md.split(f"## {title}\n", 1)[1]
    return part.split("\n## ", 1)[0].splitlines()
