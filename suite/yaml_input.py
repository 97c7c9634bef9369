"""The YAML the suite reads (a ``--config`` file, a ``--set`` value, the presets, SLURM profiles): safe, and
strict about one thing PyYAML lets by: a key given twice in one mapping. PyYAML keeps the last one silently,
so ``gamma: 0.1`` and, further down, ``gamma: 0.2`` would run at 0.2 with nothing said; here it is one line
naming the key and both lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from suite.errors import ConfigError, InputError


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"key {key!r} on lines {first} and {second}")
        self.key, self.first, self.second = key, first, second


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, refusing a key that appears twice in one mapping."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: SafeLoader's own error names it below
            continue
        if first is not None:
            raise _DuplicateKey(key, first, line)
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str, source: str, error: type[InputError] = ConfigError) -> Any:
    """``text`` parsed as YAML (safe types only); invalid YAML or a duplicate key is ``error`` in one line
    that starts with ``source``."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKey as e:
        raise error(
            f"{source}: key {e.key!r} is given twice, on lines {e.first} and {e.second} (YAML would keep the "
            "second silently); keep one of them"
        ) from None
    except yaml.YAMLError as e:
        raise error(f"{source}: not valid YAML ({str(e).splitlines()[0]}); fix the syntax") from None


def read_yaml(path: Path, what: str, source: str | None = None, error: type[InputError] = ConfigError) -> Any:
    """The YAML file ``path`` (a ``what``: "config file", "profile") through :func:`load_yaml`; a file that
    cannot be read, or is not text, is ``error`` in one line naming it."""
    source = source or str(path)
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise error(f"{source}: cannot read {what} ({e.strerror}); check the path") from None
    except UnicodeDecodeError as e:
        raise error(f"{source}: not a text file ({e.reason}); give a YAML {what}") from None
    return load_yaml(text, source, error)
