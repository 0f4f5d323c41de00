"""Seeded random bases of a config's shape, built one block at a time so a quantized 1B
model never exists in fp32 as a whole (``model = random:DIR``)."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib

import torch

from ..resources.memory import Setting
from . import precision


def empty(cls, config) -> torch.nn.Module:
    """The model with every parameter on the meta device and real buffers (rotary
    frequencies are computed at construction and must not be lost)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = cls.from_config(config)
    model.tie_weights()  # not done on the meta device by construction
    return model


def random_base(cls, config, setting: Setting, *, seed: int) -> torch.nn.Module:
    """A base of ``config``'s shape with seeded random weights, materialised one block at
    a time at the setting's precision and quantized before the next: the peak is the
    finished model plus one block at the precision. Each tensor comes from its own generator,
    seeded by (seed, full name), so the result does not depend on the build order."""
    model = empty(cls, config)
    std = getattr(config, "initializer_range", 0.02)
    dtype = precision.DTYPES[setting.precision]
    for prefix, part in _parts(model, ""):
        if not any(p.is_meta for p in part.parameters()):
            continue  # tied to a part already built (the output embedding)
        if prefix.rstrip(".") not in precision.CLS_HEADS:  # a classification head stays fp32
            part.to(dtype)
        part.to_empty(device="cpu", recurse=True)  # allocated at the precision
        with torch.no_grad():
            for name, p in part.named_parameters():
                _init(p, f"{prefix}{name}", seed, std)
        precision.quantize_linears(part, setting)
        model.tie_weights()
        _trim()
    return model


def _trim() -> None:
    """Hand freed heap back to the OS (glibc keeps blocks under its mmap threshold, which
    grows after large frees: without this, RSS grows ~150 MB a block of a 1B model)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


CHUNK = 1 << 22  # values drawn in fp32 at a time, whatever the precision


def _init(p: torch.Tensor, name: str, seed: int, std: float) -> None:
    """Rows drawn in fp32 chunks, each from its own seeded generator, then stored at the
    parameter's precision: the same values, rounded, at every precision."""
    if p.dim() >= 2:
        rows = p.reshape(p.shape[0], -1)
        step = max(1, CHUNK // rows.shape[1])
        for i, start in enumerate(range(0, rows.shape[0], step)):
            digest = hashlib.sha256(f"{seed}:{name}:{i}".encode()).digest()
            gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
            chunk = torch.empty(rows[start : start + step].shape).normal_(0, std, generator=gen)
            rows[start : start + step].copy_(chunk)
    elif name.endswith("bias"):
        p.zero_()
    else:  # norm scales
        p.fill_(1.0)


def _parts(module, prefix: str):
    """(name prefix, module) of each block of a ModuleList and each other leaf-holding
    child: the units a random base is built in."""
    for name, child in module.named_children():
        here = f"{prefix}{name}."
        if isinstance(child, torch.nn.ModuleList):
            yield from ((f"{here}{i}.", block) for i, block in enumerate(child))
        elif any(True for _ in child.parameters(recurse=False)) or not any(
            True for _ in child.children()
        ):
            yield here, child
        else:
            yield from _parts(child, here)
