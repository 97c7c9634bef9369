"""experiment.json (one writer, one schema, merge rules) and ExperimentSpec (the API refuses what the CLI
refuses). Fast: no Ray, no SLURM."""

from __future__ import annotations

import json

import pytest

from suite.config import RunConfig
from suite.errors import InputError
from suite.experiment import SCHEMA_VERSION, ExperimentRecord, read_record, record_launch, run_entry
from suite.experiment_spec import ExperimentSpec
from suite.paths import ExperimentPaths
from suite.testing.synthetic_runs import write_run


def _record(**changes) -> ExperimentRecord:
    fields = {
        "name": "smoke-smoke",
        "launcher": "ray",
        "data": "/d",
        "data_hash": "h",
        "preset": "smoke",
        "space": "smoke",
        "seeds": [0],
        "labeled": [5, 10],
        "methods": None,
        "overrides": [],
        "search": "grid",
        "cohort": {"n_patients": 30},
    }
    return ExperimentRecord(**{**fields, **changes})


def _cfg(method: str, seed: int = 0) -> RunConfig:
    return RunConfig.from_preset("smoke", method=method, seed=seed, data_hash="h")


def test_first_launch_writes_schema_2(tmp_path):
    exp = ExperimentPaths(tmp_path / "e")
    fs = _cfg("fs")
    record_launch(exp, _record(runs={fs.run_id: run_entry(fs, True)}), {"at": "t0", "launcher": "ray"})
    doc = json.loads(exp.experiment.read_text())
    assert doc["schema_version"] == SCHEMA_VERSION == 2
    assert doc["name"] == "smoke-smoke" and doc["created_at"] == "t0" and "created" not in doc
    assert doc["cohort"] == {"n_patients": 30} and doc["launches"] == [{"at": "t0", "launcher": "ray"}]
    assert doc["runs"][fs.run_id] == {
        "stage": "segmenter",
        "method": "fs",
        "n_labeled": fs.n_labeled,
        "seed": 0,
        "requested": True,
    }


def test_relaunch_merges_once_defined_rules(tmp_path):
    exp = ExperimentPaths(tmp_path / "e")
    fs0, fs1, reg = _cfg("fs", 0), _cfg("fs", 1), _cfg("proposed").regressor_config()
    first = _record(runs={fs0.run_id: run_entry(fs0, True), reg.run_id: run_entry(reg, False)})
    record_launch(exp, first, {"at": "t0"})
    second = _record(
        seeds=[1],
        labeled=[20],
        launcher="slurm-array",
        runs={fs1.run_id: run_entry(fs1, True), reg.run_id: run_entry(reg, True)},
        cohort={},
    )
    out = record_launch(exp, second, {"at": "t1"})
    assert out.seeds == [0, 1] and out.labeled == [5, 10, 20]  # unions
    assert set(out.runs) == {fs0.run_id, fs1.run_id, reg.run_id}  # runs merged, not overwritten
    assert out.runs[reg.run_id]["requested"] is True
    assert out.created_at == "t0" and [x["at"] for x in out.launches] == ["t0", "t1"]
    assert out.launcher == "slurm-array" and out.cohort == {"n_patients": 30}  # latest, or kept when unknown
    # requested stays true once asked for
    record_launch(exp, _record(runs={fs0.run_id: run_entry(fs0, False)}), {"at": "t2"})
    assert read_record(exp).runs[fs0.run_id]["requested"] is True
    # methods: a list unions with a list, None (every method) absorbs it
    record_launch(exp, _record(methods=["fs"]), {"at": "t3"})
    assert read_record(exp).methods is None


