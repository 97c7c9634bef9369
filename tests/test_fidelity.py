"""The fidelity check: ``scripts/fidelity.py`` reports whether Oracle >= Proposed > FS, per seed.

The analysis is tested here on hand-made run directories; the check itself (22-24 minutes on 2 cores) is
the ``slow`` test, which runs the script end to end and asserts the ordering on the across-seed means.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("fidelity_script", ROOT / "scripts" / "fidelity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(exp: Path, run_id: str, cfg: dict, rows: list[tuple[int, str, str, float]]) -> None:
    d = exp / "runs" / run_id
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "summary.json").write_text("{}")
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "split", "volume", "metric", "value"])
        for ep, split, metric, v in rows:
            w.writerow([ep, split, "", metric, v])
        w.writerow([0, "val", "patient001_ED", "dice", 0.99])  # per-volume rows are not the statistic


def test_analyse_per_seed_ordering_and_warmup(tmp_path):
    fid = _script()
    exp = tmp_path / "fidelity-fidelity"
    dice = {"fs": [0.1, 0.1, 0.2, 0.2], "proposed": [0.1, 0.1, 0.3, 0.3], "oracle": [0.1, 0.1, 0.4, 0.5]}
    for seed in (0, 1):
        for m, vals in dice.items():
            if seed == 1 and m == "oracle":
                vals = [0.1, 0.1, 0.2, 0.2]  # seed 1: Oracle < Proposed
            rows = [(e, "val", "dice_mean", v) for e, v in enumerate(vals)]
            if m != "fs":  # penalty methods: warm-up epochs 0-1 report loss_penalty 0 and no in_bounds
                rows += [(e, "train", "loss_penalty", p) for e, p in enumerate([0, 0, 50.0, 5.0])]
                rows += [(e, "train", "in_bounds", b) for e, b in [(2, 0.1), (3, 0.3)]]
            _run(
                exp,
                f"seg-{m}-n5-s{seed}",
                {"stage": "segmenter", "method": m, "seed": seed, "stat_window": 2},
                rows,
            )
        _run(
            exp,
            f"reg-n5-s{seed}",
            {"stage": "regressor", "method": "regressor", "seed": seed},
            [(0, "regval", "size_abs_err_pct", 30.0), (0, "regval", "bounds_ok", 0.1)],
        )
    res = fid.analyse(exp)
    s0, s1 = res["per_seed"][0], res["per_seed"][1]
    assert s0["fs"]["stat"] == pytest.approx(0.2) and s0["oracle"]["stat"] == pytest.approx(0.45)
    assert s0["ordering_holds"] and not s1["ordering_holds"] and res["seeds_with_ordering"] == 1
    assert s0["oracle"]["penalty_first_last"] == [50.0, 5.0]  # first epoch *with* the penalty
    assert s0["oracle"]["in_bounds_first_last"] == [0.1, 0.3]
    assert s0["regressor"] == {"regval/size_abs_err_pct": 30.0, "regval/bounds_ok": 0.1}
    assert res["mean"]["oracle"] == pytest.approx((0.45 + 0.2) / 2)
    assert res["ordering_holds_on_means"]  # 0.325 >= 0.3 > 0.2
    assert "seed" in fid.format_table(res)


def test_paired_intervals_power_and_strict_verdict(tmp_path):
    """Proposed − FS and Oracle − FS come from the report's paired statistics; --strict also needs the
    paired CI of Proposed − FS above 0."""
    from analysis.power import min_detectable_dz
    from suite.testing.synthetic_runs import write_experiment, write_run

    fid = _script()
    exp = tmp_path / "fidelity-fidelity"
    write_experiment(exp)
    fs, prop, orc = [0.30, 0.40, 0.35], [0.50, 0.55, 0.60], [0.70, 0.65, 0.60]  # Proposed − FS: .2 .15 .25
    for s in range(3):
        for m, v in (("fs", fs), ("proposed", prop), ("oracle", orc)):
            write_run(exp, method=m, seed=s, epochs=4, stat_window=2, dice=v[s])
    pairs = fid.paired_evidence(exp, 0.05, 0.8)
    assert [(p["method_a"], p["method_b"]) for p in pairs] == [("proposed", "fs"), ("oracle", "fs")]
    pf = pairs[0]
    half = 4.302653 * 0.05 / 3**0.5  # t_{0.975,2} · sd / √3
    assert pf["n_pairs"] == 3 and pf["ci_low"] == pytest.approx(0.2 - half, abs=1e-6)
    assert pf["mdd"] == pytest.approx(min_detectable_dz(3) * 0.05) and pf["seeds_needed"] == 3
    res = {"ordering_holds_on_means": True, "paired": pairs}
    assert fid.strict_verdict(res)[0]
    pf["ci_low"] = -0.01
    ok, why = fid.strict_verdict(res)
    assert not ok and "Proposed − FS" in why
    assert not fid.strict_verdict({"ordering_holds_on_means": False, "paired": pairs})[0]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fidelity_check_orders_oracle_proposed_fs(tmp_path, capsys):
    """The whole check (22-24 min on 2 cores): measured 2026-11-28, means FS 0.087 < Proposed 0.131 <
    Oracle 0.170, the ordering on seeds 0 and 1 (seed 2: FS collapses to background). Fails if the ordering
    on the means is lost."""
    fid = _script()
    # without --strict: that now also asks for the paired CI of Proposed − FS above 0, which 3 seeds of this
    # preset do not give (Proposed − FS +5.2 ± 10.9 points; the power computation asks for 8 seeds)
    rc = fid.main(["--out", str(tmp_path)])
    res = json.loads((tmp_path / "fidelity.json").read_text())
    print(fid.format_table(res))
    assert res["n_seeds"] == 3
    assert rc == 0 and res["ordering_holds_on_means"], res["mean"]
