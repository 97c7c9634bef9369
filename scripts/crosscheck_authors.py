"""Side by side with the authors' code: the same data, initial weights, data order and dropout seeds through
their ``main.py`` (LIVIAETS/semi_curriculum) and through ``suite run --preset code``, epoch by epoch.

    .venv/bin/python scripts/crosscheck_authors.py --data PREPARED --authors ~/semi_curriculum \\
        --their-python ~/envs/theirs/bin/python --labeled 5 --seeds 0 1 2 --epochs 20 --methods fs
    .venv/bin/python scripts/crosscheck_authors.py --data PREPARED --authors ~/semi_curriculum \\
        --their-python ~/envs/theirs/bin/python --their-pythonpath ~/site --seeds 0 --epochs 10 \\
        --methods oracle
    .venv/bin/python scripts/crosscheck_authors.py ... --check-only   # only step 1

Their code is never part of the suite: give a checkout (``--authors``) and a Python that runs it
(``--their-python``; ``--their-pythonpath`` adds folders to its PYTHONPATH only, e.g. one holding
scikit-image). Everything is written under ``--work``:

1. ``data/ACDC-2D-LS/``: the prepared data (``suite prepare``) at ``--size`` in their layout, for the split
   of ``--labeled n`` (the suite's ``split_slices``: ``--split-seed``, scaled to the cohort): ``train_b_<n>``
   (labeled), ``train_r_<n>`` (unlabeled), ``val_20`` (the segmenter's validation patients), each with
   ``img/`` (8-bit PNG, as ``dataloader.py:33-38`` reads them) and ``gt/`` (the labels remapped {3: 3, else
   0}, ``learn_size.make:83-84``), slices named ``<patient>_<frame>_0_<slice>.png``
   (``preprocess/slice_acdc.py:117``), grouped per volume by ``G_RGX`` (``learn_size.make:13``);
2. ``weights/seed<k>.pt``: the suite run's initial segmenter (``initial_segmenter``: their ENet variant,
   4 channels) under their key names (the inverse of ``suite.models.authors_weights``), with the tensors
   their ``ENet`` holds but never calls drawn as their ``weights_init`` would; a plain state_dict;
3. ``orders/<method>-s<k>-e<E>.json``: per epoch the suite's labeled and unlabeled batches (file names) and
   the torch seed the suite sets before the epoch (dropout);
4. FIRST, one labeled and one unlabeled slice (the first of epoch 0's orders) through the exported weights in
   their network, ``CrossEntropy``, ``NaivePenalty`` and ``PreciseBounds`` (their Python) and in the suite's
   segmenter stage: loss values and every parameter gradient, in training mode (same torch seed: the same
   dropout masks if both draw them alike) and in eval mode (no dropout). PASS needs both within
   ``VALUE_RTOL``/``GRAD_RTOL``; a FAIL stops here (exit 1);
5. per method and seed: their ``main.py`` with ``learn_size.make``'s arguments for ``fs_%`` (``:143-151``)
   or ``semi_oracle_size_%`` (``:156-165``), through ``crosscheck_authors_side.py`` (copied next to the
   data: it loads the weights, feeds the exported order and seeds each epoch; its docstring says what and
   why), then ``suite run --preset code`` on the same data; sequentially, one thread each;
6. per epoch, side by side: the validation 3-D Dice of the LV (theirs: ``val_batch_dice.npy``; ours:
   ``dice_mean``), the mean per-slice 2-D Dice (``val_dice.npy``; ``dice2d_slices``), the mean CE of the
   labeled images, the unweighted penalty per unlabeled image (their logged loss / λ) and the epoch time
   (train + validation); the mean of the last ``--window`` epochs; the load average before and after each
   run. Printed, and written to ``--work``/``crosscheck-<methods>-e<E>.json`` and ``.csv``.

Exit codes: 0 done, 1 the one-slice check failed, 2 a bad input (one line naming it and the fix).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from suite.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SIDE = Path(__file__).with_name("crosscheck_authors_side.py")

# learn_size.make:13-15 (G_RGX, B_DATA, NET) and the arguments every segmenter recipe passes (:149-151)
G_RGX = r"(patient\d+_\d+_\d+)_\d+"
B_DATA = "[('img', png_transform, False), ('gt', gt_transform, True)]"
NETWORK = "ENet"
N_CLASS = 4
VAL_FOLDER = "val_20"
AUTHORS_MODULES = (
    "main.py",
    "dataloader.py",
    "networks.py",
    "losses.py",
    "bounds.py",
    "utils.py",
    "layers.py",
)
THEIR_IMPORTS = (
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "PIL",
    "tqdm",
    "scipy",
    "skimage.io",
    "skimage.transform",
)

# one slice, same weights: float32 sums in another order (their einsum, our sum) differ in the last bits
VALUE_RTOL = 1e-5
GRAD_RTOL = 1e-4  # of the largest gradient entry: a different dropout mask or loss is off by far more

METHODS = ("fs", "oracle")
UNUSED_INIT_AXIS = ("crosscheck", "authors-unused-tensors")


# ------------------------------------------------------------------------------------------- their layout
def their_recipe(method: str, n: int, lam: float, gamma: float) -> dict[str, Any]:
    """``learn_size.make``'s losses, folders and training folders of ``fs_%`` / ``semi_oracle_size_%``, with
    the run's λ and γ (the code preset's 1e-2 and 0.1, their values)."""
    ce = "('CrossEntropy', {'idc': [0, 3]}, None, None, None, 1)"
    if method == "fs":
        return {
            "losses": f"[{ce}]",
            "folders": f"{B_DATA}+[('gt', gt_transform, True)]",
            "training_folders": [f"train_b_{n}"],
            "val_loader_id": None,
        }
    if method == "oracle":
        penalty = (
            "('NaivePenalty', {'idc': [3]}, 'PreciseBounds', "
            f"{{'margin': {gamma!r}, 'mode': 'percentage'}}, 'soft_size', {lam!r})"
        )
        return {
            "losses": f"[[{ce}], [{penalty}]]",
            "folders": f"[{B_DATA}+[('gt', gt_transform, True)], {B_DATA}+[('gt', dummy_gt, False)]]",
            "training_folders": [f"train_b_{n}", f"train_r_{n}"],
            "val_loader_id": 0,
        }
    raise ValueError(f"method {method!r}: not one of {', '.join(METHODS)}")


def main_args(dataset: Path, workdir: Path, epochs: int, recipe: dict[str, Any]) -> list[str]:
    """Their ``main.py`` command line as ``learn_size.make:149-151`` writes it, plus ``--cpu`` (the suite runs
    on the CPU here: the same device for the timings and the numerics)."""
    args = [
        f"--dataset={dataset}",
        "--batch_size=1",
        "--group",
        "--schedule",
        f"--n_epoch={epochs}",
        f"--workdir={workdir}",
        "--csv=metrics.csv",
        f"--n_class={N_CLASS}",
        "--metric_axis",
        "3",
        f"--grp_regex={G_RGX}",
        "--validation_folder",
        VAL_FOLDER,
        "--in_memory",
        f"--network={NETWORK}",
        f"--losses={recipe['losses']}",
        "--training_folders",
        *recipe["training_folders"],
        f"--folders={recipe['folders']}",
        "--cpu",
    ]
    if recipe["val_loader_id"] is not None:
        args += ["--val_loader_id", str(recipe["val_loader_id"])]
    return args


def slice_names(data: Any) -> list[str]:
    """Their file name of every prepared slice: ``<patient>_<frame number>_0_<slice>.png``
    (``preprocess/slice_acdc.py:117``; the frame number as in ``patientXXX_frameYY.nii.gz``; augmentation
    copy 0)."""
    vols = data.manifest["volumes"]
    frames = []
    for v in vols:
        m = re.search(r"_frame(\d+)$", v["image_name"])
        if m is None:
            raise ValueError(f"volume {v['volume']}: image name {v['image_name']!r} has no _frameNN")
        frames.append(m.group(1))
    vi = data.manifest["slices"]["volume"]
    return [f"{data.patient[i]}_{frames[vi[i]]}_0_{data.slice_index[i]}.png" for i in range(len(data))]


def convert(data: Any, cfg: Any, root: Path) -> dict[str, list[str]]:
    """Write the run's split in their layout under ``root`` (replacing what is there); returns
    ``{folder: patients}``."""
    from PIL import Image

    from suite.stages.base import resized_arrays
    from suite.stages.segmenter_data import split_slices

    lab, unl, val = split_slices(cfg, data)
    images, labels = resized_arrays(data, cfg.image_size)
    names = slice_names(data)
    folders = {f"train_b_{cfg.n_labeled}": lab, f"train_r_{cfg.n_labeled}": unl, VAL_FOLDER: val}
    if root.exists():
        shutil.rmtree(root)
    out: dict[str, list[str]] = {}
    for folder, idx in folders.items():
        for sub in ("img", "gt"):
            (root / folder / sub).mkdir(parents=True)
        for i in idx:
            Image.fromarray(images[i], mode="L").save(root / folder / "img" / names[i])
            gt = np.where(labels[i] == 3, 3, 0).astype(np.uint8)  # learn_size.make:83-84
            Image.fromarray(gt, mode="L").save(root / folder / "gt" / names[i])
        out[folder] = sorted({str(p) for p in np.asarray(data.patient)[idx]})
    return out


# ------------------------------------------------------------------------------------- weights and order
def export_weights(cfg: Any) -> dict[str, torch.Tensor]:
    """The run's initial segmenter (``initial_segmenter``, ``seg_arch: enet-authors``) as a state_dict of
    their ``networks.ENet(1, C)``: the replica's tensors under their names, and the tensors their module
    holds but never calls (``out_025``, ``out_05``: convolutions with their ``weights_init``, PyTorch's
    default bias; the PReLU of each upsampling bottleneck: 0.25), drawn from a private generator so the
    suite's RNG stream is untouched. Values never reach an output: they only make a strict load succeed."""
    from torch import nn

    from suite.models.authors_weights import enet_key_to_authors
    from suite.models.enet_authors import WIDTHS
    from suite.seeding import derive_seed
    from suite.stages.segmenter import initial_segmenter

    if cfg.seg_arch != "enet-authors":
        raise ValueError(
            f"seg_arch={cfg.seg_arch!r}: only the authors' ENet (enet-authors) has their key names"
        )
    net = initial_segmenter(cfg)
    out = {enet_key_to_authors(k): v.detach().clone() for k, v in net.state_dict().items()}
    c = int(cfg.seg_out_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, *UNUSED_INIT_AXIS))
        for name, cin in (("out_025", WIDTHS[2]), ("out_05", WIDTHS[0])):
            conv = nn.Conv2d(cin, c, kernel_size=3, stride=1, padding=1)
            nn.init.xavier_normal_(conv.weight)
            out[f"{name}.weight"], out[f"{name}.bias"] = conv.weight.detach(), conv.bias.detach()
        for name in ("bottleNeck_Up_1_0", "bottleNeck_Up_2_1"):
            out[f"{name}.PReLU3.weight"] = nn.PReLU().weight.detach()
    return out


