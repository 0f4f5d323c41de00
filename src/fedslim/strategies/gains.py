"""A lossless reply's step in a round of lossy pipelines (``uplink-gains=match``).

A one-bit code with error feedback sends part of an update now and the rest later: `sign`
scales each block by mean |x|, so it delivers ~0.7 of an update's projection each round.
Where clients' pipelines differ (``uplink-codec=auto|by-link:``), an fp32 reply beside
such replies takes a longer step and weighs more than its data share; where fp32's step
overshoots (the link-bound benchmark), that costs rounds. Matching scales each lossless
reply by the smallest gain the round's dense lossy pipelines have on that update, so the
round steps as a round of its lossiest pipeline would, with exact directions where the
links allowed them. Lossy replies keep their own step. Sparsifying pipelines do not set
the step: their gain is the share of coordinates sent now (9% for top-1%), not a
shrinkage of the update, and a lossless client has no residual to send the rest later.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..compression import Pipeline, build

NEAR_ONE = 1e-3  # q8's gain is 0.9999: a quantizer that keeps the step sets no scale


def gain(spec: str, update: np.ndarray) -> float:
    """``<D(E(u)), u> / <u, u>``: the share of ``u``'s projection one round trip keeps
    (the lossless stages, entropy coding, are skipped: they keep every bit)."""
    u = update.astype(np.float64)
    norm = float(np.dot(u, u))
    lossy = Pipeline([s for s in build(spec).stages if not getattr(s, "lossless", False)])
    if norm == 0.0 or not lossy.stages:
        return 1.0
    round_trip = lossy.decode(lossy.encode(update.astype(np.float32)), max_elements=update.size)
    return float(np.dot(round_trip.astype(np.float64), u)) / norm


def steps(specs: Iterable[str]) -> list[str]:
    """The pipelines that set a round's step: lossy and dense (no sparsifying stage)."""
    out = set()
    for spec in specs:
        pipeline = build(spec)
        kinds = {getattr(stage, "kind", "transform") for stage in pipeline.stages}
        if not pipeline.lossless and "sparsify" not in kinds:
            out.add(spec)
    return sorted(out)  # a fixed order: the same scale on every run


def smallest_gain(update: np.ndarray, specs: Iterable[str]) -> float:
    """The step a lossless ``update`` takes in a round of the dense lossy ``specs``: the
    smallest of their gains on it, within [0, 1] (1 where there is none, or near 1)."""
    scale = min(1.0, max(0.0, min((gain(s, update) for s in specs), default=1.0)))
    return 1.0 if scale > 1.0 - NEAR_ONE else scale


def match(
    locals_: list[np.ndarray], starts: list[np.ndarray], specs: list[str]
) -> tuple[list[np.ndarray], list[float]]:
    """Each reply's vector (``start + update``) with a lossless update scaled to the
    round's step, and the scales (1 for lossy replies, and where nothing sets a step)."""
    round_steps = steps(specs)
    out, scales = [], []
    for local, start, spec in zip(locals_, starts, specs, strict=True):
        scale = 1.0
        if round_steps and build(spec).lossless:
            scale = smallest_gain(local - start, round_steps)
            local = (start + scale * (local - start)).astype(local.dtype)
        out.append(local)
        scales.append(scale)
    return out, scales
