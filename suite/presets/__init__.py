"""The presets are data: ``<name>.yaml`` in this package, keys over the paper defaults (``paper`` is the
paper, ``code`` the authors' code, ``smoke`` and ``fidelity`` small CPU settings); these read them."""

from __future__ import annotations

from importlib import resources
from typing import Any

from suite.errors import ConfigError
from suite.yaml_input import load_yaml


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset is data: ``suite/presets/<name>.yaml`` (keys over the paper defaults). ``extends: other``
    starts from that preset's keys (a preset that departs from another in a few keys names only those)."""
    avail = available_presets()
    if name not in avail:
        raise ConfigError(f"preset {name!r} does not exist; available presets: {', '.join(avail)}")
    data = _read(name)
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
    return str(_read(name).get("description", "")).strip()


def _read(name: str) -> dict[str, Any]:
    text = resources.files("suite.presets").joinpath(f"{name}.yaml").read_text()
    return load_yaml(text, f"preset {name!r} (suite/presets/{name}.yaml)") or {}


def available_presets() -> list[str]:
    root = resources.files("suite.presets")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
