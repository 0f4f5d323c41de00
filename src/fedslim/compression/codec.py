"""Packets and the codec protocol: what every stage implements and may read.

A codec is a pure function pair over packets (named arrays): same packet and context in,
same packet out, no state kept between calls. Pipelines of codecs are in ``pipeline.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

Packet = dict[str, np.ndarray]
"""Named arrays; a dense update is ``{"values": float32[n]}``."""


@dataclass(frozen=True)
class Context:
    """What every stage may read: the original length ``n``, the pipeline seed, its index.

    The seed is the only randomness that travels, so stochastic stages derive their
    generators from ``(seed, stage, ...)`` and a decoder regenerates the same draws.
    """

    n: int
    seed: int
    stage: int = 0

    def rng(self, tag: int) -> np.random.Generator:
        """A generator private to this stage and ``tag`` (a codec's own constant)."""
        return np.random.default_rng([self.seed, self.stage, tag])


@runtime_checkable
class Codec(Protocol):
    """One stage. ``kind`` (optional, default "transform") drives the ordering rules:

    "sparsify" (at most one, before any quantizer), "quantize" (at most one; only an
    entropy stage may follow), "entropy" (at most one, last), "transform" (floats in,
    floats out; anywhere before the quantizer). ``spec`` (optional) is the canonical text
    the stage is rebuilt from; without it the registered name is used. ``lossless``
    (optional, default False) marks bit-exact stages.
    """

    def encode(self, packet: Packet, ctx: Context) -> Packet: ...

    def decode(self, packet: Packet, ctx: Context) -> Packet: ...


def expect(packet: Packet, key: str, *, dtype: Any, length: int | None = None) -> np.ndarray:
    """``packet[key]`` checked to be 1-D of ``dtype`` (and ``length``); ValueError otherwise."""
    arr = packet.get(key)
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"packet lacks array {key!r} (has {sorted(packet)})")
    if arr.dtype != np.dtype(dtype) or arr.ndim != 1:
        raise ValueError(f"{key!r} must be 1-D {np.dtype(dtype)}, got {arr.dtype}{arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{key!r} must hold {length} elements, got {arr.shape[0]}")
    return arr


def expect_keys(packet: Packet, keys: set[str]) -> None:
    """Refuse a packet whose keys are not exactly ``keys`` (a decoder's layout check)."""
    if set(packet) != keys:
        raise ValueError(f"packet keys must be {sorted(keys)}, got {sorted(packet)}")


def all_finite(a: np.ndarray) -> bool:
    """No NaN or inf in float32 ``a``: one BLAS dot product (NaN and inf propagate through
    it), with the exact elementwise test only when the dot overflows or flags a problem."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.dot(a, a))) or bool(np.isfinite(a).all())
