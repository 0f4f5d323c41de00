"""A run's trained model, ready for inference: its config and latest checkpointed
adapter (``fedslim split`` on ``--adapter``), or a config's model with the seeded
initial adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..client.workload import run_model, run_task
from ..config import ConfigError, RunConfig
from ..task.residual import load_global
from . import checkpoint


def trained_model(model: str | None, adapter: Path | None, values: dict[str, Any]):
    """(run config, model in eval mode, task). ``values`` override the run's config; a
    ``model`` other than the run's is refused, naming both."""
    ckpt = None
    if adapter is not None:
        where = adapter / "checkpoint" if (adapter / "checkpoint").is_dir() else adapter
        try:
            ckpt = checkpoint.load(where)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"--adapter {adapter}: {str(exc).replace('--resume: ', '')}"
            ) from None
        saved = dict(ckpt.config) | {"out": ".", "resume": False}
        if model is not None and model != saved.get("model"):
            raise ConfigError(f"--model {model}: the run in {adapter} used {saved.get('model')}")
        values = saved | values
    elif model is not None:
        values = values | {"model": model}
    cfg = RunConfig.from_mapping(values)
    task = run_task(cfg)
    built = run_model(cfg, task)
    if ckpt is not None:
        load_global(built, ckpt.adapter)
    return cfg, built.eval(), task
