"""Quantizers: fewer bits per value, after any sparsifier and before zstd.

``qB[:BLOCK]`` (B = 1..8) scales each block of values by its max magnitude and rounds
stochastically to 2^B levels, drawing from the wire seed: unbiased (E[decode] = x), which
is what averaging many clients needs. ``sign[:BLOCK]`` sends one bit per value and the
mean magnitude per block (the L2-best scale for signs): biased, for use with error
feedback. ``fp16`` and ``bf16`` are deterministic casts. A quantizer replaces ``values``
with ``codes`` (densely packed B-bit integers), ``scales`` (float32 per block) and
``count`` (the number of values); other keys (a sparsifier's ``indices``) pass through.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from fedslim.compression.codec import Context, Packet, expect
from fedslim.compression.registry import parse_int, register

DEFAULT_BLOCK = 256  # 4 scale bytes per 256 values: 1/64 byte per value of overhead
MAX_BLOCK = 1 << 16
_Q_TAG = 0x51554E54  # "QUNT": separates the rounding stream from other seeded draws
_FP16_MAX = 65504.0
_OWN = ("codes", "scales", "count")


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """uint8 codes < 2**bits -> ceil(len * bits / 8) bytes, most significant bit first."""
    if bits == 8:
        return codes
    if 8 % bits:
        return np.packbits(np.unpackbits(codes[:, None], axis=1)[:, 8 - bits :])
    per = 8 // bits
    pad = -codes.size % per
    grid = (np.concatenate([codes, np.zeros(pad, np.uint8)]) if pad else codes).reshape(-1, per)
    out = grid[:, 0] << (8 - bits)
    for j in range(1, per):
        out |= grid[:, j] << (8 - bits * (j + 1))
    return out


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits` for ``count`` codes."""
    if bits == 8:
        return packed
    if 8 % bits:
        grid = np.unpackbits(packed, count=count * bits).reshape(count, bits)
        return np.packbits(grid, axis=1).reshape(-1) >> (8 - bits)
    per, mask = 8 // bits, (1 << bits) - 1
    out = np.empty((packed.size, per), np.uint8)
    for j in range(per):
        out[:, j] = (packed >> (8 - bits * (j + 1))) & mask
    return out.reshape(-1)[:count]


def _grid(values: np.ndarray, block: int) -> np.ndarray:
    """Values as (blocks, block) rows, the last one zero-padded."""
    pad = -values.size % block
    if pad:
        values = np.concatenate([values, np.zeros(pad, values.dtype)])
    return values.reshape(-1, block)


