#!/usr/bin/env python
"""GPU throughput of the two networks (``make bench-gpu``): torch only, inputs made in-process.

Measures, on ``cuda:0``:

1. training steps/s (forward + backward + optimiser step) of ENet (Adam) and the ResNeXt regressor (SGD) at
   batch 1 and 8, fp32 and bf16 autocast, 256×256 (``--size``);
2. the aggregate training throughput of k concurrent ENet training *processes* sharing the GPU
   (k = 1, 2, 4, 8: what Ray's fractional GPUs do with several small trials per GPU);
3. where several GPUs exist, DDP scaling of the regressor (torch.distributed + NCCL, world size 1, 2, 4, …,
   ngpu; fixed per-GPU batch, images/s and efficiency vs world size 1).

Imports nothing but torch, torchvision and the two model modules (no Ray, nibabel or submitit; no data files).
Without a CUDA device it prints why and exits 0; ``--cpu`` runs every code path on the CPU with tiny step
counts and small models as a sanity check (the figures are then meaningless).

    python scripts/bench_gpu.py --out bench_gpu.json
    python scripts/bench_gpu.py --cpu                     # sanity check, ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.models.enet import ENet  # torch only
from suite.models.resnext import SizeRegressor  # torch + torchvision only


# --------------------------------------------------------------------------- one training set-up
def make_setup(
    kind: str,
    batch: int,
    size: int,
    device: torch.device,
    reg_layers: tuple[int, ...],
    channels_last: bool,
    seed: int = 0,
):
    """(model, optimiser, input, target, loss_fn) for ``kind`` in {enet, regressor}."""
    torch.manual_seed(seed)
    if kind == "enet":
        model = ENet(num_classes=2, in_channels=1, width=1.0)
        opt_fn = lambda p: torch.optim.Adam(p, lr=5e-4, betas=(0.9, 0.99))  # noqa: E731
        target = (torch.rand(batch, size, size, device=device) > 0.8).long()

        def loss_fn(out, y):
            return F.cross_entropy(out.float(), y)
    elif kind == "regressor":
        model = SizeRegressor(layers=reg_layers)
        opt_fn = lambda p: torch.optim.SGD(p, lr=5e-6, momentum=0.9, weight_decay=1e-4)  # noqa: E731
        target = torch.rand(batch, device=device) * 2000

        def loss_fn(out, y):
            return (out.float() - y).square().mean()
    else:
        raise ValueError(kind)
    model = model.to(device)
    x = torch.rand(batch, 1, size, size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = opt_fn(model.parameters())
    return model, opt, x, target, loss_fn


def train_step(model, opt, x, y, loss_fn, device: torch.device, bf16: bool) -> torch.Tensor:
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    loss = loss_fn(out, y)
    loss.backward()
    opt.step()
    return loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_second(kind: str, batch: int, bf16: bool, args, device: torch.device) -> float:
    model, opt, x, y, loss_fn = make_setup(
        kind, batch, args.size, device, args.reg_layers, args.channels_last
    )
    for _ in range(args.warmup):
        train_step(model, opt, x, y, loss_fn, device, bf16)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = train_step(model, opt, x, y, loss_fn, device, bf16)
    sync(device)
    dt = time.perf_counter() - t0
    if not torch.isfinite(loss):
        raise RuntimeError(f"{kind} batch {batch} bf16={bf16}: non-finite loss {loss.item()}")
    del model, opt, x, y
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return args.steps / dt


# --------------------------------------------------------------------------- k processes on one GPU
def _proc_worker(rank: int, k: int, args_d: dict, barrier, queue) -> None:
    device = torch.device(args_d["device"])
    torch.set_num_threads(1)
    model, opt, x, y, loss_fn = make_setup(
        "enet", 1, args_d["size"], device, tuple(args_d["reg_layers"]), args_d["channels_last"], seed=rank
    )
    for _ in range(args_d["warmup"]):
        train_step(model, opt, x, y, loss_fn, device, False)
    sync(device)
    barrier.wait()
    t0 = time.perf_counter()
    n = 0
    while n < args_d["proc_steps"] or time.perf_counter() - t0 < args_d["proc_seconds"]:
        train_step(model, opt, x, y, loss_fn, device, False)
        n += 1
        if n % 10 == 0:
            sync(device)
    sync(device)
    queue.put((rank, n, time.perf_counter() - t0))


def concurrent_processes(k: int, args, device: torch.device) -> dict:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.SimpleQueue()
    args_d = {
        "device": str(device),
        "size": args.size,
        "reg_layers": list(args.reg_layers),
        "channels_last": args.channels_last,
        "warmup": args.warmup,
        "proc_steps": args.proc_steps,
        "proc_seconds": args.proc_seconds,
    }
    procs = [ctx.Process(target=_proc_worker, args=(r, k, args_d, barrier, queue)) for r in range(k)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} of {k} ENet worker processes failed (exit codes {bad})")
    results = [queue.get() for _ in range(k)]
    per = [n / dt for _, n, dt in results]
    return {"k": k, "aggregate_steps_per_s": sum(per), "per_process_steps_per_s": sorted(per)}


# --------------------------------------------------------------------------- DDP scaling of the regressor
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, args_d: dict, queue) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cpu = args_d["device"] == "cpu"
    dist.init_process_group("gloo" if cpu else "nccl", rank=rank, world_size=world)
    try:
        device = torch.device("cpu") if cpu else torch.device("cuda", rank)
        if not cpu:
            torch.cuda.set_device(device)
        torch.set_num_threads(1)
        model, opt, x, y, loss_fn = make_setup(
            "regressor",
            args_d["ddp_batch"],
            args_d["size"],
            device,
            tuple(args_d["reg_layers"]),
            args_d["channels_last"],
            seed=0,
        )
        model = DDP(model, device_ids=None if cpu else [rank])
        opt = torch.optim.SGD(model.parameters(), lr=5e-6, momentum=0.9, weight_decay=1e-4)
        for _ in range(args_d["warmup"]):
            train_step(model, opt, x, y, loss_fn, device, args_d["ddp_bf16"])
        sync(device)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(args_d["steps"]):
            train_step(model, opt, x, y, loss_fn, device, args_d["ddp_bf16"])
        sync(device)
        dist.barrier()
        if rank == 0:
            queue.put(time.perf_counter() - t0)
    finally:
        dist.destroy_process_group()


def ddp_scaling(world: int, args, device: torch.device) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    args_d = {
        "device": device.type,
        "size": args.size,
        "reg_layers": list(args.reg_layers),
        "channels_last": args.channels_last,
        "warmup": args.warmup,
        "steps": args.steps,
        "ddp_batch": args.ddp_batch,
        "ddp_bf16": args.ddp_bf16,
    }
    mp.start_processes(
        _ddp_worker, args=(world, _free_port(), args_d, queue), nprocs=world, join=True, start_method="spawn"
    )
    dt = queue.get()
    return {
        "world_size": world,
        "per_gpu_batch": args.ddp_batch,
        "images_per_s": world * args.ddp_batch * args.steps / dt,
        "steps_per_s": args.steps / dt,
    }


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--cpu", action="store_true", help="sanity run on the CPU (tiny step counts, small models)"
    )
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--reg-layers", default="3,4,23,3", help="ResNeXt stage depths (3,4,23,3 = ResNeXt-101)")
    p.add_argument("--channels-last", action="store_true", help="NHWC weights and inputs")
    p.add_argument("--procs", default="1,2,4,8", help="concurrent ENet processes per GPU ('' to skip)")
    p.add_argument("--proc-steps", type=int, default=50, help="minimum steps per concurrent process")
    p.add_argument("--proc-seconds", type=float, default=10.0, help="minimum seconds per concurrent process")
    p.add_argument("--ddp-batch", type=int, default=8, help="per-GPU batch for the DDP regressor")
    p.add_argument("--ddp-bf16", action="store_true")
    p.add_argument(
        "--ddp-cpu-world", type=int, default=2, help="with --cpu: gloo world size of the DDP check"
    )
    p.add_argument("--out", type=Path, help="write the results as JSON to this path")
    args = p.parse_args(argv)

    if args.cpu:
        device = torch.device("cpu")
        args.size, args.steps, args.warmup = min(args.size, 64), min(args.steps, 2), min(args.warmup, 1)
        args.proc_steps, args.proc_seconds = min(args.proc_steps, 2), 0.0
        if args.reg_layers == "3,4,23,3":
            args.reg_layers = "1,1,1,1"
        args.procs = ",".join(k for k in args.procs.split(",") if k and int(k) <= 2)
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    elif not torch.cuda.is_available():
        print(
            f"bench_gpu: no CUDA device found (torch {torch.__version__}, built with CUDA "
            f"{torch.version.cuda or 'none'}); nothing to measure. Run it on a GPU machine, or add --cpu "
            "for a quick CPU sanity check."
        )
        return 0
    else:
        device = torch.device("cuda", 0)
        torch.backends.cudnn.benchmark = True
    if args.size % 8:
        p.error("--size must be a multiple of 8")
    args.reg_layers = tuple(int(x) for x in args.reg_layers.split(","))
    batches = [int(b) for b in args.batches.split(",") if b]
    procs = [int(k) for k in args.procs.split(",") if k]

    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    ngpu = torch.cuda.device_count() if device.type == "cuda" else 0
    bf16_ok = device.type == "cpu" or torch.cuda.is_bf16_supported()
    meta = {
        "device": name,
        "gpus": ngpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "size": args.size,
        "steps": args.steps,
        "warmup": args.warmup,
        "reg_layers": list(args.reg_layers),
        "channels_last": args.channels_last,
        "tf32_conv": torch.backends.cudnn.allow_tf32,
    }
    print(
        f"bench_gpu on {name} ({ngpu} GPU(s)), torch {torch.__version__}, {args.size}x{args.size}, "
        f"{args.steps} steps after {args.warmup} warm-up, channels_last={args.channels_last}"
    )
    result: dict = {"meta": meta, "throughput": [], "concurrent_enet": [], "ddp_regressor": []}

    print(f"\n{'model':10s} {'batch':>5s} {'dtype':>5s} {'steps/s':>9s} {'images/s':>9s}")
    for kind in ("enet", "regressor"):
        for b in batches:
            for bf16 in (False, True):
                if bf16 and not bf16_ok:
                    continue
                sps = steps_per_second(kind, b, bf16, args, device)
                row = {
                    "model": kind,
                    "batch": b,
                    "dtype": "bf16" if bf16 else "fp32",
                    "steps_per_s": sps,
                    "images_per_s": sps * b,
                }
                result["throughput"].append(row)
                print(f"{kind:10s} {b:5d} {row['dtype']:>5s} {sps:9.2f} {sps * b:9.1f}", flush=True)

    if procs:
        print("\nconcurrent ENet training processes on one device (batch 1, fp32)")
        print(f"{'k':>3s} {'aggregate steps/s':>18s} {'per process':>12s}")
        for k in procs:
            r = concurrent_processes(k, args, device)
            result["concurrent_enet"].append(r)
            print(
                f"{k:3d} {r['aggregate_steps_per_s']:18.2f} {min(r['per_process_steps_per_s']):6.2f}-"
                f"{max(r['per_process_steps_per_s']):.2f}",
                flush=True,
            )

    worlds: list[int] = []
    if device.type == "cuda" and ngpu > 1:
        w = 1
        while w < ngpu:
            worlds.append(w)
            w *= 2
        worlds.append(ngpu)
    elif device.type == "cpu" and args.ddp_cpu_world > 1:
        worlds = [1, args.ddp_cpu_world]
    if worlds:
        print(
            f"\nDDP regressor, per-device batch {args.ddp_batch} "
            f"({'gloo' if device.type == 'cpu' else 'nccl'})"
        )
        print(f"{'world':>5s} {'images/s':>9s} {'efficiency':>10s}")
        base = None
        for w in worlds:
            r = ddp_scaling(w, args, device)
            base = base or r["images_per_s"]
            r["efficiency"] = r["images_per_s"] / (base * w)
            result["ddp_regressor"].append(r)
            print(f"{w:5d} {r['images_per_s']:9.1f} {r['efficiency']:10.2f}", flush=True)
    elif device.type == "cuda":
        print("\nDDP scaling skipped: one GPU")

    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
