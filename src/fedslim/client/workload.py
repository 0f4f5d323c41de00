"""What every node of a run builds from the run config: the task's data and the model.

The server and the clients must build the same base, the same seeded adapter ``g0`` and
the same global layout, so both call these. The strategy's capabilities decide what the
model looks like (FFA freezes A; exact aggregation adds residuals to the global state).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import numpy as np

from ..config import RunConfig
from ..resources.memory import Setting
from ..task.data import TaskData, load_task
from ..task.models import ModelSpec, build_model
from ..task.residual import global_state


def run_task(cfg: RunConfig) -> TaskData:
    t = cfg.task
    return load_task(
        t.name, seed=cfg.seed, num_examples=t.num_examples, eval_fraction=t.eval_fraction
    )


def model_spec(
    cfg: RunConfig, task: TaskData, rank: int | None = None, setting: Setting | None = None
) -> ModelSpec:
    """The model a node builds: ``setting`` is a client's own (the server and the shape
    use the run's ``precision`` / ``base-quant`` / ``gradient-checkpointing``)."""
    from ..task.precision import resolve_device

    return ModelSpec.from_config(
        cfg.adapter,
        seed=cfg.seed,
        num_labels=task.num_labels,
        kind=task.kind,
        rank=rank,
        freeze_a=cfg.strategy.spec.freezes_a,
        setting=setting or cfg.client.setting,
        device=resolve_device(cfg.client.device),
    )


def run_model(cfg: RunConfig, task: TaskData, rank: int | None = None):
    return build_model(model_spec(cfg, task, rank))


def initial_global(cfg: RunConfig, model) -> OrderedDict[str, np.ndarray]:
    """``g0``: the adapter (and zero residuals when the strategy needs them)."""
    return global_state(model, exact=cfg.strategy.spec.base_residual)


def client_model(cfg: RunConfig, task: TaskData, rank: int, setting: Setting | None = None):
    """(model, g0) for a client: built once per worker process and spec, since building
    the frozen base is the costly part (a pretrained model is read from disk). Nothing of
    a node stays in it: every message loads the node's adapter (and residuals) over all
    of the model's trainable and exchanged state, and g0 is the copy taken at build."""
    return _built(model_spec(cfg, task, rank, setting), cfg.strategy.spec.base_residual)


@lru_cache(maxsize=4)  # a spec per LoRA rank a worker serves
def _built(spec: ModelSpec, residual: bool):
    model = build_model(spec)
    return model, global_state(model, exact=residual)
