"""analysis.power against published sample sizes and an independent computation of the noncentral t."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import integrate
from scipy.special import ndtr, stdtrit
from scipy.stats import chi2

from analysis.load import load_experiment
from analysis.power import min_detectable_dz, paired_power, power_statement, seeds_needed
from analysis.report import build_report
from analysis.stats import analyse
from suite.errors import InputError
from suite.testing.synthetic_runs import write_experiment, write_run


def independent_power(dz: float, k: int, alpha: float = 0.05) -> float:
    """P(|T| > t*) with T = (Z + d·√k) / √(V/df), V ~ χ²(df): integrate the normal CDF over V (no
    noncentral-t routine involved)."""
    df = k - 1
    t = float(stdtrit(df, 1 - alpha / 2))
    nc = dz * math.sqrt(k)

    def tails(v: float) -> float:
        s = math.sqrt(v / df)
        return float(ndtr(nc - t * s) + ndtr(-nc - t * s)) * float(chi2.pdf(v, df))

    value, _ = integrate.quad(tails, 0, math.inf, limit=200)
    return value


@pytest.mark.parametrize(
    ("dz", "pairs", "power"),
    # G*Power 3.1, "t tests - means: difference from constant (one sample case)", two tails, α 0.05,
    # power 0.8: total sample size and actual power
    [(0.5, 34, 0.8078), (0.8, 15, 0.8213), (1.0, 10, 0.8031)],
)
def test_seeds_needed_equals_gpower(dz: float, pairs: int, power: float) -> None:
    assert seeds_needed(dz) == pairs
    assert math.isclose(paired_power(dz, pairs), power, abs_tol=5e-5)
    assert paired_power(dz, pairs - 1) < 0.8


@pytest.mark.parametrize(("dz", "k"), [(0.3, 5), (1.2, 3), (2.0, 2), (0.7, 20)])
def test_power_equals_an_independent_integration(dz: float, k: int) -> None:
    assert math.isclose(paired_power(dz, k), independent_power(dz, k), abs_tol=1e-7)
    assert math.isclose(paired_power(-dz, k), paired_power(dz, k))  # two-sided


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_min_detectable_dz_has_the_asked_power(k: int) -> None:
    d = min_detectable_dz(k, 0.05, 0.8)
    assert math.isclose(independent_power(d, k), 0.8, abs_tol=1e-6)
    assert min_detectable_dz(k, 0.05, 0.9) > d > min_detectable_dz(k, 0.10, 0.8)


def test_degenerate_inputs() -> None:
    assert math.isnan(paired_power(1.0, 1)) and math.isnan(min_detectable_dz(1))
    assert seeds_needed(0.0) is None and seeds_needed(math.nan) is None
    assert seeds_needed(math.inf) == 2  # identical non-zero differences
    assert seeds_needed(0.01) is None  # needs ~78,000 pairs: beyond MAX_SEEDS


def test_report_power_per_n_and_pair(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    write_experiment(root)
    fs, prop = [0.50, 0.60, 0.55], [0.70, 0.75, 0.80]  # differences 0.20, 0.15, 0.25: sd 0.05, d_z 4
    for s in range(3):
        write_run(root, method="fs", seed=s, epochs=4, stat_window=2, dice=fs[s])
        write_run(root, method="proposed", seed=s, epochs=4, stat_window=2, dice=prop[s])
    a = analyse(load_experiment(root), alpha=0.05, power=0.8)
    r = a.power.iloc[0].to_dict()
    d3 = min_detectable_dz(3)
    assert math.isclose(r["mdd"], d3 * 0.05, rel_tol=1e-9) and math.isclose(r["mdd_dz"], d3)
    # d_z 4: 2 pairs have power < 0.8 (t* = 12.7), 3 pairs more
    assert independent_power(4.0, 2) < 0.8 <= independent_power(4.0, 3)
    assert r["seeds_needed"] == 3
    text = power_statement(r)
    assert f"smallest detectable difference is {d3 * 5:.1f} points" in text and "needs 3 paired" in text
    res = build_report(root, figures=False, alpha=0.1, power=0.9)
    md = res.markdown.read_text()
    assert "## Power of the paired comparisons" in md and "α = 0.1, power 0.9" in md
    assert (res.out_dir / "tables" / "power.csv").exists()
    with pytest.raises(InputError, match="--power 1.5"):
        build_report(root, figures=False, power=1.5)


@pytest.mark.parametrize(
    "alpha, power, option",
    [
        (0.05, 0.04, "--power 0.04"),  # at or below alpha every difference, 0 included, is "detected"
        (0.5, 0.4, "--power 0.4"),
        (0.05, 0.05, "--power 0.05"),
        (1e-300, 0.8, "--alpha 1e-300"),  # used to search for a bracket forever
        (0.6, 0.8, "--alpha 0.6"),
        (math.nan, 0.8, "--alpha nan"),
        (0.05, math.inf, "--power inf"),
    ],
)
def test_levels_outside_their_domain_are_one_line_before_any_work(tmp_path, alpha, power, option) -> None:
    from analysis.report import build_report

    with pytest.raises(InputError, match=f"^{option}: must lie"):
        build_report(tmp_path / "does-not-exist", figures=False, alpha=alpha, power=power)


def test_the_detectable_effect_search_is_bounded() -> None:
    assert math.isnan(min_detectable_dz(2, alpha=1e-300))  # t* is astronomically large: undefined, not a hang
    assert math.isnan(min_detectable_dz(2, alpha=1e-6))  # t* = 636,619 with one degree of freedom
    assert 10 < min_detectable_dz(3, alpha=1e-6) < 1e4


def test_headline_states_the_setting_and_the_ordering(tmp_path: Path) -> None:
    """The report's first screen: one sentence naming the setting and its departures from the paper, the
    ordering of the means at the smallest n, per-seed points and intervals."""
    root = tmp_path / "exp"
    write_experiment(root, cohort="phantom")
    dice = {"fs": [0.10, 0.20, 0.15], "proposed": [0.30, 0.35, 0.25], "oracle": [0.50, 0.40, 0.45]}
    for s in range(3):
        for m, v in dice.items():
            write_run(root, method=m, seed=s, epochs=4, stat_window=2, dice=v[s])
            write_run(root, method=m, n_labeled=10, seed=s, epochs=4, stat_window=2, dice=0.9)
    res = build_report(root, figures=False)
    md = res.markdown.read_text()
    head = md[: md.index("## Warnings")]
    assert "**What this is:**" in head and "64×64" in head and "image_size 64 (paper 256)" in head
    assert "Oracle 45.0 > Proposed 30.0 > FS 15.0" in head and "**holds** on the means" in head
    assert "| FS | s0 10.0, s1 20.0, s2 15.0 |" in head and "proposed − fs at n=5" in head
    assert "crop" not in head  # the runs name no prepared data: no crop to state
    assert "the `synthetic` experiment on a" in head
    # `suite run` records no space: the folder is named, never "the `None` experiment"
    doc = json.loads((root / "experiment.json").read_text())
    (root / "experiment.json").write_text(json.dumps({**doc, "space": None}))
    head = build_report(root, figures=False).markdown.read_text()
    assert "the experiment `exp` on a" in head and "None" not in head[: head.index("## Warnings")]


def test_headline_names_the_prepared_crop(tmp_path: Path) -> None:
    """The crop is a prepare option, not a run field: the first screen still names it as a departure."""
    data = tmp_path / "prepared"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"options": {"crop": 0.6, "size": 64}}))
    root = tmp_path / "exp"
    write_experiment(root, cohort="phantom")
    for s in range(2):
        for m, v in {"fs": 0.1, "proposed": 0.2, "oracle": 0.3}.items():
            write_run(root, method=m, seed=s, epochs=4, stat_window=2, dice=v + 0.01 * s, data=str(data))
    head = build_report(root, figures=False).markdown.read_text().split("## Warnings")[0]
    assert "crop to the central 0.6 of the view (paper: the full view)" in head