@pytest.mark.parametrize(
    "key, value", [("space", "paper"), ("preset", "paper"), ("data_hash", "x"), ("overrides", ["a=1"])]
)
def test_another_experiment_in_the_same_folder_is_refused(tmp_path, key, value):
    exp = ExperimentPaths(tmp_path / "e")
    record_launch(exp, _record(), {"at": "t0"})
    before = exp.experiment.read_text()
    with pytest.raises(
        InputError, match=rf"experiment.json: this experiment folder was made with {key}="
    ) as e:
        record_launch(exp, _record(**{key: value}), {"at": "t1"})
    assert "\n" not in str(e.value) and "--experiment NAME" in str(e.value)
    assert exp.experiment.read_text() == before  # nothing half-written


def test_a_single_run_joins_a_space_experiment(tmp_path):
    """``suite run`` into a grid's folder: recorded, the grid's identity kept."""
    exp = ExperimentPaths(tmp_path / "e")
    record_launch(exp, _record(), {"at": "t0"})
    cfg = _cfg("oracle", 3)
    local = ExperimentRecord(
        name="e", launcher="local", data="/d", data_hash="h", preset="paper", seeds=[3], labeled=[5]
    )
    local.runs = {cfg.run_id: run_entry(cfg, True)}
    out = record_launch(exp, local, {"at": "t1", "command": ["suite", "run"]})
    assert (out.space, out.preset, out.launcher) == ("smoke", "smoke", "local")
    assert cfg.run_id in out.runs and out.seeds == [0, 3]


def test_old_files_are_read_and_upgraded(tmp_path):
    """A schema-1 file (before schema_version: ``created``, the name under ``experiment``, unknown keys)."""
    exp = ExperimentPaths(tmp_path / "e")
    exp.root.mkdir()
    old = {
        "experiment": "smoke-smoke",
        "space": "smoke",
        "preset": "smoke",
        "seeds": [0],
        "labeled": [5, 10],
        "overrides": [],
        "search": "grid",
        "data": "/d",
        "data_hash": "h",
        "launcher": "ray",
        "created": "2026-01-01T00:00:00+00:00",
        "runs": {"seg-a": {"stage": "segmenter", "requested": True}},
        "launches": [{"at": "t0"}],
        "command": ["suite", "tune"],
    }
    exp.experiment.write_text(json.dumps(old))
    rec = read_record(exp)
    assert rec.name == "smoke-smoke" and rec.created_at == "2026-01-01T00:00:00+00:00"
    assert rec.extra == {"command": ["suite", "tune"]}
    out = record_launch(exp, _record(), {"at": "t1"})
    doc = json.loads(exp.experiment.read_text())
    assert doc["schema_version"] == 2 and doc["created_at"] == "2026-01-01T00:00:00+00:00"
    assert doc["command"] == ["suite", "tune"] and "seg-a" in doc["runs"] and len(out.launches) == 2


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "unreadable"),
        ("[1, 2]", "not a JSON object"),
        ('{"seeds": "0"}', "field seeds='0' has the wrong type"),
        ('{"schema_version": 9}', "schema_version 9 is not one this version reads"),
    ],
)
def test_damaged_file_one_line(tmp_path, text, match):
    exp = ExperimentPaths(tmp_path / "e")
    exp.root.mkdir()
    exp.experiment.write_text(text)
    with pytest.raises(InputError, match=match) as e:
        record_launch(exp, _record(), {"at": "t"})
    assert "\n" not in str(e.value) and str(exp.experiment) in str(e.value)


def test_analysis_reads_old_and_new_records(tmp_path):
    from analysis.load import load_experiment

    for layout in ("old", "new"):
        root = tmp_path / layout / "smoke-smoke"
        write_run(root, method="fs", n_labeled=5, seed=0)
        exp = ExperimentPaths(root)
        if layout == "old":
            exp.experiment.write_text(json.dumps({"experiment": "smoke-smoke", "cohort": "phantom"}))
        else:
            record_launch(exp, _record(cohort={"kind": "phantom", "n_patients": 30}), {"at": "t"})
        loaded = load_experiment(root)
        assert loaded.name == "smoke-smoke" and loaded.cohort == "phantom"


