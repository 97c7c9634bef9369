"""analysis.load and the statistics modules against hand-computed answers on synthetic run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.comparisons import across_seeds
from analysis.intervals import cohens_dz, t_interval
from analysis.load import load_experiment
from analysis.run_stats import condition_columns, run_statistics
from analysis.stats import analyse
from suite.errors import InputError
from suite.testing.synthetic_runs import default_volumes, write_experiment, write_run


@pytest.fixture
def exp_dir(tmp_path: Path) -> Path:
    root = tmp_path / "exp"
    write_experiment(root)
    return root


def _row(rs, **kw):
    sel = rs
    for k, v in kw.items():
        sel = sel.loc[sel[k] == v]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_constant_dice_mean_is_the_constant_and_spread_zero(exp_dir: Path) -> None:
    for s in (0, 1, 2):
        write_run(exp_dir, method="fs", seed=s, epochs=8, stat_window=4, dice=0.7)
    a = analyse(load_experiment(exp_dir))
    rs = a.run_stats
    assert list(rs["included"]) == [True, True, True]
    assert np.allclose(rs["stat"], 0.7) and np.allclose(rs["stat_std"], 0.0)
    c = a.conditions.iloc[0]
    assert c["n_units"] == 3 and math.isclose(c["mean"], 0.7) and math.isclose(c["sd"], 0.0, abs_tol=1e-15)
    assert math.isclose(c["ci_low"], 0.7) and math.isclose(c["ci_high"], 0.7)
    assert bool(c["few_seeds"])  # 3 < 5 seeds: flagged


def test_linear_trend_last_window_by_hand(exp_dir: Path) -> None:
    # Dice = 0.2 + 0.05 * epoch + 0.01 * volume_index, 10 epochs, window 4 -> epochs 6..9
    write_run(
        exp_dir,
        method="proposed",
        seed=0,
        epochs=10,
        stat_window=4,
        dice=lambda e, v: 0.2 + 0.05 * e + 0.01 * v,
    )
    rs = run_statistics(load_experiment(exp_dir))
    r = rs.iloc[0]
    n_vol = len(default_volumes())  # 8 volumes: mean of 0.01 * v = 0.035
    expected_mean = 0.2 + 0.05 * 7.5 + 0.01 * (n_vol - 1) / 2  # 0.61
    # per-epoch means differ by 0.05 per epoch: deviations -1.5, -0.5, 0.5, 1.5 (x 0.05)
    # -> var = 1.25 * 0.05^2
    expected_std = 0.05 * math.sqrt(1.25)
    assert math.isclose(r["stat"], expected_mean, rel_tol=1e-12) and math.isclose(expected_mean, 0.61)
    assert math.isclose(r["stat_std"], expected_std, rel_tol=1e-9)  # ddof 0, not ddof 1 (0.0645)
    assert (r["window"], r["window_first_epoch"], r["window_last_epoch"]) == (4, 6, 9)
    assert r["window_source"] == "config stat_window"


def test_window_override(exp_dir: Path) -> None:
    write_run(exp_dir, method="fs", seed=0, epochs=10, stat_window=4, dice=lambda e, v: 0.1 * e / 10)
    rs = run_statistics(load_experiment(exp_dir), window=2)
    r = rs.iloc[0]
    assert r["window"] == 2 and r["window_source"] == "--window"
    assert math.isclose(r["stat"], (0.08 + 0.09) / 2) and math.isclose(r["stat_std"], 0.005)


def test_short_run_flagged_never_averaged(exp_dir: Path) -> None:
    write_run(exp_dir, method="fs", seed=0, epochs=10, stat_window=5, dice=0.5)
    write_run(exp_dir, method="fs", seed=1, epochs=10, stat_window=5, dice=0.9, logged_epochs=4)
    a = analyse(load_experiment(exp_dir))
    short = _row(a.run_stats, seed=1)
    assert short["flag"] == "short" and not short["included"] and math.isnan(short["stat"])
    assert "4 complete epochs < window 5" in short["note"]
    c = a.conditions.iloc[0]
    assert c["n_units"] == 1 and math.isclose(c["mean"], 0.5)  # the short run does not enter
    assert math.isnan(c["ci_low"])  # one seed: no interval
    assert any("shorter than the window" in w for w in a.warnings)


def test_two_seeds_t_interval_by_hand(exp_dir: Path) -> None:
    write_run(exp_dir, method="oracle", seed=0, epochs=6, stat_window=3, dice=0.60)
    write_run(exp_dir, method="oracle", seed=1, epochs=6, stat_window=3, dice=0.70)
    a = analyse(load_experiment(exp_dir))
    c = a.conditions.iloc[0]
    # mean 0.65, sd = 0.1/sqrt(2) = 0.0707107, t_{0.975,1} = 12.706, half = 12.706 * sd / sqrt(2) = 0.6353
    assert math.isclose(c["mean"], 0.65)
    assert math.isclose(c["sd"], 0.1 / math.sqrt(2), rel_tol=1e-9)
    assert math.isclose(c["t_crit"], 12.706, abs_tol=5e-4)
    assert math.isclose(c["ci_low"], 0.65 - 0.6353, abs_tol=5e-5)
    assert math.isclose(c["ci_high"], 0.65 + 0.6353, abs_tol=5e-5)
    assert any("fewer than 5 seeds" in w for w in a.warnings)


def test_t_interval_and_dz_helpers() -> None:
    ti = t_interval([0.5, 0.6, 0.7])
    # sd = 0.1, t_{0.975,2} = 4.302653, half = 4.302653 * 0.1 / sqrt(3) = 0.248414
    assert math.isclose(ti.half_width, 0.248414, abs_tol=1e-6) and math.isclose(ti.mean, 0.6)
    assert ti.n == 3 and math.isnan(t_interval([0.4]).low)
    assert math.isclose(cohens_dz([0.2, 0.15, 0.25]), 4.0)
    assert cohens_dz([0.1, 0.1]) == math.inf and math.isnan(cohens_dz([0.0, 0.0]))
    # equal up to rounding: the sd is ~1e-17, not 0; d_z is still infinite, not 1e15
    rounded = [0.3 - 0.1, 0.5 - 0.3, 0.7 - 0.5, 0.9 - 0.7]
    assert len(set(rounded)) > 1 and cohens_dz(rounded) == math.inf
    assert cohens_dz([-x for x in rounded]) == -math.inf
    assert math.isclose(cohens_dz([1e-9, 2e-9, 3e-9]), 2.0)  # small but real spread is kept


def test_paired_differences_by_hand(exp_dir: Path) -> None:
    fs = [0.50, 0.60, 0.55]
    prop = [0.70, 0.75, 0.80]  # differences 0.20, 0.15, 0.25: mean 0.2, sd 0.05, d_z 4
    for s in range(3):
        write_run(exp_dir, method="fs", seed=s, epochs=4, stat_window=2, dice=fs[s])
        write_run(exp_dir, method="proposed", seed=s, epochs=4, stat_window=2, dice=prop[s])
    write_run(exp_dir, method="proposed", seed=7, epochs=4, stat_window=2, dice=0.99)  # no FS partner
    a = analyse(load_experiment(exp_dir))
    p = a.paired
    assert len(p) == 1
    r = p.iloc[0]
    assert (r["method_a"], r["method_b"], r["n_pairs"], r["a_better"]) == ("proposed", "fs", 3, 3)
    half = 4.302653 * 0.05 / math.sqrt(3)  # 0.124207
    assert math.isclose(r["mean_diff"], 0.2) and math.isclose(r["sd_diff"], 0.05, rel_tol=1e-9)
    assert math.isclose(r["ci_low"], 0.2 - half, abs_tol=1e-6) and math.isclose(
        r["ci_high"], 0.2 + half, abs_tol=1e-6
    )
    assert math.isclose(r["d_z"], 4.0, rel_tol=1e-9)
    assert "+20.0 points" in r["statement"] and "proposed is better" in r["statement"]
    assert "3 paired seeds" in r["statement"]


def test_fs_not_split_by_gamma_and_sensitivity_columns(exp_dir: Path) -> None:
    # FS runs record the default gamma; proposed varies gamma: FS stays one condition
    for s in (0, 1):
        write_run(exp_dir, method="fs", seed=s, epochs=4, stat_window=2, dice=0.5)
        for g in (0.1, 0.2):
            write_run(exp_dir, method="proposed", seed=s, gamma=g, epochs=4, stat_window=2, dice=0.5 + g)
    exp = load_experiment(exp_dir)
    cond = condition_columns(exp)
    assert cond == ["stage", "method", "n_labeled", "gamma", "lam"]
    a = analyse(exp)
    assert len(a.conditions) == 3
    assert len(a.paired) == 2  # proposed(γ=0.1) − fs and proposed(γ=0.2) − fs
    assert sorted(np.round(a.paired["mean_diff"], 6)) == [0.1, 0.2]


def test_conditions_follow_the_identity_keys_recorded_in_config_json(exp_dir: Path) -> None:
    """config.json's identity_keys decide which fields can split a condition; without them the keys of
    RunConfig.identity() are used (the test above)."""
    from suite.config import RunConfig

    # FS runs of four seeds, two of them recorded with another γ (a field FS runs do not use)
    paths = [
        write_run(exp_dir, method="fs", seed=s, gamma=0.1 * (1 + s % 2), epochs=4, stat_window=2)
        for s in range(4)
    ]
    exp = load_experiment(exp_dir)
    cfg0 = json.loads(paths[0].config.read_text())
    identity0 = RunConfig.from_config_json(cfg0, source="cfg0").identity()
    assert exp.identity_keys[paths[0].run_id] == set(identity0)
    assert "gamma" not in exp.identity_keys[paths[0].run_id]
    assert len(analyse(exp).conditions) == 1  # the FS runs' γ is not part of their identity
    for rp in paths:  # a suite whose FS identity included γ: the recorded keys win
        cfg = json.loads(rp.config.read_text())
        cfg["identity_keys"] = sorted(RunConfig.from_config_json(cfg, source="cfg").identity()) + ["gamma"]
        rp.config.write_text(json.dumps(cfg))
    exp = load_experiment(exp_dir)
    assert "identity_keys" not in exp.runs.columns
    assert sorted(analyse(exp).conditions["gamma"]) == [0.1, 0.2]
    cfg["identity_keys"] = "gamma"
    paths[-1].config.write_text(json.dumps(cfg))
    # a damaged run is excluded and named, the others are still analysed
    exp = load_experiment(exp_dir)
    assert paths[-1].run_id not in set(exp.runs["run_id"])
    assert any("config.json: identity_keys='gamma' is not a list" in w for w in exp.warnings)


def test_partial_and_failed_runs(exp_dir: Path) -> None:
    write_run(exp_dir, method="fs", seed=0, epochs=10, stat_window=3, dice=0.4)
    write_run(
        exp_dir,
        method="fs",
        seed=1,
        epochs=10,
        stat_window=3,
        dice=0.6,
        status="partial",
        logged_epochs=5,
        unterminated_tail=True,
    )
    write_run(
        exp_dir, method="fs", seed=2, epochs=10, stat_window=3, dice=0.9, status="failed", logged_epochs=5
    )
    exp = load_experiment(exp_dir)
    assert sorted(exp.runs["status"]) == ["failed", "finished", "partial"]
    a = analyse(exp)
    assert _row(a.run_stats, seed=1)["flag"] == "partial" and not _row(a.run_stats, seed=1)["included"]
    assert not _row(a.run_stats, seed=2)["included"]
    assert a.conditions.iloc[0]["n_units"] == 1
    b = analyse(exp, include_partial=True)
    part = _row(b.run_stats, seed=1)
    assert part["included"] and math.isclose(part["stat"], 0.6) and part["n_epochs"] == 5  # half line dropped
    assert not _row(b.run_stats, seed=2)["included"]  # failed: never
    assert math.isclose(b.conditions.iloc[0]["mean"], 0.5)
    assert any("INCLUDED on request" in w for w in b.warnings)


def test_duplicated_epoch_keeps_last(exp_dir: Path) -> None:
    rp = write_run(exp_dir, method="fs", seed=0, epochs=4, stat_window=2, dice=0.5)
    with open(rp.metrics, "a") as f:  # a resume that did not cut back: epoch 3 again with other values
        for v in default_volumes():
            f.write(f"3,val,{v},dice,0.9\n")
    r = run_statistics(load_experiment(exp_dir)).iloc[0]
    assert math.isclose(r["stat"], (0.5 + 0.9) / 2) and r["duplicates"] == len(default_volumes())
    assert "duplicated rows" in r["note"]


def test_dice_in_percent_is_detected(exp_dir: Path) -> None:
    write_run(exp_dir, method="fs", seed=0, epochs=4, stat_window=2, dice=55.0)
    a = analyse(load_experiment(exp_dir))
    assert a.scale == 1.0 and math.isclose(a.conditions.iloc[0]["mean"], 55.0)


def test_per_volume_and_patient_bootstrap(exp_dir: Path) -> None:
    vols = default_volumes(4)  # patients 1..4, ED and ES
    # patient p has Dice 0.1 * p on both frames, constant over epochs
    for s in (0, 1):
        write_run(
            exp_dir,
            method="fs",
            seed=s,
            epochs=4,
            stat_window=2,
            volumes=vols,
            dice=lambda e, v: 0.1 * (v // 2 + 1),
        )
    exp = load_experiment(exp_dir)
    a = analyse(exp, bootstrap=400)
    pv = a.per_volume
    assert len(pv) == 2 * len(vols)
    assert np.allclose(pv.groupby("run_id")["dice"].mean(), a.run_stats["stat"])  # per-volume -> statistic
    b = a.bootstrap.iloc[0]
    assert b["n_patients"] == 4 and b["n_boot"] == 400
    assert 0.1 <= b["boot_low"] < 0.25 < b["boot_high"] <= 0.4  # inside the patient range, around 0.25
    assert abs(b["boot_mean"] - 0.25) < 0.02
    again = analyse(exp, bootstrap=400).bootstrap.iloc[0]
    assert again["boot_low"] == b["boot_low"] and again["boot_high"] == b["boot_high"]  # seeded


def test_regressor_and_constraint(exp_dir: Path) -> None:
    for s, err in ((0, 10.0), (1, 20.0)):
        write_run(exp_dir, stage="regressor", n_labeled=10, seed=s, epochs=5, reg_err=np.full(5, err))
        write_run(
            exp_dir,
            method="proposed",
            n_labeled=10,
            seed=s,
            epochs=4,
            stat_window=2,
            dice=0.5,
            in_bounds=np.array([0.2, 0.4, 0.6, 0.8]) + 0.1 * s,
        )
    a = analyse(load_experiment(exp_dir))
    by = a.regressor_by_n.iloc[0]
    assert by["n_labeled"] == 10 and by["n_units"] == 2
    assert math.isclose(by["size_abs_err_mean"], 15.0) and math.isclose(by["size_abs_err_pct_mean"], 3.0)
    last = a.constraint.loc[a.constraint["epoch"] == 3].iloc[0]
    assert math.isclose(last["mean"], 0.85) and last["n_units"] == 2


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({}, "LV size (quadratic penalty)"),  # the paper's setting
        (
            dict(constrained="all", constraint="size+centroid", scheme="logbarrier", seg_out_channels=4),
            "RV+Myo+LV size+centroid (log-barrier)",
        ),
    ],
)
def test_constraint_satisfaction_names_what_was_constrained(exp_dir: Path, fields, named) -> None:
    # the same setting for every run: no condition column says it, so the section's table must
    from analysis.report_markdown import _constraint_final

    for s in (0, 1):
        ib = np.array([0.2, 0.4, 0.6, 0.8]) + 0.1 * s
        write_run(
            exp_dir, method="proposed", seed=s, epochs=4, stat_window=2, dice=0.5, in_bounds=ib, **fields
        )
    a = analyse(load_experiment(exp_dir))
    table = _constraint_final(a)
    assert list(table["bounded"]) == [named] and not {"constrained", "scheme"} & set(table.columns)


def test_regressors_with_different_targets_are_separate_conditions(exp_dir: Path) -> None:
    """The constraints space trains an LV-size and an all-classes regressor at the same n: their errors are
    two conditions, not four seeds of one (and the report names each)."""
    from analysis.report_markdown import _regressor_table

    for s in (0, 1):
        write_run(exp_dir, stage="regressor", n_labeled=10, seed=s, epochs=3, reg_err=np.full(3, 10.0 + s))
        write_run(
            exp_dir,
            stage="regressor",
            n_labeled=10,
            seed=s,
            epochs=3,
            reg_err=np.full(3, 30.0 + s),
            constrained="all",
            classes="multi",
            seg_out_channels=4,
        )
    a = analyse(load_experiment(exp_dir))
    by = a.regressor_by_n.set_index("constrained")
    assert sorted(by.index) == ["all", "lv"] and (by["n_units"] == 2).all()
    assert math.isclose(by.loc["lv", "size_abs_err_mean"], 10.5)
    assert math.isclose(by.loc["all", "size_abs_err_mean"], 30.5)
    table = _regressor_table(a)
    assert set(table["constrained"]) == {"all", "lv"} and (table["seeds"] == 2).all()


def test_regressor_metric_labels_name_every_class_once_others_are_there() -> None:
    from analysis.report_markdown import _regressor_metric_label as label

    names = {"size_abs_err": "abs. error (pixels)", "bounds_ok": "true size in bounds (fraction)"}
    assert label("size_abs_err", names, per_class=False) == "abs. error (pixels)"
    assert label("size_abs_err", names, per_class=True) == "abs. error (pixels), LV"
    assert label("bounds_ok_myo", names, per_class=True) == "true size in bounds (fraction), Myo"
    assert label("size_abs_err_rv", names, per_class=True) == "abs. error (pixels), RV"
    assert label("centroid_abs_err", names, per_class=True).startswith("centroid error (pixels")
    assert label("centroid_abs_err_myo", names, per_class=True) == "centroid error (pixels), Myo"
    assert label("centroid_abs_err_lv", names, per_class=True) == "centroid error (pixels), LV"


def test_conditions_group_by_other_varied_fields(exp_dir: Path) -> None:
    for s in (0, 1):
        write_run(exp_dir, method="fs", seed=s, epochs=4, stat_window=2, dice=0.5, image_size=64)
        write_run(exp_dir, method="fs", seed=s, epochs=4, stat_window=2, dice=0.6, image_size=128)
    exp = load_experiment(exp_dir)
    assert "image_size" in condition_columns(exp)
    c = across_seeds(run_statistics(exp), condition_columns(exp))
    assert sorted(np.round(c["mean"], 6)) == [0.5, 0.6]


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_input_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        load_experiment(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="no runs/ directory"):
        load_experiment(tmp_path / "plain")
    root = tmp_path / "exp"
    write_experiment(root)
    with pytest.raises(InputError, match="no run directories"):
        load_experiment(root)
    rp = write_run(root, method="fs", seed=0, epochs=3, stat_window=2)
    rp.metrics.write_text("epoch,split,volume,metric,value\n0,val,patient001_ED,dice,abc\n")
    with pytest.raises(InputError, match=r"metrics\.csv.*malformed"):
        load_experiment(root)
    rp.metrics.write_text("epoch,split,value\n0,val,0.5\n")
    with pytest.raises(InputError, match=r"metrics\.csv"):
        load_experiment(root)
    rp.metrics.write_text("epoch,split,volume,metric,value\n0,val,patient001_ED,dice,0.5\n1,val,pat\n")
    with pytest.raises(InputError, match="line 3"):  # truncated line in a finished run
        load_experiment(root)
    rp.config.write_text("{not json")
    with pytest.raises(InputError, match=r"config\.json: malformed JSON"):
        load_experiment(root)
    rp.config.write_text('{"stage": "segmenter", "method": "fs"}')
    with pytest.raises(InputError, match="missing key.*n_labeled"):
        load_experiment(root)


def test_cohort_detection(tmp_path: Path) -> None:
    from analysis.load import detect_cohort

    assert detect_cohort({"cohort": "ACDC"}) == "acdc"
    assert detect_cohort({"cohort": "phantom"}) == "phantom"
    assert detect_cohort({}) == "unknown"
    # fallback: the prepared data named in the run configs -> manifest source -> phantom.json or ACDC folders
    src, prep = tmp_path / "src", tmp_path / "prep"
    (src / "patient001").mkdir(parents=True)
    (src / "patient001" / "Info.cfg").write_text("ED: 1\n")
    prep.mkdir()
    (prep / "manifest.json").write_text(json.dumps({"source": str(src)}))
    root = tmp_path / "exp"
    write_experiment(root, cohort="")
    write_run(root, method="fs", seed=0, epochs=2, stat_window=1, data=str(prep))
    assert load_experiment(root).cohort == "acdc"
    (src / "phantom.json").write_text("{}")
    assert load_experiment(root).cohort == "phantom"
    # the Tune driver's experiment.json: cohort = {"source": <folder>, ...}
    assert detect_cohort({"cohort": {"source": str(src), "n_patients": 1}}) == "phantom"
    (src / "phantom.json").unlink()
    assert detect_cohort({"cohort": {"source": str(src), "n_patients": 1}}) == "acdc"
    assert detect_cohort({"cohort": {"kind": "phantom", "source": str(src)}}) == "phantom"


def test_conditions_sort_by_method_n_and_the_other_condition_columns() -> None:
    from analysis.run_stats import sort_conditions

    df = pd.DataFrame(
        {
            "method": ["oracle", "fs", "oracle", "oracle"],
            "n_labeled": [5, 5, 5, 5],
            "scheme": ["penalty", None, "logbarrier", "logbarrier"],
            "constrained": ["lv", None, "lv", "all"],
        }
    )
    out = sort_conditions(df, ["scheme", "constrained"]).fillna("–")
    assert list(zip(out["method"], out["scheme"], out["constrained"], strict=True)) == [
        ("fs", "–", "–"),
        ("oracle", "logbarrier", "all"),
        ("oracle", "logbarrier", "lv"),
        ("oracle", "penalty", "lv"),
    ]
