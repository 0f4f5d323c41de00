"""A model's shape without its weights: parameter counts from a model built on the meta
device (instant, no memory, an 8B model included), and seeded random bases built one
layer at a time so a quantized 1B model never exists in fp32 as a whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import warnings

import torch

from ..resources.memory import Setting, Shape
from . import precision


def _empty(cls, config) -> torch.nn.Module:
    """The model with every parameter on the meta device and real buffers (rotary
    frequencies are computed at construction and must not be lost)."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = cls.from_config(config)
    model.tie_weights()  # not done on the meta device by construction
    return model


def shape(spec) -> Shape:
    """Counts for ``resources.memory`` from the spec's config: the base as bitsandbytes
    would split it, and the adapter PEFT would add."""
    from peft import get_peft_model

    from .models import adapter_config, model_class, model_config

    config = model_config(spec)
    base = _empty(model_class(spec), config)
    linear, rows, layer_max = 0, 0, 0
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.Linear) and not _is_head(name):
            linear += module.weight.numel()
            rows += module.out_features
        if name.count(".") <= 2 and name.split(".")[-1].isdigit():  # a block
            layer_max = max(layer_max, sum(p.numel() for p in module.parameters()))
    total = sum(p.numel() for p in base.parameters())  # tied weights counted once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from accelerate import init_empty_weights

        with init_empty_weights(include_buffers=False):
            peft = get_peft_model(base, adapter_config(spec))
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    text = getattr(config, "text_config", config)
    return Shape(
        linear_params=linear,
        linear_rows=rows,
        other_params=total - linear,
        trainable_params=trainable,
        largest_layer_params=layer_max,
        hidden=text.hidden_size,
        layers=text.num_hidden_layers,
        ffn=getattr(text, "intermediate_size", 4 * text.hidden_size),
        vocab=text.vocab_size,
        lm_head=spec.kind != "cls",
    )


def _is_head(name: str) -> bool:
    return any(part in precision.HEADS for part in name.split("."))


def random_base(cls, config, setting: Setting, *, seed: int) -> torch.nn.Module:
    """A base of ``config``'s shape with seeded random weights, materialised one block at
    a time at the setting's precision and quantized before the next: the peak is the
    finished model plus one block at the precision. Each tensor comes from its own generator,
    seeded by (seed, full name), so the result does not depend on the build order."""
    model = _empty(cls, config)
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