def export_order(cfg: Any, data: Any, epochs: int) -> dict[str, Any]:
    """Per epoch the batches (their file names) of the suite's labeled and unlabeled passes, and the torch
    seed the runner sets before the epoch (``epoch_seed``, rank 0 of 1)."""
    from suite.stages.checkpoint import epoch_seed
    from suite.stages.segmenter import has_unlabeled_pass, labeled_batches, unlabeled_batches
    from suite.stages.segmenter_data import split_slices

    lab, unl, _ = split_slices(cfg, data)
    names = slice_names(data)
    rows = []
    for e in range(epochs):
        unl_b = unlabeled_batches(cfg, len(unl), e, 0, 1) if has_unlabeled_pass(cfg, len(unl), e) else []
        rows.append(
            {
                "epoch": e,
                "torch_seed": epoch_seed(cfg, e, 0),
                "labeled": [[names[lab[p]] for p in gb] for gb, _ in labeled_batches(cfg, len(lab), e, 0, 1)],
                "unlabeled": [[names[unl[p]] for p in gb] for gb, _ in unl_b],
            }
        )
    return {"method": cfg.method, "seed": cfg.seed, "run_id": cfg.run_id, "epochs": rows}


# ---------------------------------------------------------------------------------------- input checks
def check_authors(path: Path) -> Path:
    if not path.is_dir():
        raise InputError(
            f"--authors {path}: no such folder; give a checkout of LIVIAETS/semi_curriculum "
            "(git clone https://github.com/LIVIAETS/semi_curriculum)"
        )
    missing = [m for m in AUTHORS_MODULES if not (path / m).is_file()]
    if missing:
        raise InputError(
            f"--authors {path}: no {', '.join(missing)}; give the root of a LIVIAETS/semi_curriculum "
            f"checkout (the folder holding {', '.join(AUTHORS_MODULES)})"
        )
    return path.resolve()


