"""The global state of exact aggregation: the adapter plus a residual folded into the base.

Averaging LoRA's A and B separately gives ``mean(B) @ mean(A)``, not the clients' mean
update ``mean(B_i @ A_i)``. FedEx-LoRA keeps the averaged factors as the adapter and adds
the difference, times LoRA's scaling, to the frozen base weight of each wrapped module.
Every node applies the same residual to the same base, so all hold the exact average.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict

import numpy as np
import torch

from .adapters import get_adapter, set_adapter
from .lora_names import a_key, b_key

PREFIX = "residual:"
_A = a_key("")  # ".lora_A.weight"
# id of a base weight with a residual folded in -> (the weight, the untouched weight);
# by id, as tensors compare element-wise, and dropped when the weight is
_ORIGINAL: dict[int, tuple[weakref.ref, torch.Tensor]] = {}


def original(weight: torch.Tensor) -> torch.Tensor | None:
    """The base weight as built, where a residual was folded into it (None: never)."""
    entry = _ORIGINAL.get(id(weight))
    return entry[1] if entry is not None and entry[0]() is weight else None


def _keep_original(weight: torch.Tensor) -> torch.Tensor:
    if original(weight) is None:
        _ORIGINAL[id(weight)] = (weakref.ref(weight), weight.detach().clone())
        weakref.finalize(weight, _ORIGINAL.pop, id(weight), None)
    return _ORIGINAL[id(weight)][1]


def lora_modules(model) -> list[tuple[str, str, str, float]]:
    """``(residual key, A key, B key, scaling)`` for every LoRA-wrapped module."""
    modules = dict(model.named_modules())
    out = []
    for key in get_adapter(model):
        if key.endswith(_A):
            path = key[: -len(_A)]
            scaling = modules[path].scaling["default"]
            out.append((PREFIX + path, key, b_key(path), float(scaling)))
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
        w0 = _keep_original(weight)  # the untouched base, kept once
        with torch.no_grad():
            weight.copy_(w0 + torch.from_numpy(residual))
