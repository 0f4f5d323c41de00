"""Sweeps: the cross product of configuration axes, each run a real federation.

``--grid KEY=VALUE`` adds VALUE to KEY's axis (a value may contain commas, so
``--grid uplink-codec=topk:0.05|q4|zstd:3`` is one value). Every configuration is
validated before the first run starts; each run writes the usual results under
``OUT/runs/<configuration>-r<repeat>/``, and a finished run is skipped when the sweep is
run again, so an interrupted sweep resumes; raising ``num-server-rounds`` continues the
stored runs from their checkpoints instead of starting them again. ``report.py`` turns
the runs into tables, Pareto fronts and figures.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import EngineConfig, RunConfig, assignment, split_config
from ..errors import ConfigError

INDEX = "sweep.json"


@dataclass(frozen=True)
class Planned:
    label: str  # "strategy=ffa, uplink-codec=q8" (the grid's values only)
    repeat: int
    run: RunConfig
    sim: EngineConfig
    out: Path


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid: dict[str, list[str]] = {}
    for item in items:
        key, value = assignment(item, "--grid")
        axis = grid.setdefault(key, [])
        if value not in axis:
            axis.append(value)
    return grid


def plan(grid: dict[str, list[str]], base: dict[str, Any], repeat: int, out: Path) -> list[Planned]:
    """Every run of the sweep, validated: a bad key or value fails before anything runs.
    Repeats differ by seed (the base seed + the repeat index)."""
    if repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {repeat}")
    keys = list(grid)
    runs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        label = ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "defaults"
        for r in range(repeat):
            mapping = {**base, **dict(zip(keys, values, strict=True))}
            try:
                run, sim = split_config(mapping)
            except ConfigError as exc:
                raise ConfigError(f"sweep configuration {label!r}: {exc}") from None
            directory = out / "runs" / f"{_slug(label)}-r{r}"
            run = run.replace(seed=run.seed + r, out=str(directory), overwrite=True)
            runs.append(Planned(label, r, run, sim, directory))
    return runs


def run_sweep(
    planned: list[Planned],
    out: Path,
    *,
    simulate: Callable[..., dict],
    on_run: Callable[[Planned, bool], None] = lambda p, skipped: None,
    report: Callable[[str, Any], None] = lambda e, p: None,
) -> None:
    """Run what is not finished yet, extend what only lacks rounds; ``on_run(planned,
    skipped)`` before each."""
    out.mkdir(parents=True, exist_ok=True)
    index = [{"label": p.label, "repeat": p.repeat, "dir": str(p.out.relative_to(out))}
             for p in planned]  # fmt: skip
    (out / INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")
    for p in planned:
        todo = progress(p)
        on_run(p, todo == "done")
        if todo == "extend":
            simulate(p.run.replace(resume=True, overwrite=False), p.sim, report=report)
        elif todo == "run":
            simulate(p.run, p.sim, report=report)


def finished(p: Planned) -> bool:
    return progress(p) == "done"


def progress(p: Planned) -> str:
    """What a sweep does with a stored run. "done": it is this experiment (keys added
    later count as their defaults) with all its rounds, or its target, or its budget.
    "extend": it is this experiment with fewer rounds, all of which ran (resumed from its
    checkpoint: a larger ``num-server-rounds`` is the one change a resume allows).
    "run": anything else."""
    try:
        summary = json.loads((p.out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "run"
    saved = summary.get("config", {})
    changed = set(p.run.differences(saved)) - {"out", "resume"}
    wanted = p.run.rounds.num_server_rounds
    had = saved.get("num-server-rounds") if changed else wanted
    if not changed <= {"num-server-rounds"} or not isinstance(had, int) or had > wanted:
        return "run"
    stopped = summary.get("privacy", {}).get("stopped_by_budget") or (
        summary.get("to_target") and p.run.rounds.stop_at_target
    )  # with more rounds it would stop where it did
    ran_all = summary.get("rounds") == had
    if stopped or (ran_all and had == wanted):
        return "done"
    return "extend" if ran_all and (p.out / "checkpoint").is_dir() else "run"


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", label.replace(", ", "__"))[:120]


def plan_recipes(
    recipes: dict[str, dict[str, Any]], base: dict[str, Any], repeat: int, out: Path
) -> list[Planned]:
    """Like :func:`plan`, for named bundles of keys (a recipe changes several at once);
    each run's directory is named by its recipe and seed."""
    planned = []
    for label, values in recipes.items():
        for p in plan({}, {**base, **values}, repeat, out / "_"):
            directory = out / "runs" / f"{_slug(label)}-s{p.run.seed}"
            run = p.run.replace(out=str(directory))
            planned.append(Planned(label, p.repeat, run, p.sim, directory))
    return planned
