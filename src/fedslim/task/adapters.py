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


def layout(arrays: dict[str, np.ndarray]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((k, tuple(v.shape)) for k, v in arrays.items())


def num_parameters(arrays: dict[str, np.ndarray]) -> int:
    return int(sum(v.size for v in arrays.values()))


def base_fingerprint(model) -> str:
    """Hash of every non-trainable weight: equal on two nodes iff their bases are equal."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if not p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def flatten(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """One float32 vector in layout order: what codecs and aggregation work on."""
    if not arrays:
        return np.zeros(0, np.float32)
    return np.concatenate([np.asarray(v, np.float32).ravel() for v in arrays.values()])


def unflatten(vec: np.ndarray, shape_of: tuple) -> OrderedDict[str, np.ndarray]:
    """Inverse of ``flatten`` for a layout ``((name, shape), ...)``."""
    out, at = OrderedDict(), 0
    for name, shape in shape_of:
        size = int(np.prod(shape, dtype=np.int64))
        out[name] = vec[at : at + size].reshape(shape).astype(np.float32, copy=True)
        at += size
    if at != vec.size:
        raise ValueError(f"vector of {vec.size} values does not fit a layout of {at}")
    return out
