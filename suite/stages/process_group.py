"""Rank / world-size helpers that work with and without an initialised ``torch.distributed`` process group.

The rule that keeps a one-worker Ray Train run bit-for-bit equal to the standalone run: **nothing about
sampling or numerics depends on whether a process group exists**. The data order comes from our own seeded
permutation (:func:`epoch_batches`), the same for every rank; each global batch is then sharded across ranks.
With ``world_size == 1`` the shard is the whole global batch, so the standalone run, a Ray worker and a
``torchrun`` process see exactly the same batches. Collectives are no-ops without a process group.

With ``world_size > 1`` a short last global batch is padded (wrapping around the epoch's permutation, as
``torch.utils.data.DistributedSampler`` does) so that every rank gets the same number of images: DDP needs
every rank to run the same number of forward/backward passes.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.distributed as dist

from suite.errors import InputError
from suite.seeding import derive_seed

log = logging.getLogger("suite.stages.process_group")


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or no process group): the only process that writes files."""
    return rank() == 0


def local_rank() -> int:
    """The process's index on its node (``LOCAL_RANK`` as set by torchrun / Ray Train), else the rank."""
    try:
        return int(os.environ.get("LOCAL_RANK", rank()))
    except ValueError:
        return rank()


def maybe_init_from_env(expected_world_size: int) -> None:
    """Initialise a process group from torchrun-style variables when ``world_size > 1`` and none exists.

    Ray Train initialises the group itself; a standalone run with ``world_size=1`` never needs one.
    """
    if expected_world_size <= 1 or is_distributed():
        return
    if "MASTER_ADDR" in os.environ and "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)


def check_world_size(cfg_world_size: int) -> None:
    """The process group's size must equal the config's ``world_size`` (it changes results: it is
    identity)."""
    ws = world_size()
    if ws != cfg_world_size:
        if not is_distributed():
            raise InputError(
                f"config field world_size={cfg_world_size} needs {cfg_world_size} processes in an "
                "initialised torch.distributed process group, but none is initialised; launch through Ray "
                "Train (suite tune) or torchrun, or set world_size=1"
            )
        raise InputError(
            f"config field world_size={cfg_world_size} but the torch.distributed process group has {ws} "
            f"ranks; start {cfg_world_size} workers or set world_size={ws}"
        )


def barrier() -> None:
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (in place, returned); a no-op without a process group."""
    return _all_reduce(t, "sum")


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """Elementwise maximum of a tensor over ranks (in place, returned); a no-op without a process group."""
    return _all_reduce(t, "max")


def _all_reduce(t: torch.Tensor, op: str) -> torch.Tensor:
    if is_distributed():
        reduce_op = dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX
        if dist.get_backend() == "nccl" and t.device.type != "cuda":
            tmp = t.cuda()
            dist.all_reduce(tmp, op=reduce_op)
            t.copy_(tmp.cpu())
        else:
            dist.all_reduce(t, op=reduce_op)
    return t


def broadcast_object(obj: object, src: int = 0) -> object:
    """Broadcast a picklable object from ``src`` to every rank (identity without a process group)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def sync_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank before an evaluation.

    DDP broadcasts buffers at the start of each training forward, so after the last step each rank holds its
    own running statistics; evaluating with rank 0's makes every rank agree with the saved checkpoint.
    """
    if not is_distributed():
        return
    for buf in module.buffers():
        if buf.dtype.is_floating_point or buf.dtype in (torch.int64, torch.int32):
            if dist.get_backend() == "nccl" and buf.device.type != "cuda":
                tmp = buf.cuda()
                dist.broadcast(tmp, src=0)
                buf.copy_(tmp.cpu())
            else:
                dist.broadcast(buf, src=0)


def wrap_ddp(model: torch.nn.Module, device: torch.device, cfg_world_size: int) -> torch.nn.Module:
    """Wrap in DistributedDataParallel only when ``world_size > 1`` (never for one rank, even in Ray)."""
    if cfg_world_size <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        return DDP(model, device_ids=[device.index if device.index is not None else 0])
    return DDP(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under DDP / torch.compile wrappers (what checkpoints store)."""
    inner = getattr(model, "module", None)
    if inner is not None and isinstance(inner, torch.nn.Module):
        model = inner
    orig = getattr(model, "_orig_mod", None)
    if orig is not None and isinstance(orig, torch.nn.Module):
        model = orig
    return model


def epoch_permutation(n_items: int, seed: int, *axes: object) -> np.ndarray:
    """The global order of ``n_items`` items for one epoch: a pure function of the seed and the axes.

    Identical on every rank and independent of the world size and of any process group.
    """
    rng = np.random.default_rng(derive_seed(seed, *axes))
    return rng.permutation(n_items)


def global_batches(order: np.ndarray, global_batch: int, world: int) -> list[np.ndarray]:
    """Cut an epoch's order into global batches; with ``world > 1`` pad a short last one to a multiple
    of ``world`` by wrapping around the order (so every rank gets the same number of items)."""
    if global_batch < 1:
        raise ValueError("global_batch must be >= 1")
    out = [order[i : i + global_batch] for i in range(0, len(order), global_batch)]
    if world > 1 and out and len(out[-1]) % world:
        need = world - len(out[-1]) % world
        pad = np.resize(order, need)  # wraps around when the order is shorter than the padding
        out[-1] = np.concatenate([out[-1], pad])
    return out


def shard(batch: np.ndarray, rank_: int, world: int) -> np.ndarray:
    """This rank's share of a global batch (contiguous blocks: rank r gets items r*k .. r*k+k-1)."""
    if world == 1:
        return batch
    k = len(batch) // world
    return batch[rank_ * k : (rank_ + 1) * k]


def epoch_batches(
    n_items: int, global_batch: int, seed: int, axes: tuple[object, ...], rank_: int, world: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Our seeded distributed sampler: ``[(global_batch_positions, this_rank_positions), ...]``.

    ``world == 1`` gives exactly the standalone order. Positions index the caller's item list.
    """
    order = epoch_permutation(n_items, seed, *axes)
    return [(b, shard(b, rank_, world)) for b in global_batches(order, global_batch, world)]
