"""Round checkpoints: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint holds what the next round needs to be computed exactly as an uninterrupted
run would compute it: the global adapter, the round number, the run config and the
results history (the strategy's sampling and the clients' seeds derive from the round).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

ADAPTER, SERVER, STATE = "adapter.safetensors", "server.safetensors", "state.json"


@dataclass
class Checkpoint:
    round: int
    adapter: dict[str, np.ndarray]
    config: dict
    history: dict  # {"rounds": [...], "clients": [...]} rows written so far
    server: dict[str, np.ndarray] = field(default_factory=dict)  # strategy state


def save(directory: Path, ckpt: Checkpoint) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, tensors in ((ADAPTER, ckpt.adapter), (SERVER, ckpt.server)):
        tmp = directory / (name + ".tmp")
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, directory / name)
    state = {
        "round": ckpt.round,
        "config": ckpt.config,
        "history": ckpt.history,
        "order": list(ckpt.adapter),
    }
    tmp = directory / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, default=float), encoding="utf-8")
    os.replace(tmp, directory / STATE)


def load(directory: Path) -> Checkpoint:
    """Read a checkpoint; a missing or damaged one is a clear error, never a silent restart."""
    try:
        state = json.loads((directory / STATE).read_text(encoding="utf-8"))
        tensors = load_file(str(directory / ADAPTER))
        server = load_file(str(directory / SERVER)) if (directory / SERVER).exists() else {}
    except FileNotFoundError:
        raise FileNotFoundError(f"--resume: no checkpoint in {directory}") from None
    except (ValueError, OSError) as exc:
        raise ValueError(f"--resume: checkpoint in {directory} is damaged: {exc}") from None
    adapter = {k: tensors[k] for k in state["order"]}
    return Checkpoint(
        round=int(state["round"]),
        adapter=adapter,
        config=state["config"],
        history=state["history"],
        server=server,
    )
