"""Named search spaces: which runs an experiment asks for.

A space is data plus a small function: it lists the *axes* of each requested segmenter run (method,
``n_labeled``, ``seed``, and for some spaces ``gamma``, ``lam``, ``split_mode``, ``split_seed``). Everything
else comes from the preset (``suite/presets/*.yaml``) and the user's ``--set key=value`` overrides. The
prerequisites (the regressor of a Proposed run, the FS model of a Proposals run) are *not* listed: the driver
adds them from ``RunConfig.prerequisites()`` and runs them first, once each.

Precedence: preset < ``--set`` overrides < space axes. Overriding an axis that the space sweeps is an error
(it would silently collapse the grid).

Registry::

    >>> from search_spaces import available_spaces, get_space
    >>> sorted(available_spaces())
    ['arch', 'constraints', 'fidelity', 'paper', 'repro', 'sensitivity', 'smoke', 'splits', 'ssl']
    >>> space = get_space("smoke")
    >>> len(space.configs("smoke", seeds=[0]))    # 4 methods x 2 n (prerequisites are added later)
    8

Random search over gamma and lambda (instead of the grid) uses Ray Tune's own samplers (``tune.uniform``,
``tune.loguniform``) with ``num_samples`` draws from a recorded seed, so a relaunch asks for the same runs
(Optuna is not a dependency). Only spaces that sweep gamma and lambda offer it (``sensitivity``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from suite.config import RunConfig
from suite.errors import ConfigError, InputError
from suite.seeding import derive_seed

SPACES = ("paper", "sensitivity", "splits", "smoke", "fidelity", "arch", "constraints", "repro", "ssl")

Axes = dict[str, Any]


@dataclass(frozen=True)
class RandomSearch:
    """Ray Tune sampling domains for (some of) the swept axes, e.g. ``{"gamma": ("uniform", 0.0, 0.3)}``.

    Kinds: ``uniform`` (``tune.uniform``), ``loguniform`` (``tune.loguniform``). Each draw replaces the grid
    over those axes; the other axes (method, n, seed) stay a grid.
    """

    domains: dict[str, tuple[str, float, float]]
    default_samples: int = 10

    def sample(self, num_samples: int, search_seed: int, space_name: str) -> list[dict[str, float]]:
        """``num_samples`` points drawn with Ray Tune's samplers from ``derive_seed(search_seed, space)``."""
        if num_samples < 1:
            raise InputError(f"--num-samples {num_samples}: must be >= 1")
        import numpy as np
        from ray import tune  # lazy: importing ray.tune takes seconds

        makers = {"uniform": tune.uniform, "loguniform": tune.loguniform}
        rng = np.random.default_rng(derive_seed(search_seed, "random-search", space_name))
        columns: dict[str, list[float]] = {}
        for key, (kind, lo, hi) in sorted(self.domains.items()):
            domain = makers[kind](lo, hi)
            values = domain.sample(size=num_samples, random_state=rng)
            columns[key] = [_round_sig(float(v)) for v in values]
        return [{k: columns[k][i] for k in columns} for i in range(num_samples)]


