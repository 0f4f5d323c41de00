"""The global state of exact aggregation: the adapter plus a residual folded into the base.

Averaging LoRA's A and B separately gives ``mean(B) @ mean(A)``, not the clients' mean
update ``mean(B_i @ A_i)``. FedEx-LoRA keeps the averaged factors as the adapter and adds
the difference, times LoRA's scaling, to the frozen base weight of each wrapped module.
Every node applies the same residual to the same base, so all hold the exact average.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from .adapters import get_adapter, set_adapter

PREFIX = "residual:"
_A, _B = ".lora_A.weight", ".lora_B.weight"


def lora_modules(model) -> list[tuple[str, str, str, float]]:
    """``(residual key, A key, B key, scaling)`` for every LoRA-wrapped module."""
    modules = dict(model.named_modules())
    out = []
    for key in get_adapter(model):
        if key.endswith(_A):
            path = key[: -len(_A)]
            scaling = modules[path].scaling["default"]
            out.append((PREFIX + path, key, path + _B, float(scaling)))
    return out


def global_state(model, *, exact: bool) -> OrderedDict[str, np.ndarray]:
    """What the server aggregates and sends: the adapter, then (exact) zero residuals."""
    state = get_adapter(model)
    if exact:
        modules = dict(model.named_modules())
        for rkey, *_ in lora_modules(model):
            weight = modules[rkey[len(PREFIX) :]].base_layer.weight
            state[rkey] = np.zeros(tuple(weight.shape), np.float32)
    return state


def load_global(model, arrays: dict[str, np.ndarray]) -> None:
    """Set the adapter and fold residuals into the base weights (idempotent)."""
    set_adapter(model, {k: v for k, v in arrays.items() if not k.startswith(PREFIX)})
    modules = dict(model.named_modules())
    for key, residual in arrays.items():
        if not key.startswith(PREFIX):
            continue
        weight = modules[key[len(PREFIX) :]].base_layer.weight
        if not hasattr(weight, "fedslim_w0"):
            weight.fedslim_w0 = weight.detach().clone()  # the untouched base, kept once
        with torch.no_grad():
            weight.copy_(weight.fedslim_w0 + torch.from_numpy(residual))