# ---------------------------------------------------------------------------------------------- spec
@pytest.mark.parametrize(
    "changes, match",
    [
        ({"workers_per_trial": 0}, r"--workers-per-trial 0: must be >= 1"),
        ({"workers_per_trial": 2, "gpus_per_trial": 0.5}, r"DDP ranks need a whole GPU each"),
        ({"gpus_per_trial": -1}, r"--gpus-per-trial -1: must be >= 0"),
        ({"cpus_per_trial": 0}, r"--cpus-per-trial 0: must be > 0"),
        ({"max_concurrent": 0}, r"--max-concurrent 0: must be >= 1"),
        ({"max_failures": -1}, r"--max-failures -1: must be >= 0"),
        ({"num_cpus": 0}, r"--num-cpus 0: must be >= 1"),
        ({"search": "bayes"}, r"--search 'bayes': must be one of grid, random"),
        ({"num_samples": 0}, r"--num-samples 0: must be >= 1"),
        ({"experiment": "a/b"}, r"--experiment 'a/b': a folder name without '/'"),
        ({"experiment": ".hidden"}, r"not starting with '\.'"),
        ({"overrides": ["data_hash=x"]}, r"--set data_hash=x: set by the launcher"),
        ({"overrides": "seg_epochs=1"}, r"--set 'seg_epochs=1': give a list of values"),
        ({"seeds": [0, "1"]}, r"--seeds '1': must be a whole number"),
        ({"seeds": [True]}, r"--seeds True: must be a whole number"),
        ({"labeled": 5}, r"--labeled 5: give a list of values"),
        ({"launcher": "cron"}, r"launcher='cron': must be one of ray, slurm-ray, slurm-array"),
    ],
)
def test_spec_refuses_what_the_cli_refuses(tmp_path, changes, match):
    with pytest.raises(InputError, match=match) as e:
        ExperimentSpec(data=str(tmp_path), out=str(tmp_path), **changes)
    assert "\n" not in str(e.value)


def test_spec_out_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"--out .*file: exists and is not a folder"):
        ExperimentSpec(data=str(tmp_path), out=str(tmp_path / "file"))


def test_spec_paths_absolute_and_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = ExperimentSpec(
        data="prep", out="res", seeds=[1, 2], labeled=[5], methods=["fs"], overrides=["a=1"]
    )
    assert spec.data == str(tmp_path / "prep") and spec.out == str(tmp_path / "res")
    assert spec.seeds == (1, 2) and spec.methods == ("fs",) and spec.overrides == ("a=1",)
    assert ExperimentSpec.from_dict(spec.to_dict()) == spec
    assert spec.replace(preset="smoke").root == tmp_path / "res" / "smoke-smoke"
    assert spec.ray_options_set() == [] and spec.replace(max_concurrent=2).ray_options_set() == [
        "max_concurrent"
    ]
    with pytest.raises(InputError, match="unknown key"):
        ExperimentSpec.from_dict({**spec.to_dict(), "bogus": 1})


def test_cli_and_api_refuse_alike(tmp_path, capsys):
    from suite.cli import main

    base = ["tune", "--data", str(tmp_path), "--out", str(tmp_path)]
    assert main(base + ["--workers-per-trial", "0"]) == 2
    assert "--workers-per-trial 0: must be >= 1" in capsys.readouterr().err
    assert main(base + ["--experiment", "a/b"]) == 2
    assert "--experiment 'a/b'" in capsys.readouterr().err
    assert main(base + ["--num-cpus", "0"]) == 2
    assert "--num-cpus 0: must be >= 1" in capsys.readouterr().err
    slurm = ["slurm", "submit", "--data", str(tmp_path), "--out", str(tmp_path), "--dry-run"]
    assert main(slurm + ["--mode", "array", "--max-concurrent", "2"]) == 2
    assert "--max-concurrent apply to --mode ray" in capsys.readouterr().err
