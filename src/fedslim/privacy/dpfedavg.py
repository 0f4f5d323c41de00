"""DP-FedAvg's aggregation (McMahan et al., ICLR 2018): each client's decoded update is
clipped to an L2 norm, the clipped updates are summed, Gaussian noise of standard
deviation ``noise x clip`` is added to the sum, and the sum is divided by the number of
clients sampled (fixed, not the number that replied: a dropped client adds zero, so one
client moves the mean by at most clip / sampled).

Order and why it keeps the guarantee: the server clips what it aggregates, the update as
decoded from the codec. A lossy codec may lengthen an update (quantization error, error
feedback's residual); clipping after decoding bounds the contribution whatever the codec
did, so the guarantee does not depend on the client's honesty or its codec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CentralDP:
    """The server's DP-FedAvg step: clip bound, noise multiplier and where noise comes
    from (the OS's entropy; a seed only for reproducible research runs)."""

    clip: float
    noise: float
    seed: int | None = None

    def rng(self, server_round: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, server_round, 0xD9])


def clip(update: np.ndarray, bound: float) -> tuple[np.ndarray, float]:
    """(``update`` scaled to L2 norm at most ``bound``, its norm before)."""
    norm = float(np.linalg.norm(update))
    return (update * (bound / norm) if norm > bound else update), norm


def noisy_mean(updates: list[np.ndarray], *, bound: float, noise: float, sampled: int,
               rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:  # fmt: skip
    """(the noised mean of the clipped updates, each update's norm before clipping)."""
    if sampled < 1 or sampled < len(updates):
        raise ValueError(f"{len(updates)} updates from {sampled} sampled clients")
    total = np.zeros_like(updates[0], dtype=np.float64)
    norms = []
    for update in updates:
        clipped, norm = clip(update.astype(np.float64), bound)
        total += clipped
        norms.append(norm)
    total += rng.normal(0.0, noise * bound, size=total.shape)
    return (total / sampled).astype(np.float32), norms
