"""The CLI's edges: options on either side of the sub-command, a bad log level, a closed pipe, an output path
that is a file, non-text config files, defaults in ``--help``, ``--list-keys``, and honest exit codes."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.cli import build_parser, main


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_and_debug_work_on_either_side_of_the_subcommand(where: str) -> None:
    argv = ["-q", "--debug"] if where == "before" else []
    args = build_parser().parse_args([*argv, "info", "X", *([] if where == "before" else ["-q", "--debug"])])
    assert args.quiet and args.debug
    plain = build_parser().parse_args(["info", "X"])
    assert not plain.quiet and not plain.debug


def test_bad_log_level_is_one_line_exit_2(monkeypatch, capsys) -> None:
    monkeypatch.setenv("SUITE_LOG_LEVEL", "bogus")
    assert main(["run", "--list-keys"]) == 2
    err = _one_line_error(capsys)
    assert "SUITE_LOG_LEVEL='bogus'" in err and "DEBUG" in err


def test_list_keys_prints_every_config_field(capsys) -> None:
    from suite.config import RunConfig

    assert main(["run", "--list-keys", "--preset", "smoke"]) == 0
    out = capsys.readouterr().out
    for name in RunConfig.field_names():
        assert f"  {name} " in out
    assert "'smoke'" in out.splitlines()[0]


def test_help_shows_defaults() -> None:
    import argparse

    from suite.cli import HelpFormatter

    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--k", type=int, default=0, help="a count")
    p.add_argument("--w", type=int, default=3, help="a width (default 3, stated here)")
    p.add_argument("--name", default=None, help="optional")
    text = p.format_help()
    assert "a count (default: 0)" in text and "(default: 3)" not in text and "None" not in text
    run_help = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "--list-keys" in run_help and "(default: None)" not in run_help


def test_closed_stdout_pipe_is_quiet_success(tmp_path: Path) -> None:
    # the reader is gone before the first byte is written (as `suite ... | head` once head has exited)
    r, w = os.pipe()
    os.close(r)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "suite", "run", "--list-keys"], stdout=w, stderr=subprocess.PIPE, env=env
    )
    os.close(w)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr.decode().strip() == ""


def test_out_that_is_a_file_is_one_line_exit_2(prepared_small, tmp_path, capsys) -> None:
    f = tmp_path / "afile"
    f.write_text("keep")
    assert main(["run", "--data", str(prepared_small), "--preset", "smoke", "--out", str(f)]) == 2
    assert "exists and is not a folder" in _one_line_error(capsys)
    assert f.read_text() == "keep"


@pytest.mark.parametrize("content", [os.urandom(256) + b"\xff\xfe", b"\x00\x01binary", b"- a\n- b\n"])
def test_garbage_yaml_config_is_one_line_exit_2(prepared_small, tmp_path, capsys, content) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(content)
    rc = main(["run", "--data", str(prepared_small), "--config", str(cfg), "--out", str(tmp_path / "e")])
    assert rc == 2
    assert str(cfg) in _one_line_error(capsys)
    assert not (tmp_path / "e").exists()


def test_sigterm_on_run_exits_nonzero_and_leaves_a_resumable_run(prepared_small, tmp_path) -> None:
    out = tmp_path / "exp"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "SUITE_NO_PBAR": "1"}
    cmd = [sys.executable, "-m", "suite", "run", "--data", str(prepared_small), "--preset", "smoke"]
    cmd += ["--method", "fs", "--out", str(out), "--device", "cpu"]
    cmd += ["--set", "image_size=32", "--set", "threads=1", "--set", "seg_epochs=50"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not list(out.glob("runs/*/metrics.csv")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, (stdout.decode(), stderr.decode())
    assert "did not finish" in stderr.decode()
    (run_dir,) = [p.parent for p in out.glob("runs/*/config.json")]
    assert not (run_dir / "summary.json").exists() and (run_dir / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_results_respect_the_umask(tmp_path: Path, umask: int) -> None:
    from suite.atomic import atomic_path, suite_outputs, write_json_atomic

    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        with atomic_path(tmp_path / "b.bin") as p:
            p.write_bytes(b"x")
        with suite_outputs(tmp_path / "d") as d:
            (d / "f").write_text("x")
        with suite_outputs(tmp_path / "report") as d:
            (d / "sub").mkdir()
            (d / "sub" / "r.md").write_text("x")
    finally:
        os.umask(old)
    for f in ("a.json", "b.bin", "d/f", "report/sub/r.md"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o666 & ~umask, f
    for d in ("d", "report", "report/sub"):
        assert (tmp_path / d).stat().st_mode & 0o777 == 0o777 & ~umask, d


FAST_RUN = ["--preset", "smoke", "--device", "cpu", "--set", "image_size=32", "--set", "threads=1"]
FAST_RUN += ["--set", "seg_batch=4"]
UNL_FAST = ["--set", "unl_batch=32"]  # not for FS, which has no unlabeled batch (a warning would say so)


@pytest.mark.parametrize(
    "damaged, method, partial",
    [
        ("config.json", "fs", True),
        ("summary.json", "fs", False),
        ("metrics.csv", "fs", True),
        ("checkpoint_last.pt", "fs", True),
        ("checkpoint_best.pt", "proposals", False),  # the FS prerequisite's, read by Proposals
    ],
)
def test_damaged_run_file_is_one_line_with_a_fix_that_works(
    prepared_small, tmp_path, capsys, damaged, method, partial
) -> None:
    out = tmp_path / "exp"
    base = ["run", "-q", "--data", str(prepared_small), "--out", str(out), *FAST_RUN]
    base += UNL_FAST if method != "fs" else []
    fs = [*base, "--method", "fs", "--set", "seg_epochs=2"]
    if partial:
        assert main([*fs, "--stop-after-epoch", "0"]) == 75
    else:
        assert main(fs) == 0
    (fs_dir,) = [p.parent for p in out.glob("runs/*/config.json")]
    (fs_dir / damaged).write_bytes(b"\x00garbage,not,what,it,should,be\n{[")
    capsys.readouterr()
    again = fs if method == "fs" else [*base, "--method", "proposals", "--set", "seg_epochs=2"]
    assert main(again) == 2
    err = _one_line_error(capsys)
    assert str(fs_dir / damaged) in err and f"delete the run directory {fs_dir}" in err
    import shutil

    shutil.rmtree(fs_dir)  # the fix the line gives
    assert main(again) == 0


def test_slurm_submit_takes_every_experiment_option_of_tune() -> None:
    """`suite slurm submit` runs the same experiments as `suite tune`: every option that says what to run
    and how its trials run is accepted by both (only the local-Ray and output options are tune's own)."""
    choices = build_parser()._subparsers._group_actions[0].choices
    tune = {o for a in choices["tune"]._actions for o in a.option_strings}
    slurm_sub = next(a for a in choices["slurm"]._actions if isinstance(a, argparse._SubParsersAction))
    submit = {o for a in slurm_sub.choices["submit"]._actions for o in a.option_strings}
    tune_only = {"--address", "--num-cpus", "--resume", "--json"}
    assert tune - tune_only <= submit, sorted(tune - tune_only - submit)
    args = build_parser().parse_args(
        ["slurm", "submit", "--data", "d", "--out", "o", "--methods", "fs", "--search", "random"]
    )
    assert args.methods == ["fs"] and args.search == "random"


def test_recorded_versions_do_not_depend_on_what_is_imported() -> None:
    """env.json and experiment.json record one installation one way: a module's ``__version__`` may carry a
    build tag (torchvision ``0.29.1+cu130``) that the package metadata lacks."""
    code = (
        "from suite.provenance import versions; a = versions(); "
        "import torch, torchvision, numpy; print(a == versions())"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
