"""Sparsifiers: keep k = max(1, ceil(FRACTION * n)) coordinates of the dense update.

``topk`` keeps the largest magnitudes and ships their positions (compactly coded by the
array table, see ``entropy.py``); ``randk`` draws its positions from the wire seed, so only
the values travel. Values are never rescaled: the bias of dropping coordinates is what
error feedback absorbs, and rescaling would inflate the variance it has to carry.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import ClassVar

import numpy as np

from fedslim.compression.codec import Context, Packet, expect, expect_keys
from fedslim.compression.registry import parse_fraction, register

_RANDK_TAG = 0x52414E44  # "RAND": separates randk's stream from other seeded draws
_ROWS, _ROW = 1024, 64  # threshold sample: up to 1024 contiguous runs of 64 magnitudes
_CHUNK = 1 << 14  # candidates are collected in chunks small enough for cache and malloc
_MIN_SAMPLED = 1 << 15  # below this (or k > n/2) one argpartition of everything is cheaper


def keep_count(fraction: float, n: int) -> int:
    """k = max(1, ceil(fraction * n)), computed on the decimal text so both sides agree."""
    return min(n, max(1, math.ceil(Fraction(repr(fraction)) * n)))


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Sorted positions of the ``k`` largest ``|values|``: exact, O(n), no full sort.

    A sampled quantile places a threshold a few standard errors below the k-th magnitude,
    one pass over cache-sized chunks collects the (already sorted) candidates above it,
    about 1.2 k of them, and a partition of the candidates alone finds the exact k-th
    magnitude (ties go to the lowest positions). If the sample misjudged and fewer than k
    candidates pass, the threshold is lowered, and at last everything is partitioned.
    """
    n = values.shape[0]
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if 2 * k <= n and n >= _MIN_SAMPLED:
        for threshold in _thresholds(values, k):
            cand = _candidates(values, threshold)
            if cand.size >= k:
                return _exact_k(values, cand, k)
    idx = np.argpartition(np.abs(values), n - k)[n - k :]
    idx.sort()
    return idx.astype(np.int64, copy=False)


def _thresholds(values: np.ndarray, k: int) -> list[float]:
    """Magnitude thresholds from a strided sample, each looser than the one before."""
    n = values.shape[0]
    rows = min(_ROWS, n // (8 * _ROW))
    step = n // rows
    sample = np.abs(values[: rows * step].reshape(rows, step)[:, :_ROW]).reshape(-1)
    m = sample.size
    expected = k * m / n
    ranks = [expected + 6.0 * math.sqrt(expected) + 8, 2 * expected + 32, 4 * expected + 64]
    ranks = [min(m, math.ceil(r)) for r in ranks]
    return [float(v) for v in np.partition(sample, [m - r for r in ranks])[[m - r for r in ranks]]]


def _candidates(values: np.ndarray, threshold: float) -> np.ndarray:
    """Sorted positions with ``|value| >= threshold``, one cache-sized chunk at a time."""
    found = []
    for start in range(0, values.shape[0], _CHUNK):
        hits = np.flatnonzero(np.abs(values[start : start + _CHUNK]) >= threshold)
        if hits.size:
            found.append(hits + start)
    return np.concatenate(found) if found else np.zeros(0, np.int64)


def _exact_k(values: np.ndarray, cand: np.ndarray, k: int) -> np.ndarray:
    """The k largest of sorted candidates, kept in position order (no sort needed)."""
    if cand.size == k:
        return cand.astype(np.int64, copy=False)
    mags = np.abs(values[cand])
    kth = np.partition(mags, cand.size - k)[cand.size - k]
    keep = mags > kth
    ties = np.flatnonzero(mags == kth)[: k - int(np.count_nonzero(keep))]
    keep[ties] = True
    return cand[keep].astype(np.int64, copy=False)


def random_indices(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted k distinct positions in [0, n), a pure function of (seed, n, k)."""
    rng = np.random.default_rng([seed, n, k, _RANDK_TAG])
    idx = rng.choice(n, size=k, replace=False, shuffle=False)
    idx.sort()
    return idx.astype(np.int64, copy=False)


def _scatter(n: int, idx: np.ndarray, values: np.ndarray) -> Packet:
    out = np.zeros(n, np.float32)
    out[idx] = values
    return {"values": out}


class _Sparsifier:
    name: ClassVar[str]
    kind = "sparsify"

    def __init__(self, *, fraction: float) -> None:
        if not isinstance(fraction, float | int) or not 0.0 < fraction <= 1.0:
            raise ValueError(f"{self.name} fraction must be in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)
        self.spec = f"{self.name}:{self.fraction!r}"

    @classmethod
    def from_arg(cls, arg: str | None) -> _Sparsifier:
        return cls(fraction=parse_fraction(arg, name=cls.name))


@register("topk")
class TopK(_Sparsifier):
    """Largest-magnitude k coordinates: ``{"indices": int64[k], "values": float32[k]}``."""

    name = "topk"
    forms = "topk:FRACTION (0 < FRACTION <= 1)"

    def encode(self, packet: Packet, ctx: Context) -> Packet:
        expect_keys(packet, {"values"})
        values = expect(packet, "values", dtype=np.float32, length=ctx.n)
        idx = top_k_indices(values, keep_count(self.fraction, ctx.n))
        return {"indices": idx, "values": values[idx]}

    def decode(self, packet: Packet, ctx: Context) -> Packet:
        k = keep_count(self.fraction, ctx.n)
        expect_keys(packet, {"indices", "values"})
        idx = expect(packet, "indices", dtype=np.int64, length=k)
        values = expect(packet, "values", dtype=np.float32, length=k)
        if idx[0] < 0 or idx[-1] >= ctx.n or (k > 1 and not (idx[1:] > idx[:-1]).all()):
            raise ValueError(f"indices must be strictly increasing within [0, {ctx.n})")
        return _scatter(ctx.n, idx, values)


@register("randk")
class RandK(_Sparsifier):
    """k seed-drawn coordinates: ``{"values": float32[k]}``; positions never travel."""

    name = "randk"
    forms = "randk:FRACTION (0 < FRACTION <= 1)"

    def encode(self, packet: Packet, ctx: Context) -> Packet:
        expect_keys(packet, {"values"})
        values = expect(packet, "values", dtype=np.float32, length=ctx.n)
        idx = random_indices(ctx.n, keep_count(self.fraction, ctx.n), ctx.seed)
        return {"values": values[idx]}

    def decode(self, packet: Packet, ctx: Context) -> Packet:
        k = keep_count(self.fraction, ctx.n)
        expect_keys(packet, {"values"})
        values = expect(packet, "values", dtype=np.float32, length=k)
        return _scatter(ctx.n, random_indices(ctx.n, k, ctx.seed), values)