@dataclass(frozen=True)
class Space:
    """One named space (see the module docstring)."""

    name: str
    description: str
    grid: Callable[[Sequence[int], Sequence[int] | None], list[Axes]]
    default_preset: str
    default_seeds: tuple[int, ...]
    default_labeled: tuple[int, ...]
    swept: tuple[str, ...]  # RunConfig fields the space sets per run (cannot be --set)
    random: RandomSearch | None = None
    notes: str = field(default="")

    def axes(
        self,
        seeds: Sequence[int] | None = None,
        labeled: Sequence[int] | None = None,
        *,
        search: str = "grid",
        num_samples: int | None = None,
        search_seed: int = 0,
        methods: Sequence[str] | None = None,
    ) -> list[Axes]:
        """The axis dicts of the requested runs, in a stable order (duplicates kept; ``configs`` dedupes).

        ``methods`` keeps only those segmenter methods (e.g. ``["fs", "oracle"]``).
        """
        seeds = list(self.default_seeds if seeds is None else seeds)
        if not seeds:
            raise InputError(f"space {self.name!r}: --seeds is empty; give at least one seed, e.g. --seeds 0")
        if any(int(s) < 0 for s in seeds):
            raise InputError(f"space {self.name!r}: --seeds {seeds}: seeds must be >= 0")
        if labeled is not None:
            labeled = [int(n) for n in labeled]
            if not labeled or any(n < 1 for n in labeled):
                raise InputError(f"space {self.name!r}: --labeled {labeled}: give one or more counts >= 1")
        rows = self.grid([int(s) for s in seeds], labeled)
        if methods is not None:
            have = sorted({r["method"] for r in rows})
            unknown = sorted(set(methods) - set(have))
            if unknown or not methods:
                raise InputError(
                    f"--methods {' '.join(methods) or '(none)'}: the space {self.name!r} has "
                    f"methods {', '.join(have)}; pick among those"
                )
            rows = [r for r in rows if r["method"] in set(methods)]
        if search == "grid":
            return rows
        if search != "random":
            raise InputError(f"--search {search!r}: must be grid or random")
        if self.random is None:
            raise InputError(
                f"space {self.name!r} has no random search (it does not sweep gamma and lambda); "
                "use --space sensitivity --search random, or drop --search"
            )
        points = self.random.sample(num_samples or self.random.default_samples, search_seed, self.name)
        keys = set(self.random.domains)
        out: list[Axes] = []
        seen: set[tuple] = set()
        for row in rows:
            base = {k: v for k, v in row.items() if k not in keys}
            sig = tuple(sorted(base.items()))
            if sig in seen:
                continue
            seen.add(sig)
            out.extend({**base, **p} for p in points)
        return out

    def configs(
        self,
        preset: str | None = None,
        seeds: Sequence[int] | None = None,
        *,
        labeled: Sequence[int] | None = None,
        overrides: Iterable[str] = (),
        base: dict[str, Any] | None = None,
        search: str = "grid",
        num_samples: int | None = None,
        search_seed: int = 0,
        methods: Sequence[str] | None = None,
    ) -> list[RunConfig]:
        """Full, validated run configs of the space (deduplicated by ``run_id``, order kept).

        ``overrides`` are the user's ``key=value`` strings; ``base`` holds fields set by the launcher
        (``data``, ``data_hash``, ``world_size``), applied after them. Prerequisites are not included.
        """
        preset = preset or self.default_preset
        overrides = list(overrides)
        for item in overrides:
            key = item.split("=", 1)[0].strip()
            if key in self.swept:
                raise ConfigError(
                    f"--set {key}: the space {self.name!r} sweeps {key} (axes: {', '.join(self.swept)}); "
                    "drop this --set or pick another space"
                )
        template = RunConfig.from_preset(preset)
        if overrides:
            template = template.with_overrides(overrides)
        if base:
            template = template.replace(**base)
        out: dict[str, RunConfig] = {}
        for row in self.axes(
            seeds, labeled, search=search, num_samples=num_samples, search_seed=search_seed, methods=methods
        ):
            cfg = template.replace(**row)
            out.setdefault(cfg.run_id, cfg)
        return list(out.values())


def _round_sig(x: float, digits: int = 4) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def segmenter_grid(
    methods: Sequence[str], labeled: Sequence[int], seeds: Sequence[int], **fixed: Any
) -> list[Axes]:
    """methods x n x seeds as axis dicts (n outer, then seed, then method: prerequisites sort early)."""
    return [
        {"stage": "segmenter", "method": m, "n_labeled": int(n), "seed": int(s), **fixed}
        for n in labeled
        for s in seeds
        for m in methods
    ]


def methods_grid(methods: Sequence[str], default_labeled: Sequence[int]) -> Callable[..., list[Axes]]:
    """The grid of a space that is methods x n x seeds and nothing else (``labeled`` replaces its n)."""

    def grid(seeds: Sequence[int], labeled: Sequence[int] | None) -> list[Axes]:
        return segmenter_grid(methods, labeled or default_labeled, seeds)

    return grid


def get_space(name: str) -> Space:
    """The space called ``name`` (a module ``search_spaces/<name>.py`` exposing ``SPACE``)."""
    if name not in SPACES:
        raise InputError(f"--space {name!r} does not exist; available spaces: {', '.join(SPACES)}")
    return importlib.import_module(f"search_spaces.{name}").SPACE


def available_spaces() -> list[str]:
    return list(SPACES)


__all__ = ["Space", "RandomSearch", "get_space", "available_spaces", "segmenter_grid", "SPACES"]
