"""The presets are data: ``<name>.yaml`` in this package, keys over the paper defaults (``paper`` is the
paper, ``code`` the authors' code, ``smoke`` and ``fidelity`` small CPU settings); these read them."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from suite.errors import ConfigError


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset is data: ``suite/presets/<name>.yaml`` (keys over the paper defaults). ``extends: other``
    starts from that preset's keys (a preset that departs from another in a few keys names only those)."""
    avail = available_presets()
    if name not in avail:
        raise ConfigError(f"preset {name!r} does not exist; available presets: {', '.join(avail)}")
    text = resources.files("suite.presets").joinpath(f"{name}.yaml").read_text()
    data = yaml.safe_load(text) or {}
    data.pop("description", None)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if parent in (*_seen, name):
        raise ConfigError(
            f"preset {name!r}: 'extends: {parent}' makes a cycle ({' -> '.join((*_seen, name))})"
        )
    return {**load_preset(str(parent), (*_seen, name)), **data}


def preset_description(name: str) -> str:
    text = resources.files("suite.presets").joinpath(f"{name}.yaml").read_text()
    return str((yaml.safe_load(text) or {}).get("description", "")).strip()


def available_presets() -> list[str]:
    root = resources.files("suite.presets")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
