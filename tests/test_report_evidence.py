"""The report's evidence: each seed against FS (per-seed values, "above FS in k of m", the paired interval),
the first screen with several settings per method, and the training dynamics against the bounds (table,
generated summary, figures), on synthetic experiments whose numbers are known; older runs without the
dynamics metrics, and experiments without FS, get no such section."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from suite.testing.synthetic_runs import write_experiment, write_run

T_975_2 = 4.302652729749464  # Student t quantile 0.975, 2 degrees of freedom (3 seeds), from tables
E = 12  # epochs: the chosen epochs present are 0, 1, 2, 4, 9 and the last, 11
EP = np.arange(E)
# per seed (0, 1, 2): the final validation Dice of each condition; the Oracle's is 0 in epochs 0-3
FS = [0.30, 0.40, 0.50]
AUTHORS = [0.20, 0.45, 0.60]  # − FS: -0.10, +0.05, +0.10 -> above FS in 2 of 3
RAMP = [0.50, 0.55, 0.75]  # − FS: +0.20, +0.15, +0.25 -> above FS in 3 of 3
IN_BOUNDS = np.linspace(0.2, 0.9, E)


def _dynamics(seed: int, empty: bool, ramp: bool) -> dict[str, np.ndarray]:
    """Known per-seed curves: the mean over seeds 0-2 adds 10 px to the soft size, 1 px to the target."""
    d = {
        "soft_size": 300.0 / (1 + EP) + 10.0 * seed,
        "target_size": np.full(E, 100.0 + seed),
        "above_bounds": 0.8 / (1 + EP),
        "below_bounds": 0.01 * EP * (1 + seed),
        "empty_slices": np.full(E, 0.3 if empty else 0.0),
        # absent without empty slices, as the segmenter logs it
        "soft_size_empty": 275.0 / (1 + EP) ** 2 + seed if empty else np.full(E, np.nan),
    }
    if ramp:
        d["lam"] = 0.01 * np.exp(-5.0 * (1.0 - EP / 40.0) ** 2)
    return d


def _experiment(root: Path, *, dynamics: bool = True, with_fs: bool = True) -> Path:
    write_experiment(root, cohort="phantom")
    for s in range(3):
        if with_fs:
            write_run(root, method="fs", seed=s, epochs=E, stat_window=3, dice=FS[s])
        for values, kw in ((AUTHORS, {}), (RAMP, {"lam_rampup": 40})):
            write_run(
                root,
                method="oracle",
                seed=s,
                epochs=E,
                stat_window=3,
                dice=np.where(EP < 4, 0.0, values[s]),
                in_bounds=IN_BOUNDS,
                train_extra=_dynamics(s, empty=not kw, ramp=bool(kw)) if dynamics else None,
                **kw,
            )
    return root


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory):
    from analysis.load import load_experiment
    from analysis.stats import analyse

    root = _experiment(tmp_path_factory.mktemp("evidence") / "exp")
    return root, analyse(load_experiment(root))


def _row(t: pd.DataFrame, method: str, ramp: float | None) -> pd.Series:
    sel = t["method"] == method
    sel &= t["lam_rampup"].isna() if ramp is None else t["lam_rampup"] == ramp
    assert sel.sum() == 1, t
    return t.loc[sel].iloc[0]


def _t_ci(values: list[float]) -> tuple[float, float, float]:
    x = np.asarray(values)
    half = T_975_2 * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


# ---------------------------------------------------------------------------------------------- per seed
def test_per_seed_table_by_hand(analysed) -> None:
    _, a = analysed
    t = a.per_seed
    assert list(t["method"]) == ["fs", "oracle", "oracle"]  # FS, the reference, first
    fs = _row(t, "fs", None)
    assert fs["per_seed"] == "s0 30.0, s1 40.0, s2 50.0" and fs["n_pairs"] == 0
    for ramp, values, above in ((0, AUTHORS, 2), (40, RAMP, 3)):
        r = _row(t, "oracle", ramp)
        assert r["per_seed"] == ", ".join(f"s{s} {100 * v:.1f}" for s, v in enumerate(values))
        mean, low, high = _t_ci(values)
        assert (r["mean_pct"], r["ci_low_pct"], r["ci_high_pct"]) == pytest.approx(
            (100 * mean, 100 * low, 100 * high)
        )
        # paired by seed with FS, which has no lam_rampup: the variant's own differences
        diffs = [v - f for v, f in zip(values, FS, strict=True)]
        assert (r["n_pairs"], r["above_fs"]) == (3, above)
        mean, low, high = _t_ci(diffs)
        assert (r["diff_pct"], r["diff_low_pct"], r["diff_high_pct"]) == pytest.approx(
            (100 * mean, 100 * low, 100 * high)
        )


def test_variants_pair_with_the_fs_of_their_seed(tmp_path: Path) -> None:
    """FS has none of the variant fields: each variant pairs with FS by seed (a seed FS lacks drops out),
    and two variants are never pooled into one comparison."""
    from analysis.load import load_experiment
    from analysis.stats import analyse

    root = tmp_path / "exp"
    write_experiment(root)
    for s in range(3):
        if s < 2:  # FS of seed 2 is missing
            write_run(root, method="fs", seed=s, epochs=4, stat_window=2, dice=FS[s])
        write_run(root, method="oracle", seed=s, epochs=4, stat_window=2, dice=AUTHORS[s])
        write_run(root, method="oracle", seed=s, epochs=4, stat_window=2, dice=RAMP[s], scheme="logbarrier")
    a = analyse(load_experiment(root))
    p = a.paired.loc[(a.paired["method_a"] == "oracle") & (a.paired["method_b"] == "fs")]
    assert sorted(p["scheme"]) == ["logbarrier", "penalty"] and set(p["n_pairs"]) == {2}
    barrier = p.loc[p["scheme"] == "logbarrier"].iloc[0]
    assert barrier["mean_diff"] == pytest.approx(np.mean([0.20, 0.15])) and barrier["a_better"] == 2
    penalty = a.per_seed.loc[a.per_seed["scheme"] == "penalty"].iloc[0]
    assert (penalty["above_fs"], penalty["n_pairs"]) == (1, 2)  # -0.10, +0.05
    assert penalty["per_seed"] == "s0 20.0, s1 45.0, s2 60.0"  # every seed shown, paired or not


def test_first_screen_states_each_setting_against_fs(analysed) -> None:
    from analysis.headline import headline_markdown

    _, a = analysed
    head = headline_markdown(a)
    assert "Several settings per method at n = 5" in head and "*Per seed and against FS*" in head
    assert "- FS: 40.0 [15.2, 64.8] (the reference)" in head
    assert "- Oracle, lam_rampup=0: 41.7 [-8.5, 91.9]; above FS in 2 of 3 seeds, paired difference " in head
    assert "- Oracle, lam_rampup=40: 60.0 [27.1, 92.9]; above FS in 3 of 3 seeds, paired difference " in head
    assert "+20.0 [+7.6, +32.4] points" in head


# ---------------------------------------------------------------------------------------------- dynamics
def test_dynamics_table_at_the_chosen_epochs_by_hand(analysed) -> None:
    _, a = analysed
    t = a.dynamics_table
    for ramp in (0, 40):
        g = t.loc[t["lam_rampup"] == ramp]
        assert list(g["epoch"]) == [0, 1, 2, 4, 9, 11] and set(g["seeds"]) == {3}
        r = g.loc[g["epoch"] == 4].iloc[0]
        assert r["soft_size"] == pytest.approx(300 / 5 + 10) and r["target_size"] == pytest.approx(101)
        assert r["above_bounds"] == pytest.approx(0.8 / 5) and r["below_bounds"] == pytest.approx(0.04 * 2)
        assert r["in_bounds"] == pytest.approx(IN_BOUNDS[4])
        values = AUTHORS if ramp == 0 else RAMP
        assert r["dice_pct"] == pytest.approx(100 * np.mean(values))
        assert g.loc[g["epoch"] < 4, "dice_pct"].tolist() == [0.0, 0.0, 0.0]
    auth = t.loc[t["lam_rampup"] == 0].set_index("epoch")
    assert (
        auth.at[11, "soft_size_empty"] == pytest.approx(275 / 144 + 1) and auth.at[0, "empty_slices"] == 0.3
    )
    assert auth["lam_epoch"].isna().all()
    ramp = t.loc[t["lam_rampup"] == 40].set_index("epoch")
    assert ramp["soft_size_empty"].isna().all()  # no empty slice: nothing logged, nothing invented
    assert ramp.at[9, "lam_epoch"] == pytest.approx(0.01 * math.exp(-5 * (1 - 9 / 40) ** 2))


def test_dynamics_summary_says_what_the_numbers_show(analysed) -> None:
    from analysis.dynamics import dynamics_summaries

    _, a = analysed
    texts = dict(dynamics_summaries(a.dynamics_table, a.dynamics, a.curves, a.cond, a.scale))
    assert set(texts) == {"Oracle, lam_rampup=0", "Oracle, lam_rampup=40"}
    auth = texts["Oracle, lam_rampup=0"]
    assert auth.startswith(
        "epoch 0: soft size 310 px against a target of 101 px, 80 % of slices above their upper bound and "
        "0 % below their lower bound; by epoch 4: soft size 70 px (target 101 px), 16 % above, 8 % below; "
        "at the last epoch (11): soft size 35 px (target 101 px), 7 % above, 22 % below."
    )
    assert "On the empty slices (30 % of slices)" in auth
    assert "the soft size falls from 276 px at epoch 0 to 2.9 px at epoch 11." in auth
    assert "In bounds: 20 % of slices at epoch 0, 90 % at epoch 11." in auth
    assert auth.endswith("The validation Dice is 0.0 % in epochs 0-3; it is 41.7 % at the last epoch (11).")
    ramp = texts["Oracle, lam_rampup=40"]
    assert "empty slices" not in ramp and "λ goes from 6.74e-05 at epoch 0 to 0.000722 at epoch 11." in ramp


def test_warm_up_epochs_log_nothing_and_the_summary_starts_where_the_logs_do(tmp_path: Path) -> None:
    from analysis.dynamics import dynamics_summaries
    from analysis.load import load_experiment
    from analysis.stats import analyse

    root = tmp_path / "exp"
    write_experiment(root)
    extra = {k: np.where(EP < 2, np.nan, v) for k, v in _dynamics(0, empty=False, ramp=False).items()}
    write_run(root, method="oracle", epochs=E, stat_window=3, dice=0.5, penalty_warmup=2, train_extra=extra)
    a = analyse(load_experiment(root))
    assert list(a.dynamics_table["epoch"]) == [2, 4, 9, 11]
    [(label, text)] = dynamics_summaries(a.dynamics_table, a.dynamics, a.curves, a.cond, a.scale)
    assert label == "Oracle" and text.startswith("epoch 2 (the first logged): soft size 100 px")
    assert "The validation Dice goes from 50.0 % at epoch 0 to 50.0 % at the last epoch (11)." in text


def test_dynamics_names_are_the_ones_the_segmenter_logs() -> None:
    from analysis.dynamics import LOGGED, SIZE_METRICS
    from suite.constraints import DYNAMICS, dynamics_metrics

    assert set(SIZE_METRICS) == set(DYNAMICS)
    assert set(dynamics_metrics([5.0, 4.0, 1.0, 0.0, 1.0, 2.0], 2.0)) <= set(LOGGED)


# ---------------------------------------------------------------------------------------------- the report
@pytest.fixture(scope="module")
def report(analysed):
    from analysis.report import build_report

    root, _ = analysed
    return build_report(root)


def test_report_renders_both_sections_with_their_files(report) -> None:
    md = report.markdown.read_text()
    per_seed = md[md.index("## Per seed and against FS") :]
    assert (
        "| fs | 5 | – | – | – | s0 30.0, s1 40.0, s2 50.0 | 40.0 [15.2, 64.8] | (reference) |  |" in per_seed
    )
    assert (
        "| oracle | 5 | 0.1 | 0.01 | 40 | s0 50.0, s1 55.0, s2 75.0 | 60.0 [27.1, 92.9] | 3 of 3 seeds | "
        "+20.0 [+7.6, +32.4] |" in per_seed
    )
    csv = pd.read_csv(report.out_dir / "tables" / "per_seed.csv")
    assert csv.loc[csv["lam_rampup"] == 0, "above_fs"].item() == 2
    dyn = md[md.index("## Training dynamics against the bounds") : md.index("## Runs")]
    assert "- **Oracle, lam_rampup=0**: epoch 0: soft size 310 px" in dyn
    assert (
        "| oracle | 5 | 0.1 | 0.01 | 40 | 4 | 3 | 70.0 | 101.0 | 16% | 8% | 0% | – | 0.000174 | 45% | 60.0 |"
        in dyn
    )
    # the figures are drawn and shown in their section, not among the other figures
    for name in ("dynamics_soft_size", "dynamics_bounds"):
        assert (report.out_dir / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"figures/{name}.png" in dyn and md.count(f"figures/{name}.png") == 1
    rows = pd.read_csv(report.out_dir / "tables" / "dynamics.csv")
    assert len(rows) == 12 and (report.out_dir / "tables" / "dynamics_epochs.csv").is_file()


def test_older_runs_and_experiments_without_fs_have_no_such_section(tmp_path: Path) -> None:
    from analysis.report import build_report

    old = build_report(_experiment(tmp_path / "old", dynamics=False), figures=False)
    md = old.markdown.read_text()
    assert old.analysis.dynamics.empty and old.analysis.dynamics_table.empty
    assert "## Training dynamics against the bounds" not in md and "## Per seed and against FS" in md
    assert not (old.out_dir / "tables" / "dynamics.csv").exists()
    no_fs = build_report(_experiment(tmp_path / "nofs", with_fs=False), figures=False)
    md = no_fs.markdown.read_text()
    assert "## Per seed and against FS" not in md and "## Training dynamics against the bounds" in md
    assert not (no_fs.out_dir / "tables" / "per_seed.csv").exists()
    assert "Several settings per method at n = 5: see Table 1.\n" in md  # nothing to say against FS


def test_condition_labels_print_whole_numbers_and_leave_out_blank_fields() -> None:
    from analysis.plotting import condition_label
    from analysis.run_stats import condition_text, setting_text

    assert (setting_text(40.0), setting_text(1e-4), setting_text(np.int64(5))) == ("40", "0.0001", "5")
    df = pd.DataFrame({"method": ["fs", "oracle"], "lam_rampup": [np.nan, 40.0], "scheme": [None, "penalty"]})
    assert list(condition_label(df, ["lam_rampup", "scheme"])) == [
        "FS",
        "Oracle, lam_rampup=40, scheme=penalty",
    ]
    assert condition_text({"method": "proposed", "n_labeled": 5, "lam": 0.01}, ["n_labeled", "lam"]) == (
        "Proposed, n=5, λ=0.01"
    )
