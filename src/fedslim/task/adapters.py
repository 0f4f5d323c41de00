"""Adapter state <-> named float32 arrays with a fixed layout (names, shapes).

Only what PEFT calls the adapter state travels: LoRA factors and, for classification,
the trainable head (``modules_to_save``). The base weights never leave a node.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch
from peft import get_peft_model_state_dict, set_peft_model_state_dict

from ..vectors import layout


def get_adapter(model) -> OrderedDict[str, np.ndarray]:
    """The exchanged state: PEFT's adapter state minus what the model keeps frozen (FFA)."""
    state = get_peft_model_state_dict(model)
    skip = getattr(model, "exchange_excludes", ())
    return OrderedDict(
        (k, v.detach().cpu().float().numpy().copy())
        for k, v in state.items()
        if not any(s in k for s in skip)
    )


def set_adapter(model, arrays: dict[str, np.ndarray]) -> None:
    """Load adapter arrays, refusing any name or shape that is not this model's."""
    expected = layout(get_adapter(model))
    got = layout(arrays)
    if expected != got:
        missing = sorted(set(dict(expected)) - set(dict(got)))
        extra = sorted(set(dict(got)) - set(dict(expected)))
        raise ValueError(
            f"adapter layout mismatch: missing {missing[:3]}, unexpected "
            f"{extra[:3]}, or shapes differ"
        )
    state = {
        k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items()
    }
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"adapter keys not in the model: {unexpected[:3]}")


def base_fingerprint(model) -> str:
    """Hash of every non-trainable weight, quantization scales included: equal on two
    nodes iff their bases are equal."""
    from .precision import base_tensors, update_hash

    h = hashlib.sha256()
    for name, p in base_tensors(model):
        if not p.requires_grad:
            update_hash(h, name, p)
    return h.hexdigest()
