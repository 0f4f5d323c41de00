"""Which setting a client trains with, and what it needs: the run's shape priced by
``resources.memory`` for every setting, then the fixed setting or the plan's choice.

One place for the simulator's clock (which knows each client's device profile), the
client itself (memory-plan=auto in a deployment: its own memory) and ``fedslim memory``.
"""

from __future__ import annotations

import os
from functools import lru_cache

from ..config import RunConfig
from ..resources import memory
from ..resources.memory import Estimate, Setting, Shape
from ..resources.profiles import Device

# The runtime's own footprint and the training loop's overhead beyond weights and
# activations, measured on this host (torch 2.13 CPU, peak RSS of a client process:
# 380 MB after imports; +150 MB during training of the tiny model beyond its weights and
# activations); benchmarks/memory.py checks the estimate against measured peaks.
RUNTIME_MB = 380.0
TRAINING_OVERHEAD_MB = 150.0


@lru_cache(maxsize=8)
def _shape(spec) -> Shape:
    from ..task.shape import shape

    return shape(spec)


def run_shape(cfg: RunConfig) -> Shape:
    """The shape of the run's model (built on the meta device: no weights are read)."""
    from .workload import model_spec, run_task

    return _shape(model_spec(cfg, run_task(cfg)))


def estimates(cfg: RunConfig, shape: Shape) -> list[Estimate]:
    """Every setting's estimate at the run's batch size and sequence length."""
    batch, seq = cfg.task.batch_size, cfg.task.max_length
    runtime = RUNTIME_MB + TRAINING_OVERHEAD_MB
    return [
        memory.estimate(shape, s, batch=batch, seq=seq, runtime_mb=runtime) for s in memory.SETTINGS
    ]


def choose(
    cfg: RunConfig, shape: Shape, device: Device, partition: int
) -> tuple[Estimate | None, str | None]:
    """(what the client trains with, why it cannot train): the partition's fixed setting
    if it fits, or the plan's choice among the candidates."""
    table = {e.setting: e for e in estimates(cfg, shape)}
    if cfg.client.memory_plan == "fixed":
        chosen = table[cfg.client.setting_of(partition)]
        if memory.fits(chosen, device):
            return chosen, None
        return None, (
            f"does not fit: {chosen.setting} needs ~{chosen.peak_mb:.0f} MB, "
            f"{device.name} has {_has(device)}"
        )
    accepted = cfg.client.candidates(full_precision=cfg.strategy.spec.base_residual)
    chosen = memory.plan(list(table.values()), device, accepted=accepted)
    if chosen is not None:
        return chosen, None
    leanest = min((table[s] for s in accepted), key=lambda e: e.peak_mb)
    return None, (
        f"no setting fits: the leanest, {leanest.setting}, needs ~{leanest.peak_mb:.0f} MB, "
        f"{device.name} has {_has(device)}"
    )


def _has(device: Device) -> str:
    if device.accel_memory_mb:
        return f"{device.accel_memory_mb:.0f} MB on its accelerator, {device.memory_mb:.0f} MB host"
    return f"{device.memory_mb:.0f} MB"


def this_host(device: str) -> Device:
    """This machine as a profile for the plan: its RAM, and its GPU's memory when it
    trains on one (a deployed client plans against what it has)."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e6
    accel = 0.0
    if device.startswith("cuda"):
        import torch

        accel = torch.cuda.get_device_properties(torch.device(device)).total_memory / 1e6
    return Device("this host", 1.0, 1.0, 0.0, ram, accel)


def own_setting(cfg: RunConfig, partition: int, device: str) -> Setting:
    """A client's setting when the server sent none: the fixed one, or its own plan."""
    if cfg.client.memory_plan == "fixed":
        return cfg.client.setting_of(partition)
    chosen, reason = choose(cfg, run_shape(cfg), this_host(device), partition)
    if chosen is None:
        raise MemoryError(reason)
    return chosen.setting
