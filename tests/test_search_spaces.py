"""Search spaces and the planner (fast: no Ray is started)."""

from __future__ import annotations

import json

import pytest

from search_spaces import available_spaces, get_space
from suite.config import RunConfig
from suite.errors import ConfigError, InputError
from suite.paths import ExperimentPaths
from suite.planner import Plan, build_plan


def _axes(cfgs):
    return sorted((c.method, c.n_labeled, c.seed, c.gamma, c.lam) for c in cfgs)


def test_registry_lists_every_space_with_a_docstring():
    assert available_spaces() == [
        "paper",
        "sensitivity",
        "splits",
        "smoke",
        "fidelity",
        "arch",
        "constraints",
        "repro",
        "ssl",
    ]
    for name in available_spaces():
        sp = get_space(name)
        assert sp.name == name
        mod = __import__(f"search_spaces.{name}", fromlist=["SPACE"])
        assert mod.__doc__ and len(mod.__doc__) > 80
    with pytest.raises(InputError, match="--space 'nope' does not exist; available spaces: paper"):
        get_space("nope")


def test_paper_grid_is_table_1():
    cfgs = get_space("paper").configs("paper", seeds=[0, 1, 2])
    # 4 methods x 5 n x 3 seeds + FS n=75 x 3 seeds
    assert len(cfgs) == 4 * 5 * 3 + 3
    assert {c.n_labeled for c in cfgs} == {5, 10, 20, 30, 40, 75}
    assert {(c.method, c.seed) for c in cfgs if c.n_labeled == 75} == {("fs", 0), ("fs", 1), ("fs", 2)}
    assert {c.gamma for c in cfgs} == {0.1} and {c.lam for c in cfgs} == {0.01}
    assert {c.preset for c in cfgs} == {"paper"}
    assert len({c.run_id for c in cfgs}) == len(cfgs)


def test_sensitivity_grid_and_shared_regressor():
    cfgs = get_space("sensitivity").configs("smoke", seeds=[0])
    assert len(cfgs) == 5 * 3 * 2 * 2 * 3  # gamma x lambda x update x {proposed, oracle} x n {5,10,20}
    assert {c.gamma for c in cfgs} == {0.0, 0.05, 0.1, 0.2, 0.3}
    assert {c.update for c in cfgs} == {"alternating", "joint"}
    assert {c.lam for c in cfgs} == {1e-3, 1e-2, 1e-1}
    plan = build_plan(cfgs)
    regs = [c for c in plan.runs.values() if c.stage == "regressor"]
    assert sorted(c.n_labeled for c in regs) == [5, 10, 20]  # one regressor per n, shared by 30 cells
    assert len(plan.runs) == len(cfgs) + 3


def test_splits_space_varies_only_the_draw():
    cfgs = get_space("splits").configs("smoke", seeds=[3, 4])
    assert {c.split_mode for c in cfgs} == {"random"}
    assert {c.split_seed for c in cfgs} == {3, 4} and {c.seed for c in cfgs} == {0}
    assert len(cfgs) == 4 * 2 * 2
    assert all(c.run_id.endswith(c.config_hash()) and f"-r{c.split_seed}-" in c.run_id for c in cfgs)


def test_smoke_and_fidelity_spaces():
    smoke = get_space("smoke")
    assert smoke.default_preset == "smoke" and smoke.default_seeds == (0,)
    cfgs = smoke.configs(seeds=[0])
    assert _axes(cfgs) == sorted(
        (m, n, 0, 0.1, 0.01) for m in ("fs", "proposals", "proposed", "oracle") for n in (5, 10)
    )
    plan = build_plan(cfgs)
    assert len(plan.runs) == 10  # + one regressor per n
    fid = get_space("fidelity").configs(seeds=[0, 1, 2])
    assert {c.method for c in fid} == {"fs", "proposed", "oracle"} and {c.n_labeled for c in fid} == {5}
    assert {c.preset for c in fid} == {"fidelity"} and {c.image_size for c in fid} == {64}
    assert len(fid) == 9


def test_arch_space_runs_each_method_with_each_segmenter():
    sp = get_space("arch")
    cfgs = sp.configs(seeds=[0, 1, 2])
    assert len(cfgs) == 3 * 2 * 3 and {c.preset for c in cfgs} == {"fidelity"}
    seg = {(c.seg_arch, c.seg_out_channels, c.seg_width) for c in cfgs}
    assert seg == {("enet", 2, 1.0), ("enet-authors", 4, 1.0)}
    for arch in ("enet", "enet-authors"):
        assert sorted((c.method, c.seed) for c in cfgs if c.seg_arch == arch) == sorted(
            (m, s) for m in ("fs", "proposed", "oracle") for s in (0, 1, 2)
        )
    # the regressor does not depend on the segmenter: both Proposed runs of a seed share it
    regs = {c.seed: set() for c in cfgs}
    for c in cfgs:
        if c.method == "proposed":
            regs[c.seed].add(c.regressor_config().run_id)
    assert all(len(r) == 1 for r in regs.values())
    with pytest.raises(ConfigError, match="sweeps seg_arch"):
        sp.configs(seeds=[0], overrides=["seg_arch=enet"])