def their_env(authors: Path, pythonpath: list[str]) -> dict[str, str]:
    """Their process: their checkout and ``--their-pythonpath`` on PYTHONPATH (nothing of the suite), one
    thread, no bytecode written into their checkout, no progress bars, a fixed hash seed (their
    ``PatientSampler`` iterates a set of names: a fixed validation order)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=os.pathsep.join([str(authors), *pythonpath]),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONHASHSEED="0",
        TQDM_DISABLE="1",
    )
    return env


def check_their_python(python: str, env: dict[str, str]) -> str:
    """Their Python runs and imports what their ``main.py`` imports; returns its torch version."""
    probe = f"import {', '.join(THEIR_IMPORTS)}; print(torch.__version__)"
    try:
        r = subprocess.run([python, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    except (FileNotFoundError, PermissionError, OSError) as e:
        raise InputError(
            f"--their-python {python}: cannot be run ({e.strerror or e}); give the path of a Python "
            "interpreter that runs the authors' code"
        ) from None
    if r.returncode != 0:
        m = re.search(r"No module named '([^']+)'", r.stderr)
        if m:
            raise InputError(
                f"--their-python {python}: cannot import {m.group(1)} (their main.py needs it); install it "
                "for that Python, or pass --their-pythonpath DIR with it (pip install --target DIR ...)"
            )
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(
            f"--their-python {python}: fails to import their dependencies ({last}); give a Python that runs "
            "the authors' code"
        )
    return r.stdout.strip()


# --------------------------------------------------------------------------------------------- configs
def suite_argv(args: argparse.Namespace, method: str, seed: int) -> list[str]:
    """``suite run`` for one method and seed: the ``code`` preset at the prepared size. ``reg_arch=resnext``
    because the code preset refuses a small image size with its regressor (which FS and the Oracle never
    build); one thread; the CPU."""
    return [
        "run",
        "--data",
        str(Path(args.data).resolve()),
        "--out",
        str(args.work / "suite"),
        "--preset",
        "code",
        "--method",
        method,
        "--labeled",
        str(args.labeled),
        "--seed",
        str(seed),
        "--split-seed",
        str(args.split_seed),
        "--device",
        "cpu",
        "--set",
        f"image_size={args.size}",
        "--set",
        "reg_arch=resnext",
        "--set",
        f"seg_epochs={args.epochs}",
        "--set",
        "threads=1",
    ]


def suite_config(argv: list[str]) -> Any:
    """The config ``python -m suite <argv>`` builds (the CLI's own parser and ``build_config``), its data
    hash filled in as ``suite run`` does: ``run_id`` names the run directory."""
    import logging

    from suite.cli import build_parser
    from suite.commands.run import build_config
    from suite.stages.base import open_data

    # the CLI warns that reg_arch does not act on FS and the Oracle: the script sets it on purpose (quiet
    # for this call only: the level is the process's, and a caller's later runs should still warn)
    logger = logging.getLogger("suite.commands.run")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        cfg, _ = open_data(build_config(build_parser().parse_args(argv)))
    finally:
        logger.setLevel(level)
    return cfg


# ------------------------------------------------------------------------------------- one-slice check
def first_slices(cfg: Any, data: Any) -> dict[str, int]:
    """Positions (in the labeled / unlabeled slice lists) of the first slice of epoch 0's two passes."""
    from suite.stages.segmenter import labeled_batches, unlabeled_batches
    from suite.stages.segmenter_data import split_slices

    lab, unl, _ = split_slices(cfg, data)
    return {
        "ce": int(labeled_batches(cfg, len(lab), 0, 0, 1)[0][0][0]),
        "penalty": int(unlabeled_batches(cfg, len(unl), 0, 0, 1)[0][0][0]),
    }


def our_one_slice(cfg: Any, work: Path, state: dict[str, torch.Tensor], torch_seed: int) -> dict[str, Any]:
    """The suite's segmenter stage (an Oracle run) on the two slices of :func:`first_slices`: its forward,
    labeled CE and unlabeled term (λ applied as in training), values and gradients under their names."""
    from suite.models import load_authors_state_dict
    from suite.models.authors_weights import enet_key_to_authors
    from suite.paths import ExperimentPaths
    from suite.stages.base import RunContext, configure_torch, open_data
    from suite.stages.segmenter import SegmenterStage

    cfg, data = open_data(cfg)
    dev = torch.device("cpu")
    configure_torch(cfg, dev)
    root = work / "slice-check"
    ctx = RunContext(cfg, ExperimentPaths(root).run(cfg.run_id), root, data, dev, 0, 1)
    st = SegmenterStage(ctx)
    pos = first_slices(cfg, data)
    out: dict[str, Any] = {}
    for case in ("ce", "penalty"):
        for mode in ("train", "eval"):
            load_authors_state_dict(st.net, state)  # also resets the BN running statistics
            st.net.zero_grad(set_to_none=True)
            st.net.train(mode == "train")
            torch.manual_seed(torch_seed)
            if case == "ce":
                idx = st.sd.lab_idx[[pos["ce"]]]
                loss = value = st._labeled_loss(st._forward(idx), idx)
            else:
                p = np.asarray([pos["penalty"]])
                loss, value, _ = st._unlabeled_term(st._forward(st.sd.unl_idx[p]), p, p, 0)
            loss.backward()
            grads = {enet_key_to_authors(k): q.grad.detach().clone() for k, q in st.net.named_parameters()}
            out[f"{case}/{mode}"] = {"value": float(value.detach()), "grads": grads}
    return out


def compare_slice(theirs: dict[str, Any], ours: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (loss, mode): both values, their relative difference, the largest gradient difference over every
    parameter (absolute, and relative to the largest gradient entry), and PASS/FAIL."""
    rows = []
    for key in sorted(ours):
        t, o = theirs[key], ours[key]
        missing = sorted(set(o["grads"]) - set(t["grads"]))
        if missing:
            raise ValueError(f"{key}: their network has no gradient for {missing[:3]}")
        diff = max(float((t["grads"][k] - g).abs().max()) for k, g in o["grads"].items())
        scale = max(float(g.abs().max()) for g in t["grads"].values())
        v_rel = abs(t["value"] - o["value"]) / max(abs(t["value"]), 1e-30)
        g_rel = diff / max(scale, 1e-30)
        rows.append(
            {
                "check": key,
                "theirs": t["value"],
                "ours": o["value"],
                "value_rel_diff": v_rel,
                "grad_max_abs_diff": diff,
                "grad_max_abs": scale,
                "grad_rel_diff": g_rel,
                "ok": v_rel <= VALUE_RTOL and g_rel <= GRAD_RTOL,
            }
        )
    return rows


def one_slice_check(args: argparse.Namespace, cfg: Any, data: Any, env: dict[str, str]) -> dict[str, Any]:
    from suite.stages.checkpoint import epoch_seed
    from suite.stages.segmenter_data import split_slices

    state = export_weights(cfg)
    weights = args.work / "weights" / f"seed{cfg.seed}.pt"
    torch.save(state, weights)
    lab, unl, _ = split_slices(cfg, data)
    pos, names = first_slices(cfg, data), slice_names(data)
    recipe = their_recipe("oracle", cfg.n_labeled, cfg.lam, cfg.gamma)
    seed = epoch_seed(cfg, 0, 0)
    params = {
        "authors": str(args.authors),
        "dataset": str(args.work / "data" / "ACDC-2D-LS"),
        "weights": str(weights),
        "out": str(args.work / "slice-check" / "theirs.pt"),
        "names": {"ce": names[lab[pos["ce"]]], "penalty": names[unl[pos["penalty"]]]},
        "torch_seed": seed,
        "network": NETWORK,
        "n_class": N_CLASS,
        "grp_regex": G_RGX,
        "validation_folder": VAL_FOLDER,
        **{k: recipe[k] for k in ("losses", "folders", "training_folders")},
    }
    (args.work / "slice-check").mkdir(parents=True, exist_ok=True)
    run_theirs(args, env, "slice", params, args.work / "slice-check" / "theirs")
    theirs = torch.load(params["out"], weights_only=True)
    rows = compare_slice(theirs, our_one_slice(cfg, args.work, state, seed))
    return {"slices": params["names"], "torch_seed": seed, "rows": rows, "ok": all(r["ok"] for r in rows)}


def format_slice(res: dict[str, Any]) -> str:
    lines = [
        f"One slice, same weights (labeled {res['slices']['ce']}, unlabeled {res['slices']['penalty']}; "
        f"torch seed {res['torch_seed']}):",
        f"{'check':<14} {'theirs':>14} {'ours':>14} {'rel diff':>9} {'grad max|diff|':>15} "
        f"{'grad max|g|':>12} {'rel':>9}",
    ]
    for r in res["rows"]:
        lines.append(
            f"{r['check']:<14} {r['theirs']:>14.10f} {r['ours']:>14.10f} {r['value_rel_diff']:>9.1e} "
            f"{r['grad_max_abs_diff']:>15.3e} {r['grad_max_abs']:>12.3e} {r['grad_rel_diff']:>9.1e}  "
            f"{'PASS' if r['ok'] else 'FAIL'}"
        )
    train_ok = all(r["ok"] for r in res["rows"] if r["check"].endswith("/train"))
    lines.append(
        f"{'PASS' if res['ok'] else 'FAIL'} (tolerances: value {VALUE_RTOL:g}, gradient {GRAD_RTOL:g} of the "
        "largest entry). "
        + (
            "Training mode matches too: both draw the same dropout masks from the same torch seed."
            if train_ok
            else "Training mode differs: the dropout masks cannot be matched between the two implementations."
        )
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- runs
def run_theirs(
    args: argparse.Namespace, env: dict[str, str], mode: str, params: dict[str, Any], stem: Path
) -> None:
    """Copy the side script next to the data, write its parameters and run it with their Python."""
    side = args.work / SIDE.name
    shutil.copyfile(SIDE, side)
    stem.with_suffix(".json").write_text(json.dumps(params, indent=1) + "\n")
    with open(stem.with_suffix(".log"), "w") as log:
        r = subprocess.run(
            [args.their_python, str(side), mode, str(stem.with_suffix(".json"))],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=args.work,
        )
    if r.returncode != 0:
        tail = stem.with_suffix(".log").read_text().strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"their {mode} run failed (exit {r.returncode}): {tail[0]}; log: {stem}.log")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def train_theirs(
    args: argparse.Namespace, cfg: Any, data: Any, env: dict[str, str], tag: str
) -> dict[str, Any]:
    """Their ``main.py`` for ``cfg``'s method and seed (skipped when a finished run with the same parameters
    is in the work folder)."""
    weights = args.work / "weights" / f"seed{cfg.seed}.pt"
    torch.save(export_weights(cfg), weights)
    order = args.work / "orders" / f"{tag}.json"
    order.write_text(json.dumps(export_order(cfg, data, cfg.seg_epochs)) + "\n")
    workdir = args.work / "theirs" / tag
    recipe = their_recipe(cfg.method, cfg.n_labeled, cfg.lam, cfg.gamma)
    params = {
        "authors": str(args.authors),
        "weights": str(weights),
        "order": str(order),
        "times": str(workdir / "times.jsonl"),
        "main_args": main_args(args.work / "data" / "ACDC-2D-LS", workdir, cfg.seg_epochs, recipe),
    }
    stem, done = args.work / "theirs" / f"{tag}-train", args.work / "theirs" / f"{tag}-done.json"
    if done.exists() and json.loads(done.read_text())["params"] == params:
        return json.loads(done.read_text())
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    record = {"params": params, "load_start": loadavg()}
    t0 = time.perf_counter()
    run_theirs(args, env, "train", params, stem)
    record.update(wall_s=time.perf_counter() - t0, load_end=loadavg())
    done.write_text(json.dumps(record, indent=1) + "\n")
    return record


def train_ours(args: argparse.Namespace, argv: list[str], run_dir: Path, tag: str) -> dict[str, Any]:
    """``python -m suite run`` (not again when its run is finished: the record of the run that trained it is
    kept)."""
    rec_path = args.work / "suite" / f"{tag}-record.json"
    if (run_dir / "summary.json").exists() and rec_path.exists():
        return json.loads(rec_path.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SUITE_NO_PBAR": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    record: dict[str, Any] = {"argv": ["python", "-m", "suite", *argv], "load_start": loadavg()}
    t0 = time.perf_counter()
    with open(args.work / "suite" / f"{tag}.log", "w") as log:
        r = subprocess.run(
            [sys.executable, "-m", "suite", *argv], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    if r.returncode != 0:
        raise RuntimeError(f"suite run failed (exit {r.returncode}); log: {args.work / 'suite' / tag}.log")
    if not (run_dir / "summary.json").exists():
        raise RuntimeError(
            f"{run_dir}: no summary.json; the suite run did not write the run the config names"
        )
    record.update(wall_s=time.perf_counter() - t0, load_end=loadavg())
    rec_path.write_text(json.dumps(record, indent=1) + "\n")
    return record


# ------------------------------------------------------------------------------------ per-epoch tables
def their_epochs(workdir: Path, order: dict[str, Any], weight: float) -> dict[str, list[float]]:
    """Per epoch from their ``main.py`` outputs: the LV's 3-D Dice per volume (``val_batch_dice.npy``) and
    per slice (``val_dice.npy``) averaged, the logged loss per iteration (``tra_loss.npy``: the labeled
    batches, then the unlabeled ones, each weighted by the recipe's weight), the timed epoch."""
    lv = 3
    vb, vd = np.load(workdir / "val_batch_dice.npy"), np.load(workdir / "val_dice.npy")
    tl = np.load(workdir / "tra_loss.npy")[:, :, 0]
    n_lab = len(order["epochs"][0]["labeled"])
    seconds: dict[int, float] = {}
    for line in (workdir / "times.jsonl").read_text().splitlines():
        t = json.loads(line)
        seconds[t["epoch"]] = seconds.get(t["epoch"], 0.0) + t["seconds"]
    pen = tl[:, n_lab:].mean(axis=1) / weight if tl.shape[1] > n_lab else np.zeros(len(tl))
    return {
        "dice3d": vb[:, :, lv].mean(axis=1).tolist(),
        "dice2d": vd[:, :, lv].mean(axis=1).tolist(),
        "ce": tl[:, :n_lab].mean(axis=1).tolist(),
        "penalty": pen.tolist(),
        "epoch_s": [seconds[e] for e in range(len(vb))],
    }


def our_epochs(run_dir: Path) -> dict[str, list[float]]:
    from suite.stages.metrics_log import read_metrics

    m: dict[str, dict[int, float]] = {}
    for r in read_metrics(run_dir / "metrics.csv"):
        if not r["volume"]:
            m.setdefault(f"{r['split']}/{r['metric']}", {})[r["epoch"]] = r["value"]
    keys = {
        "dice3d": "val/dice_mean",
        "dice2d": "val/dice2d_slices",
        "ce": "train/loss_ce",
        "penalty": "train/loss_penalty",
        "epoch_s": "train/epoch_time_s",
    }
    return {k: [v for _, v in sorted(m[name].items())] for k, name in keys.items()}


COLUMNS = ("dice3d", "dice2d", "ce", "penalty", "epoch_s")


def summarise(theirs: dict[str, list[float]], ours: dict[str, list[float]], window: int) -> dict[str, Any]:
    def mean(x: list[float]) -> float:
        return float(np.mean(x[-window:]))

    return {
        "window": min(window, len(ours["dice3d"])),
        **{f"{k}_theirs": mean(theirs[k]) for k in ("dice3d", "dice2d")},
        **{f"{k}_ours": mean(ours[k]) for k in ("dice3d", "dice2d")},
        "epoch_s_theirs": float(np.mean(theirs["epoch_s"])),
        "epoch_s_ours": float(np.mean(ours["epoch_s"])),
    }


def format_run(run: dict[str, Any]) -> str:
    t, o = run["theirs_epochs"], run["ours_epochs"]
    head = (
        f"{run['method']} seed {run['seed']} ({len(o['dice3d'])} epochs): theirs | ours\n"
        f"{'epoch':>5}  {'3-D Dice':^15}  {'2-D Dice':^15}  {'CE':^15}  {'penalty':^19}  {'epoch s':^13}"
    )
    lines = [head]
    for e in range(len(o["dice3d"])):
        lines.append(
            f"{e:>5}  {t['dice3d'][e]:.3f} | {o['dice3d'][e]:.3f}  "
            f"{t['dice2d'][e]:.3f} | {o['dice2d'][e]:.3f}  "
            f"{t['ce'][e]:.4f}|{o['ce'][e]:.4f}  {t['penalty'][e]:>8.2f} | {o['penalty'][e]:<8.2f}  "
            f"{t['epoch_s'][e]:5.1f} | {o['epoch_s'][e]:5.1f}"
        )
    s = run["summary"]
    lines.append(
        f"mean of the last {s['window']} epochs: 3-D Dice {s['dice3d_theirs']:.3f} | {s['dice3d_ours']:.3f}, "
        f"2-D Dice {s['dice2d_theirs']:.3f} | {s['dice2d_ours']:.3f}; epoch time "
        f"{s['epoch_s_theirs']:.1f} s | {s['epoch_s_ours']:.1f} s; load average (1, 5, 15 min) theirs "
        f"{run['theirs_record']['load_start']} -> {run['theirs_record']['load_end']}, ours "
        f"{run['ours_record']['load_start']} -> {run['ours_record']['load_end']}"
    )
    return "\n".join(lines)


def write_csv(path: Path, runs: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "seed", "epoch", "implementation", *COLUMNS])
        for run in runs:
            for impl in ("theirs", "ours"):
                ep = run[f"{impl}_epochs"]
                for e in range(len(ep["dice3d"])):
                    w.writerow([run["method"], run["seed"], e, impl, *(ep[k][e] for k in COLUMNS)])


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared dataset (suite prepare's output)")
    ap.add_argument("--authors", type=Path, required=True, help="checkout of LIVIAETS/semi_curriculum")
    ap.add_argument("--their-python", required=True, help="the Python that runs their code")
    ap.add_argument(
        "--their-pythonpath",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder added to their process's PYTHONPATH only, e.g. one holding scikit-image (repeatable)",
    )
    ap.add_argument(
        "--work", type=Path, default=Path("/tmp/crosscheck"), help="work folder (default: %(default)s)"
    )
    ap.add_argument(
        "--labeled", type=int, default=5, help="n labeled patients, paper scale (default: %(default)s)"
    )
    ap.add_argument("--split-seed", type=int, default=1, help="the split's seed (default: %(default)s)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    ap.add_argument("--epochs", type=int, default=20, help="epochs of every run (default: %(default)s)")
    ap.add_argument(
        "--methods", nargs="+", choices=METHODS, default=["fs"], help="methods to run (default: fs)"
    )
    ap.add_argument(
        "--size", type=int, default=None, help="image size (default: the prepared size; a multiple of 8)"
    )
    ap.add_argument(
        "--window",
        type=int,
        default=10,
        help="the summary's mean over the last W epochs (default: %(default)s)",
    )
    ap.add_argument("--check-only", action="store_true", help="only the one-slice check")
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.window < 1:
        ap.error("--epochs and --window must be >= 1")
    return args


def run(args: argparse.Namespace) -> int:
    from suite.data.dataset import PreparedData
    from suite.log import setup_logging

    setup_logging("WARNING")
    data = PreparedData.open(args.data)
    args.size = args.size or data.size
    args.authors = check_authors(args.authors)
    args.work = args.work.resolve()
    for sub in ("weights", "orders", "theirs", "suite"):
        (args.work / sub).mkdir(parents=True, exist_ok=True)
    env = their_env(args.authors, [str(Path(p).resolve()) for p in args.their_pythonpath])
    their_torch = check_their_python(args.their_python, env)
    load_start, t0 = loadavg(), time.perf_counter()
    cfgs = {(m, s): suite_config(suite_argv(args, m, s)) for m in args.methods for s in args.seeds}
    check_cfg = suite_config(suite_argv(args, "oracle", args.seeds[0]))
    split = convert(data, check_cfg, args.work / "data" / "ACDC-2D-LS")
    print(f"data: {args.data} ({data.data_hash}) at {args.size}px -> {args.work / 'data' / 'ACDC-2D-LS'}")
    for folder, patients in split.items():
        print(f"  {folder}: {len(patients)} patients ({', '.join(patients)})")
    print(f"torch: ours {torch.__version__}, theirs {their_torch}\n")
    result: dict[str, Any] = {
        "command": [Path(sys.executable).name, *sys.argv],
        "data": str(Path(args.data).resolve()),
        "data_hash": data.data_hash,
        "size": args.size,
        "labeled": args.labeled,
        "split": split,
        "authors": str(args.authors),
        "their_python": args.their_python,
        "torch": {"ours": torch.__version__, "theirs": their_torch},
        "load_start": load_start,
    }
    result["one_slice"] = one_slice_check(args, check_cfg, data, env)
    print(format_slice(result["one_slice"]) + "\n")
    if not result["one_slice"]["ok"] or args.check_only:
        return 0 if result["one_slice"]["ok"] else 1
    runs = []
    for (method, seed), cfg in cfgs.items():
        tag = f"{method}-n{args.labeled}-s{seed}-e{args.epochs}"
        theirs_rec = train_theirs(args, cfg, data, env, tag)
        run_dir = args.work / "suite" / "runs" / cfg.run_id
        ours_rec = train_ours(args, suite_argv(args, method, seed), run_dir, tag)
        order = json.loads((args.work / "orders" / f"{tag}.json").read_text())
        weight = cfg.lam if method != "fs" else 1.0
        te, oe = their_epochs(args.work / "theirs" / tag, order, weight), our_epochs(run_dir)
        run_ = {
            "method": method,
            "seed": seed,
            "run_id": cfg.run_id,
            "theirs_epochs": te,
            "ours_epochs": oe,
            "summary": summarise(te, oe, args.window),
            "theirs_record": theirs_rec,
            "ours_record": ours_rec,
        }
        runs.append(run_)
        print(format_run(run_) + "\n")
    result.update(runs=runs, load_end=loadavg(), wall_s=time.perf_counter() - t0)
    stem = args.work / f"crosscheck-{'-'.join(args.methods)}-e{args.epochs}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    write_csv(stem.with_suffix(".csv"), runs)
    print(f"load average (1, 5, 15 min): {load_start} at the start, {result['load_end']} at the end")
    print(f"wall time {result['wall_s']:.0f} s; details in {stem}.json and {stem}.csv")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
