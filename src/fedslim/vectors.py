"""Named arrays <-> one flat float32 vector with a fixed layout: what codecs and
aggregation work on. numpy only, so strategies and the wire never need torch."""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

Layout = tuple[tuple[str, tuple[int, ...]], ...]


def layout(arrays: dict[str, np.ndarray]) -> Layout:
    return tuple((k, tuple(v.shape)) for k, v in arrays.items())


def num_parameters(arrays: dict[str, np.ndarray]) -> int:
    return int(sum(v.size for v in arrays.values()))


def flatten(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """One float32 vector in layout order."""
    if not arrays:
        return np.zeros(0, np.float32)
    return np.concatenate([np.asarray(v, np.float32).ravel() for v in arrays.values()])


def unflatten(vec: np.ndarray, shape_of: Layout) -> OrderedDict[str, np.ndarray]:
    """Inverse of ``flatten`` for a layout ``((name, shape), ...)``."""
    out, at = OrderedDict(), 0
    for name, shape in shape_of:
        size = int(np.prod(shape, dtype=np.int64))
        out[name] = vec[at : at + size].reshape(shape).astype(np.float32, copy=True)
        at += size
    if at != vec.size:
        raise ValueError(f"vector of {vec.size} values does not fit a layout of {at}")
    return out


def size_of(shape_of: Layout) -> int:
    return int(sum(int(np.prod(s, dtype=np.int64)) for _, s in shape_of))


def digest(vec: np.ndarray) -> str:
    """Short hash of a vector's float32 bytes: how two ends prove they hold the same copy."""
    return hashlib.sha256(np.ascontiguousarray(vec, np.float32).tobytes()).hexdigest()[:24]