def test_ssl_space_crosses_three_methods_with_each_term_sharing_regressors():
    from suite.planner import build_plan

    sp = get_space("ssl")
    cfgs = sp.configs("smoke", seeds=[0, 1])
    assert len(cfgs) == 3 * 4 * 2 * 2 and {c.preset for c in cfgs} == {"smoke"}
    assert sorted((c.method, c.ssl, c.n_labeled, c.seed) for c in cfgs) == sorted(
        (m, t, n, s)
        for m in ("fs", "proposed", "oracle")
        for t in ("none", "mean_teacher", "entropy_min", "cps")
        for n in (5, 10)
        for s in (0, 1)
    )
    plan = build_plan(cfgs)
    regs = [c for c in plan.runs.values() if c.stage == "regressor"]
    assert len(plan.runs) == len(cfgs) + 4 and len(regs) == 4  # one regressor per (n, seed), for every term
    plain = {c.run_id for c in get_space("smoke").configs("smoke", seeds=[0, 1]) if c.method != "proposals"}
    assert plain == {c.run_id for c in cfgs if c.ssl == "none"}  # the paper's rows are the same runs
    with pytest.raises(ConfigError, match="sweeps ssl"):
        sp.configs(seeds=[0], overrides=["ssl=cps"])


def test_overrides_and_swept_axes():
    sp = get_space("smoke")
    cfgs = sp.configs(
        "smoke",
        [0],
        overrides=["seg_epochs=2", "threads=1"],
        labeled=[5],
        base={"data": "/d", "data_hash": "abc"},
    )
    assert {c.seg_epochs for c in cfgs} == {2} and {c.threads for c in cfgs} == {1}
    assert {c.data_hash for c in cfgs} == {"abc"} and {c.n_labeled for c in cfgs} == {5}
    with pytest.raises(ConfigError, match="--set n_labeled: the space 'smoke' sweeps n_labeled"):
        sp.configs("smoke", [0], overrides=["n_labeled=3"])
    with pytest.raises(ConfigError, match="unknown key"):
        sp.configs("smoke", [0], overrides=["nope=3"])
    with pytest.raises(InputError, match="--seeds is empty"):
        sp.configs("smoke", [])
    with pytest.raises(InputError, match="has no random search"):
        sp.configs("smoke", [0], search="random", num_samples=3)
    # world_size is identity and must divide the global batches
    with pytest.raises(ConfigError, match="seg_batch"):
        sp.configs("smoke", [0], base={"world_size": 2})
    ddp = sp.configs("smoke", [0], base={"world_size": 2}, overrides=["seg_batch=2", "unl_batch=4"])
    assert {c.world_size for c in ddp} == {2}


def test_random_search_is_deterministic_and_in_range():
    sp = get_space("sensitivity")
    a = sp.configs("smoke", [0], labeled=[5], search="random", num_samples=6, search_seed=7)
    b = sp.configs("smoke", [0], labeled=[5], search="random", num_samples=6, search_seed=7)
    c = sp.configs("smoke", [0], labeled=[5], search="random", num_samples=6, search_seed=8)
    assert [x.run_id for x in a] == [x.run_id for x in b]
    assert [x.run_id for x in a] != [x.run_id for x in c]
    assert len(a) == 6 * 2 * 2  # 6 (gamma, lambda) draws x {proposed, oracle} x update
    for x in a:
        assert 0.0 <= x.gamma <= 0.3 and 1e-3 <= x.lam <= 1e-1
    pts = {(x.gamma, x.lam) for x in a}
    assert len(pts) == 6  # the same draws for both methods
    assert {(x.gamma, x.lam) for x in a if x.method == "oracle"} == pts