class _BlockQuantizer:
    """Shared layout and checks of ``qB`` and ``sign``: codes + per-block scales + count."""

    kind = "quantize"
    bits: ClassVar[int]

    def __init__(self, *, block: int = DEFAULT_BLOCK) -> None:
        if not isinstance(block, int) or not 1 <= block <= MAX_BLOCK:
            raise ValueError(f"block must be an int in 1..{MAX_BLOCK}, got {block!r}")
        self.block = block

    def _levels(self, grid: np.ndarray, scales: np.ndarray, ctx: Context) -> np.ndarray:
        raise NotImplementedError

    def _values(self, codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _scales(self, grid: np.ndarray, count: int) -> np.ndarray:
        raise NotImplementedError

    def encode(self, packet: Packet, ctx: Context) -> Packet:
        values = expect(packet, "values", dtype=np.float32)
        if any(key in packet for key in _OWN):
            raise ValueError(f"packet already holds one of {_OWN}")
        grid = _grid(values, self.block)
        scales = self._scales(grid, values.size)
        codes = self._levels(grid, scales, ctx).reshape(-1)[: values.size]
        rest = {key: arr for key, arr in packet.items() if key != "values"}
        count = np.array([values.size], np.int64)
        return {**rest, "codes": pack_bits(codes, self.bits), "scales": scales, "count": count}

    def decode(self, packet: Packet, ctx: Context) -> Packet:
        (count,) = expect(packet, "count", dtype=np.int64, length=1).tolist()
        if not 0 <= count <= ctx.n or "values" in packet:
            raise ValueError(f"count {count} outside 0..{ctx.n}, or stray 'values'")
        packed = expect(packet, "codes", dtype=np.uint8, length=math.ceil(count * self.bits / 8))
        scales = expect(packet, "scales", dtype=np.float32, length=-(-count // self.block))
        if not (np.isfinite(scales) & (scales >= 0)).all():
            raise ValueError("scales must be finite and non-negative")
        codes = _grid(unpack_bits(packed, self.bits, count), self.block)
        values = self._values(codes, scales).reshape(-1)[:count]
        rest = {key: arr for key, arr in packet.items() if key not in _OWN}
        return {**rest, "values": values}


class Stochastic(_BlockQuantizer):
    """Unbiased stochastic rounding to 2^B levels spanning [-max|x|, +max|x|] per block."""

    forms = "qB[:BLOCK] (B 1..8, BLOCK 1..65536, default 256)"

    def __init__(self, *, block: int = DEFAULT_BLOCK) -> None:
        super().__init__(block=block)
        self.spec = f"q{self.bits}:{block}"

    @classmethod
    def from_arg(cls, arg: str | None) -> Stochastic:
        name = f"q{cls.bits}"
        return cls(block=parse_int(arg, name=name, default=DEFAULT_BLOCK, low=1, high=MAX_BLOCK))

    def _scales(self, grid: np.ndarray, count: int) -> np.ndarray:
        return np.abs(grid).max(axis=1)

    def _levels(self, grid: np.ndarray, scales: np.ndarray, ctx: Context) -> np.ndarray:
        half = ((1 << self.bits) - 1) / 2
        inv = np.divide(half, scales, out=np.zeros_like(scales), where=scales > 0)
        u = grid * inv[:, None] + np.float32(half)  # in [0, 2*half]
        u += ctx.rng(_Q_TAG).random(u.shape, dtype=np.float32)
        np.floor(u, out=u)
        return np.clip(u, 0, 2 * half, out=u).astype(np.uint8)

    def _values(self, codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
        step = np.float32(2 / ((1 << self.bits) - 1))
        return (codes * step - np.float32(1)) * scales[:, None]


for _bits in range(1, 9):
    register(f"q{_bits}")(type(f"Q{_bits}", (Stochastic,), {"bits": _bits}))


@register("sign")
class Sign(_BlockQuantizer):
    """One bit per value (1 = negative) and mean |x| per block; biased, needs feedback."""

    bits = 1
    name = "sign"
    forms = "sign[:BLOCK] (BLOCK 1..65536, default 256)"

    def __init__(self, *, block: int = DEFAULT_BLOCK) -> None:
        super().__init__(block=block)
        self.spec = f"{self.name}:{block}"

    @classmethod
    def from_arg(cls, arg: str | None) -> Sign:
        block = parse_int(arg, name=cls.name, default=DEFAULT_BLOCK, low=1, high=MAX_BLOCK)
        return cls(block=block)

    def _scales(self, grid: np.ndarray, count: int) -> np.ndarray:
        sizes = np.full(grid.shape[0], self.block, np.float32)
        if grid.shape[0]:
            sizes[-1] = count - self.block * (grid.shape[0] - 1)
        return (np.abs(grid).sum(axis=1, dtype=np.float32) / sizes).astype(np.float32)

    def _levels(self, grid: np.ndarray, scales: np.ndarray, ctx: Context) -> np.ndarray:
        return (grid < 0).view(np.uint8)

    def _values(self, codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
        return (np.float32(1) - np.float32(2) * codes) * scales[:, None]


@register("usign")
class UnbiasedSign(Sign):
    """``sign`` with the scale sum(x^2) / sum|x| per block: the decoded block's projection
    on the update is the update (DRIVE's scale, Vargaftik et al., NeurIPS 2021).

    ``sign``'s mean |x| is the L2-best scale for one client, but it shrinks every update
    by the same ~0.7 ((mean |x|)^2 / mean x^2 of a LoRA update after 10 AdamW steps), and
    averaging clients does not undo a shrinkage shared by all: the aggregate of 8 WordNet
    clients points the same way (cosine 0.92 with the fp32 mean either way) but is 0.76
    of its length. Error feedback then carries a residual orthogonal to the update."""

    name = "usign"
    forms = "usign[:BLOCK] (BLOCK 1..65536, default 256)"

    def _scales(self, grid: np.ndarray, count: int) -> np.ndarray:
        l1 = np.abs(grid).sum(axis=1, dtype=np.float64)
        l2 = np.square(grid, dtype=np.float64).sum(axis=1)
        return np.divide(l2, l1, out=np.zeros_like(l1), where=l1 > 0).astype(np.float32)


class _Cast:
    kind = "quantize"
    dtype: ClassVar[type]

    def encode(self, packet: Packet, ctx: Context) -> Packet:
        return {**packet, "values": self._down(expect(packet, "values", dtype=np.float32))}

    def decode(self, packet: Packet, ctx: Context) -> Packet:
        values = expect(packet, "values", dtype=self.dtype)
        if values.size > ctx.n:
            raise ValueError(f"{values.size} values for n={ctx.n}")
        return {**packet, "values": self._up(values)}


@register("fp16")
class FP16(_Cast):
    """IEEE half precision, saturating at +-65504 rather than overflowing to inf."""

    dtype = np.float16
    forms = "fp16"

    def _down(self, values: np.ndarray) -> np.ndarray:
        return np.clip(values, -_FP16_MAX, _FP16_MAX).astype(np.float16)

    def _up(self, values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32)


@register("bf16")
class BF16(_Cast):
    """bfloat16 (float32's range, 8 mantissa bits), round-to-nearest-even, as uint16."""

    dtype = np.uint16
    forms = "bf16"

    def _down(self, values: np.ndarray) -> np.ndarray:
        bits = values.view(np.uint32)
        rounded = bits + (np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1)))
        top = (rounded >> 16).astype(np.uint16)
        overflow = (top & 0x7F80) == 0x7F80  # rounded past the largest finite bf16
        return np.where(overflow, (top & 0x8000) | 0x7F7F, top).astype(np.uint16)

    def _up(self, values: np.ndarray) -> np.ndarray:
        return (values.astype(np.uint32) << 16).view(np.float32)
