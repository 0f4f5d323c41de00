"""A lossless reply's step in a round of lossy pipelines (``uplink-gains=match``).

A one-bit code with error feedback sends part of an update now and the rest later: `sign`
scales each block by mean |x|, so it delivers ~0.7 of an update's projection each round.
Where clients' pipelines differ (``uplink-codec=auto|by-link:``), an fp32 reply beside
such replies takes a longer step and weighs more than its data share. Matching scales
each lossless reply by the smallest gain the round's lossy pipelines have on that update,
so the round steps as a round of its lossiest pipeline would, with exact directions
where the links allowed them. Lossy replies keep their own step.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..compression import build, decode


def gain(spec: str, update: np.ndarray, *, seed: int = 0) -> float:
    """``<D(E(u)), u> / <u, u>``: the share of ``u``'s projection one round trip keeps."""
    norm = float(np.dot(update, update))
    if norm == 0.0:
        return 1.0
    round_trip = decode(build(spec).encode(update, seed=seed), max_elements=update.size)
    return float(np.dot(round_trip.astype(np.float64), update)) / norm


def lossy(specs: Iterable[str]) -> list[str]:
    """The lossy ones of a round's pipelines, sorted (lossless ones keep every bit)."""
    return sorted({s for s in specs if not build(s).lossless})


def smallest_gain(update: np.ndarray, specs: Iterable[str], *, seed: int = 0) -> float:
    """The step a lossless ``update`` takes in a round of the lossy ``specs``: the
    smallest of their gains on it, within [0, 1] (1 where there is none)."""
    gains = [gain(spec, update, seed=seed) for spec in specs]
    return min(1.0, max(0.0, min(gains, default=1.0)))


def match(
    locals_: list[np.ndarray], starts: list[np.ndarray], specs: list[str]
) -> tuple[list[np.ndarray], list[float]]:
    """Each reply's vector (``start + update``) with a lossless update scaled to the
    round's lossy step, and the scales (1 for lossy replies, and where all are lossless)."""
    round_lossy = lossy(specs)
    out, scales = [], []
    for local, start, spec in zip(locals_, starts, specs, strict=True):
        scale = 1.0
        if round_lossy and build(spec).lossless:
            scale = smallest_gain(local - start, round_lossy)
            local = (start + scale * (local - start)).astype(local.dtype)
        out.append(local)
        scales.append(scale)
    return out, scales