def test_plan_dedupes_and_orders_levels():
    cfgs = get_space("smoke").configs("smoke", [0], labeled=[5], base={"data_hash": "h"})
    extra = RunConfig.from_preset("smoke", method="proposed", n_labeled=5, gamma=0.2, data_hash="h")
    plan = build_plan(cfgs + cfgs + [extra])
    assert len(plan.requested) == 5
    by_id = plan.runs
    stages = sorted((c.stage, c.method) for c in by_id.values())
    assert stages == [
        ("regressor", "regressor"),
        ("segmenter", "fs"),
        ("segmenter", "oracle"),
        ("segmenter", "proposals"),
        ("segmenter", "proposed"),
        ("segmenter", "proposed"),
    ]
    levels = plan.levels(done=set())
    first = {by_id[r].method for r in levels[0]}
    second = {by_id[r].method for r in levels[1]}
    assert first == {"regressor", "fs", "oracle"} and second == {"proposed", "proposals"}
    # longest expected runs first within a level: Oracle, then the regressor, then FS
    assert [by_id[r].method for r in levels[0]] == ["oracle", "regressor", "fs"]
    assert len(levels) == 2
    # a finished prerequisite lets its dependants start in the first level
    reg = next(r for r, c in by_id.items() if c.stage == "regressor")
    fs = next(r for r, c in by_id.items() if c.method == "fs")
    levels = plan.levels(done={reg, fs})
    assert len(levels) == 1 and set(levels[0]) == set(by_id) - {reg, fs}


def test_plan_ready_and_blocked():
    """What the Tune driver releases: runs whose prerequisites all finished, longest first; a failed
    prerequisite blocks its dependants (and theirs)."""
    cfgs = get_space("smoke").configs("smoke", [0], labeled=[5], base={"data_hash": "h"})
    plan = build_plan(cfgs)
    method = {
        rid: plan.runs[rid].method if plan.runs[rid].stage == "segmenter" else "reg" for rid in plan.runs
    }
    reg = next(r for r, m in method.items() if m == "reg")
    fs = next(r for r, m in method.items() if m == "fs")
    assert [method[r] for r in plan.ready(done=set())] == ["oracle", "reg", "fs"]
    assert [method[r] for r in plan.ready(done={reg})] == ["proposed", "oracle", "fs"]
    assert [method[r] for r in plan.ready(done={reg}, exclude={fs})] == ["proposed", "oracle"]
    assert set(plan.ready(done=set(plan.runs))) == set()
    assert [method[r] for r in plan.blocked({fs})] == ["proposals"]
    assert plan.blocked(set()) == []


def test_plan_levels_follow_chains_of_any_depth():
    """Three chained runs make three levels (SLURM array mode then chains three arrays)."""
    a, b, c = (RunConfig.from_preset("smoke", method="fs", seed=s, data_hash="h") for s in (1, 2, 3))
    plan = Plan(runs={"a": a, "b": b, "c": c}, requested=["c"], deps={"a": [], "b": ["a"], "c": ["b"]})
    assert plan.levels(set()) == [["a"], ["b"], ["c"]]
    assert plan.levels({"a"}) == [["b"], ["c"]]
    assert plan.closure("c") == ["a", "b"] and plan.blocked({"a"}) == ["b", "c"]
    assert plan.ready({"a"}) == ["b"]


def test_busy_lock_probe_never_blocks(tmp_path):
    """A trial checks the run's lock (and its unfinished prerequisites') without waiting."""
    import time

    from filelock import FileLock

    from suite.run_lock import busy_lock

    cfg = RunConfig.from_preset("smoke", method="proposed", data_hash="h")
    exp = ExperimentPaths(tmp_path)
    exp.runs_dir.mkdir(parents=True)
    assert busy_lock(cfg, tmp_path) is None
    reg = exp.run(cfg.regressor_config().run_id)
    held = FileLock(str(reg.lock))
    held.acquire()
    try:
        t0 = time.monotonic()
        assert busy_lock(cfg, tmp_path) == reg.lock  # the prerequisite is being trained elsewhere
        assert time.monotonic() - t0 < 1.0
    finally:
        held.release()
    assert busy_lock(cfg, tmp_path) is None


def test_ray_checkpoint_copied_back_only_when_newer(tmp_path):
    import torch

    from suite.paths import RunPaths
    from suite.ray_glue.train import checkpoint_epoch, restore_from_checkpoint_dir

    run = RunPaths(tmp_path / "runs" / "seg-fs-x")
    ck = tmp_path / "ray-ckpt"
    ck.mkdir()
    torch.save({"epoch": 3, "run_id": run.run_id}, ck / "checkpoint_last.pt")
    (ck / "metrics.csv").write_text("epoch,split,volume,metric,value\n3,train,,loss_ce,0.5\n")
    (ck / "meta.json").write_text(json.dumps({"run_id": run.run_id, "epoch": 3}))
    assert restore_from_checkpoint_dir(ck, run)  # run directory empty: the Ray checkpoint is newer
    assert checkpoint_epoch(run.checkpoint_last) == 3 and "0.5" in run.metrics.read_text()
    torch.save({"epoch": 5, "run_id": run.run_id}, run.checkpoint_last)
    assert not restore_from_checkpoint_dir(ck, run)  # the run's own checkpoint is newer: kept
    assert checkpoint_epoch(run.checkpoint_last) == 5
    (ck / "meta.json").write_text(json.dumps({"run_id": "other", "epoch": 9}))
    assert not restore_from_checkpoint_dir(ck, run)  # another run's checkpoint is never used


