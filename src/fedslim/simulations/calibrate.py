"""Measure this host's effective training FLOP/s for a model: the ``host`` device profile.

Effective, not peak: FLOPs counted by torch's counter on the steps that ran, divided by
the seconds the steps took, one thread by default (a simulated client gets one CPU).
Small models run far below a CPU's peak (per-operation overhead dominates), so calibrate
with the model you simulate. Power cannot be read here (no RAPL), so the profile's watts
are marked as estimates to edit.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..config import RunConfig
from ..resources.profiles import Device

# whole-machine power of a busy laptop-class CPU core and of an idle machine [u]: edit
# these in the written profile with a wattmeter's reading
WATTS_PER_BUSY_CORE, IDLE_W = 10.0, 5.0


def measure(cfg: RunConfig, *, steps: int = 10, threads: int = 1) -> tuple[float, float, int]:
    """(effective FLOP/s, seconds, FLOPs) of ``steps`` local steps of the run's model."""
    import torch

    from ..client.workload import run_model, run_task
    from ..task.models import build_tokenizer
    from ..task.partition import partition_indices
    from ..task.train import train_local

    torch.set_num_threads(threads)
    task = run_task(cfg)
    model = run_model(cfg, task)
    tok = build_tokenizer(cfg.adapter.model)
    indices = partition_indices(task, "iid", partition_id=0, num_partitions=2, seed=cfg.seed)
    kwargs = dict(batch_size=cfg.task.batch_size, lr=cfg.task.lr, max_length=cfg.task.max_length)
    train_local(model, task, indices, tok, steps=1, seed=0, **kwargs)  # warm up caches
    t0 = time.perf_counter()
    result = train_local(model, task, indices, tok, steps=steps, seed=1, **kwargs)
    seconds = time.perf_counter() - t0
    return result.flops / seconds, seconds, result.flops


def speeds(cfg: RunConfig, flops: float, *, steps: int, threads: int) -> tuple[float, dict]:
    """(fp32 FLOP/s, the profile's speed factors) for a run at a narrower setting: the
    setting's FLOP/s against fp32's, split into the precision's factor and the quantized
    base's, each measured on its own (``fedslim calibrate --set precision=bf16 --set
    base-quant=nf4`` measures fp32, bf16 and bf16 + nf4)."""
    setting = cfg.client.setting
    if setting.precision == "fp32" and setting.base_quant == "none":
        return flops, {}
    plain = dict(precision="fp32", base_quant="none", gradient_checkpointing=False)
    fp32 = measure(cfg.replace(**plain), steps=steps, threads=threads)[0]
    factors = {}
    at_precision = flops
    if setting.base_quant != "none":
        narrow = cfg.replace(base_quant="none", gradient_checkpointing=False)
        at_precision = fp32 if setting.precision == "fp32" else measure(
            narrow, steps=steps, threads=threads)[0]  # fmt: skip
        key = "int8_speed" if setting.base_quant == "int8" else "nf4_speed"
        factors[key] = flops / at_precision
    if setting.precision != "fp32":
        factors[f"{setting.precision}_speed"] = at_precision / fp32
    return fp32, factors


def host_device(flops: float, threads: int = 1, factors: dict | None = None) -> Device:
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e6
    watts = IDLE_W + WATTS_PER_BUSY_CORE * threads
    return Device("host", flops, watts, IDLE_W, memory_mb, **(factors or {}))


def write_profile(path: Path, device: Device, *, model: str) -> None:
    """A profiles file (``profiles = FILE``) holding this host as ``[device.host]``."""
    path.write_text(
        f"# written by fedslim calibrate for model {model}: {device.flops / 1e9:.2f} GFLOP/s\n"
        "# effective; active_w and idle_w are estimates [u]: measure them at the wall\n"
        f"[device.host]\nflops = {device.flops:.6g}\nactive_w = {device.active_w}\n"
        f"idle_w = {device.idle_w}\nmemory_mb = {device.memory_mb:.0f}\n"
        + "".join(
            f"{k} = {getattr(device, k):.3g}\n" for k in SPEED_KEYS if getattr(device, k) != 1.0
        ),  # fmt: skip
        encoding="utf-8",
    )


SPEED_KEYS = ("bf16_speed", "fp16_speed", "int8_speed", "nf4_speed")
