"""The presets are data: ``<name>.yaml`` in this package, keys over the paper defaults (``paper`` is the
paper, ``code`` the authors' code, ``smoke`` and ``fidelity`` small CPU settings); these read them."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from suite.errors import ConfigError


def load_preset(name: str) -> dict[str, Any]:
    """A preset is data: ``suite/presets/<name>.yaml`` (keys over the paper defaults)."""
    avail = available_presets()
    if name not in avail:
        raise ConfigError(f"preset {name!r} does not exist; available presets: {', '.join(avail)}")
    text = resources.files("suite.presets").joinpath(f"{name}.yaml").read_text()
    data = yaml.safe_load(text) or {}
    data.pop("description", None)
    return data


def preset_description(name: str) -> str:
    text = resources.files("suite.presets").joinpath(f"{name}.yaml").read_text()
    return str((yaml.safe_load(text) or {}).get("description", "")).strip()


def available_presets() -> list[str]:
    root = resources.files("suite.presets")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