def test_progress_counts_runs_not_events():
    """A restored Tune experiment re-reports a trial whose run finished before this launch, and a run can
    finish in a later round: the progress line counts each run once (it once said "6/5 runs finished")."""
    from suite.ray_glue.progress import Progress

    prog = Progress(label="x", total=5, already=frozenset({"a"}))
    for rid in ("a", "b", "b", "c"):
        prog.mark(rid, finished=True)
    prog.mark("d", failed=True)
    prog.mark("d", failed=True)
    prog.mark("c", failed=True)  # a finished run stays finished
    assert prog.line().startswith("x: 3/5 runs finished (1 already done), 0 running, 1 failed")
    assert prog.finished == 2
    prog.mark("d", finished=True)  # retried and finished
    assert " 4/5 " in prog.line() and "0 failed" in prog.line()


def test_dependency_searcher_releases_runs_as_prerequisites_finish(tmp_path):
    """Tune's searcher: at most ``max_concurrent`` live trials; each free slot gets the longest run whose
    prerequisites finished (a Proposed run starts while FS and Oracle are still queued or running: no barrier
    between dependency levels); a failed prerequisite blocks its dependants; FINISHED once nothing runs and
    nothing can start."""
    from ray.tune.search import Searcher

    from suite.ray_glue.progress import Progress, set_active_progress
    from suite.ray_glue.resources import TrialOptions
    from suite.ray_glue.trials import DependencySearcher

    cfgs = get_space("smoke").configs("smoke", [0], labeled=[5], base={"data_hash": "h"})
    plan = build_plan(cfgs)
    kind = {r: c.method if c.stage == "segmenter" else "reg" for r, c in plan.runs.items()}
    opts = TrialOptions(experiment_root=str(tmp_path))
    s = DependencySearcher(plan, done=(), opts=opts, max_concurrent=2)

    def run(trial: str) -> str | None:
        out = s.suggest(trial)
        return out if out in (None, Searcher.FINISHED) else kind[out["trial"]["run_id"]]

    done = {"done": 1, "busy": 0}
    progress = Progress(label="x", total=len(plan.runs))
    set_active_progress(progress)
    assert (run("t1"), run("t2"), run("t3")) == ("oracle", "reg", None)  # two slots
    assert s.waiting() == 3 and progress.line().startswith("x: 0/5 runs finished (0 already done), 0 running")
    assert "3 waiting for prerequisites or a slot" in progress.line()
    s.on_trial_complete("t2", result=done)  # the regressor finished: its Proposed run is ready
    assert run("t3") == "proposed"  # before FS, which has no prerequisite but is shorter
    s.on_trial_complete("t1", result=done)
    assert run("t4") == "fs" and run("t5") is None
    s.on_trial_complete("t3", result=done)
    s.on_trial_complete("t4", error=True)  # FS failed: Proposals can never start
    assert s.waiting() == 0 and run("t5") == Searcher.FINISHED and "waiting" not in progress.line()
    set_active_progress(None)


def test_tune_dry_run_prints_the_plan_by_phase_and_starts_nothing(prepared_small, tmp_path, capsys):
    """`suite tune --dry-run`: the runs a launch would make (the constraints space with one seed: 16
    Proposed/Oracle and FS asked for, 4 regressors needed), by dependency phase; no Ray, no folder written."""
    from suite.cli import main

    out = tmp_path / "results"
    argv = [
        "tune",
        "--data",
        str(prepared_small),
        "--space",
        "constraints",
        "--seeds",
        "0",
        "--preset",
        "smoke",
    ]
    assert main([*argv, "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "# runs: 21 (17 asked for by the space 'constraints', 4 prerequisites), 0 finished" in text
    phases = [ln for ln in text.splitlines() if ln.startswith("# phase")]
    # the regressors, FS and the 8 Oracle runs first; the 8 Proposed runs need their regressor
    assert phases == [
        "# phase 1: 13 run(s) without unfinished prerequisites",
        "# phase 2: 8 run(s) after phase 1",
    ]
    assert sum(ln.startswith("#   reg-") for ln in text.splitlines()) == 4
    assert not out.exists()
