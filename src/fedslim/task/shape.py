"""A model's shape without its weights: parameter counts from a model built on the meta
device (instant, no memory, an 8B model included)."""

from __future__ import annotations

import warnings

import torch

from ..resources.memory import Shape
from . import precision
from .models import adapted_blocks, adapter_config, model_class, model_config
from .random_base import empty


def shape(spec) -> Shape:
    """Counts for ``resources.memory`` from the spec's config: the base as bitsandbytes
    would split it, and the adapter PEFT would add."""
    from peft import get_peft_model

    config = model_config(spec)
    base = empty(model_class(spec), config)
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
        adapted_from=min(adapted_blocks(spec) or [0]),
    )


def _is_head(name: str) -> bool:
    return any(part in precision.HEADS for part in name.split("."))
