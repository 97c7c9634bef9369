"""Load a state_dict of the authors' ``networks.ENet(1, 4)`` or ``networks.ResNeXt(...)`` into the replica.

Their training code saves whole pickled modules (``best.pkl``, ``pred_size_N.pkl``); the suite never
unpickles. Convert once, in the authors' own environment (their repository on ``sys.path``, so the pickle
finds its classes)::

    python -c "import torch; torch.save(torch.load('best.pkl').state_dict(), 'best_state_dict.pt')"

(PyTorch ≥ 2.6 needs ``torch.load('best.pkl', weights_only=False)`` there: only for their own file.) Then,
in the suite::

    net = build_segmenter(RunConfig.from_preset("code"))
    load_authors_state_dict(net, torch.load("best_state_dict.pt", weights_only=True))

Strict: every tensor of the replica must come from the state_dict with the same shape, and every key of the
state_dict must be used, except the tensors the authors' ENet holds but never calls (``out_025``, ``out_05``
and the PReLU of each upsampling bottleneck), which are ignored. A bad key stops with an ``InputError`` naming
it (in the authors' naming).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from suite.errors import InputError
from suite.models.enet_authors import STAGE23, ENetAuthors
from suite.models.resnext_authors import ResNeXtAuthors

# the authors' ENet keys that the replica omits (never used in their forward pass)
ENET_UNUSED_PREFIXES = ("out_025.", "out_05.", "bottleNeck_Up_1_0.PReLU3.", "bottleNeck_Up_2_1.PReLU3.")

# their sub-module names → the replica's, per kind of block
_PROJECTED = {"conv0": "branch.0.0", "bn0": "branch.0.1", "PReLU0": "branch.0.2"}
_MAIN = {"conv1": "branch.1.0", "bn1": "branch.1.1", "PReLU1": "branch.1.2"}
_REGULAR = {"block0": "branch.0", "block1": "branch.1", "block2": "branch.2"}
_REGULAR.update(PReLU_out="act", conv_out="shortcut")
_DILATED = {"block0": "branch.0", **_MAIN, "block2": "branch.2", "PReLU3": "act", "conv_out": "shortcut"}
_DOWN = {**_PROJECTED, **_MAIN, "block2": "branch.2", "PReLU3": "act"}
_UP = {**_PROJECTED, **_MAIN, "block2": "branch.2"}


def _enet_blocks() -> dict[str, tuple[str, dict[str, str] | None]]:
    """Their top-level module name → (the replica's, the inner name map or None when names carry over)."""
    t: dict[str, tuple[str, dict[str, str] | None]] = {"conv0": ("initial", None)}
    t["bottleNeck1_0"] = ("down1", _DOWN)
    t.update({f"bottleNeck1_{i}": (f"stage1.{i - 1}", _REGULAR) for i in range(1, 5)})
    t["bottleNeck2_0"] = ("down2", _DOWN)
    for s in (2, 3):
        for i, (kind, _) in enumerate(STAGE23, start=1):
            t[f"bottleNeck{s}_{i}"] = (f"stage{s}.{i - 1}", _DILATED if kind == "dilated" else _REGULAR)
    t["bottleNeck_Up_1_0"] = ("up1", _UP)
    t["PReLU_Up_1"] = ("up1_act", None)
    t["bottleNeck_Up_1_1"] = ("stage4.0", _REGULAR)
    t["bottleNeck_Up_1_2"] = ("stage4.1", _REGULAR)
    t["bottleNeck_Up_2_1"] = ("up2", _UP)
    t["bottleNeck_Up_2_2"] = ("stage5", _REGULAR)
    t["PReLU_Up_2"] = ("up2_act", None)
    t["deconv3"] = ("head", None)  # nearest ×2 (no tensors), then two conv + BN + PReLU units
    t["final"] = ("head.3", None)
    return t


ENET_BLOCKS = _enet_blocks()


def enet_key_to_replica(key: str) -> str | None:
    """The replica's name for one of their ENet keys (None when it has no counterpart)."""
    top, _, rest = key.partition(".")
    if top not in ENET_BLOCKS:
        return None
    mine, inner = ENET_BLOCKS[top]
    if inner is None:
        return f"{mine}.{rest}"
    first, _, tail = rest.partition(".")
    return f"{mine}.{inner[first]}.{tail}" if first in inner else None


def enet_key_to_authors(name: str) -> str:
    """Their name for one of the replica's keys (for error messages)."""
    for top, (mine, inner) in sorted(ENET_BLOCKS.items(), key=lambda kv: -len(kv[1][0])):
        if not name.startswith(mine + "."):
            continue
        rest = name[len(mine) + 1 :]
        if inner is None:
            return f"{top}.{rest}"
        for theirs, ours in sorted(inner.items(), key=lambda kv: -len(kv[1])):
            if rest.startswith(ours + "."):
                return f"{top}.{theirs}.{rest[len(ours) + 1 :]}"
    return name


def load_authors_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load the authors' ``state_dict`` (their key names) into a replica, strictly; returns ``model``."""
    to_replica: Callable[[str], str | None]
    to_authors: Callable[[str], str]
    if isinstance(model, ENetAuthors):
        what, to_replica, to_authors = "networks.ENet", enet_key_to_replica, enet_key_to_authors
        ignored: tuple[str, ...] = ENET_UNUSED_PREFIXES
    elif isinstance(model, ResNeXtAuthors):  # the replica keeps their key names
        what, to_replica, to_authors, ignored = "networks.ResNeXt", str, str, ()
    else:
        raise InputError(
            f"load_authors_state_dict: {type(model).__name__} is not a replica of the authors' networks; "
            "build it with seg_arch=enet-authors or reg_arch=resnext-authors"
        )
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in state_dict.items():
        name = to_replica(key)
        if name is None or name not in own:
            if not (ignored and key.startswith(ignored)):
                unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(own[name].shape):
            raise InputError(
                f"authors' state_dict: key {key} has shape {tuple(value.shape)}, the replica needs "
                f"{tuple(own[name].shape)}; build the replica with the settings the weights were trained with"
            )
        mapped[name] = value
    if unexpected:
        raise InputError(
            f"authors' state_dict: unexpected key(s) {_some(unexpected)}; "
            f"it is not a {what} state_dict for these settings"
        )
    missing = [to_authors(n) for n in own if n not in mapped]
    if missing:
        raise InputError(
            f"authors' state_dict: missing key(s) {_some(missing)}; "
            f"save the whole {what} state_dict (module.state_dict())"
        )
    model.load_state_dict(mapped, strict=True)
    return model


def _some(keys: list[str], n: int = 5) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
