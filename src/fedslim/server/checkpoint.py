"""Round checkpoints: one directory per round, made whole before it becomes the latest.

A checkpoint holds what the next round needs to be computed exactly as an uninterrupted
run would compute it: the global adapter, the round number, the run config, the results
history and the strategy's state. Layout::

    checkpoint/LATEST              "round-000007": the newest complete checkpoint
    checkpoint/round-000007/       adapter.safetensors, server.safetensors, state.json
    checkpoint/round-000006/       the previous generation, kept

A round is written into a temporary directory, every file and the directory fsynced, then
renamed into place; only then does ``LATEST`` (itself replaced atomically) point at it. A
crash at any point leaves ``LATEST`` on a complete round, so resume continues from a
consistent state; loading checks that the files agree with each other and refuses
anything else with a message naming what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

ADAPTER, SERVER, STATE = "adapter.safetensors", "server.safetensors", "state.json"
LATEST = "LATEST"
KEEP = 2  # generations kept: the latest and the one before it


@dataclass
class Checkpoint:
    round: int
    adapter: dict[str, np.ndarray]
    config: dict
    history: dict  # {"rounds": [...], "clients": [...]} rows written so far
    server: dict[str, np.ndarray] = field(default_factory=dict)  # strategy state


def _name(rnd: int) -> str:
    return f"round-{rnd:06d}"


def save(directory: Path, ckpt: Checkpoint) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    final, tmp = directory / _name(ckpt.round), directory / f".tmp-{_name(ckpt.round)}"
    shutil.rmtree(tmp, ignore_errors=True)  # debris of a crash during an earlier attempt
    tmp.mkdir()
    for name, tensors in ((ADAPTER, ckpt.adapter), (SERVER, ckpt.server)):
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / name))
        _fsync(tmp / name)
    state = {
        "round": ckpt.round,
        "config": ckpt.config,
        "history": ckpt.history,
        "order": list(ckpt.adapter),
    }
    (tmp / STATE).write_text(json.dumps(state, indent=1), encoding="utf-8")
    _fsync(tmp / STATE)
    _fsync(tmp)
    if final.exists():  # the same round again (a resumed run that replays it)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync(directory)
    pointer = directory / f".{LATEST}.tmp"
    pointer.write_text(_name(ckpt.round) + "\n", encoding="utf-8")
    _fsync(pointer)
    os.replace(pointer, directory / LATEST)
    _fsync(directory)
    _prune(directory, keep=_name(ckpt.round))


def latest(directory: Path) -> Path:
    """The directory of the newest complete checkpoint."""
    try:
        name = (directory / LATEST).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"--resume: no checkpoint in {directory}") from None
    if not name.startswith("round-") or not (directory / name).is_dir():
        raise ValueError(f"--resume: {directory / LATEST} names {name!r}, which is not there")
    return directory / name


def load(directory: Path) -> Checkpoint:
    """Read the latest checkpoint; a missing, damaged or inconsistent one is a clear error,
    never a silent restart or a raw KeyError."""
    where = latest(directory)
    try:
        state = json.loads((where / STATE).read_text(encoding="utf-8"))
        tensors = load_file(str(where / ADAPTER))
        server = load_file(str(where / SERVER))
        rnd, order = int(state["round"]), list(state["order"])
        config, history = dict(state["config"]), dict(state["history"])
        last = history["rounds"][-1]["round"] if history["rounds"] else None
    except Exception as exc:  # a trust boundary: any damage becomes one message
        raise ValueError(
            f"--resume: checkpoint {where} is damaged ({exc!r}); {_hint(where)}"
        ) from None
    problem = None
    if where.name != _name(rnd):
        problem = f"it is named {where.name} but holds round {rnd}"
    elif sorted(order) != sorted(tensors):
        problem = "its adapter tensors differ from its own list of them"
    elif last != rnd:
        problem = f"its history ends at round {last}, not {rnd}"
    if problem:
        raise ValueError(f"--resume: checkpoint {where} is inconsistent: {problem}; {_hint(where)}")
    adapter = {k: tensors[k] for k in order}
    return Checkpoint(round=rnd, adapter=adapter, config=config, history=history, server=server)


def _hint(where: Path) -> str:
    older = sorted(p.name for p in where.parent.glob("round-*") if p.name < where.name)
    if not older:
        return "no earlier checkpoint is kept; start the run again"
    return f"to continue from {older[-1]} instead, write that name into {where.parent / LATEST}"


def _prune(directory: Path, *, keep: str) -> None:
    rounds = sorted(p for p in directory.glob("round-*") if p.name <= keep)
    for old in rounds[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in directory.glob(".tmp-round-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
