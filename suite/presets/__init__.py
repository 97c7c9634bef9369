"""The presets are data: ``<name>.yaml`` in this package, keys over the paper defaults (``paper`` is the
paper, ``code`` the authors' code, ``smoke`` and ``fidelity`` small CPU settings); these read them."""

from __future__ import annotations

from importlib import resources
from typing import Any

from suite.errors import ConfigError
from suite.yaml_input import load_yaml


def load_preset(name: str) -> dict[str, Any]:
    """A preset is data: ``suite/presets/<name>.yaml`` (keys over the paper defaults)."""
    avail = available_presets()
    if name not in avail:
        raise ConfigError(f"preset {name!r} does not exist; available presets: {', '.join(avail)}")
    data = _read(name)
    data.pop("description", None)
    return data


def preset_description(name: str) -> str:
    return str(_read(name).get("description", "")).strip()


def _read(name: str) -> dict[str, Any]:
    text = resources.files("suite.presets").joinpath(f"{name}.yaml").read_text()
    return load_yaml(text, f"preset {name!r} (suite/presets/{name}.yaml)") or {}


def available_presets() -> list[str]:
    root = resources.files("suite.presets")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
