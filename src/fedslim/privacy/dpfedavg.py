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

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class CentralDP:
    """The server's DP-FedAvg step: clip bound (adapted each round when ``adaptive``),
    the update's noise multiplier, and where noise comes from (the OS's entropy; a seed
    only for reproducible research runs)."""

    clip: float
    noise: float
    seed: int | None = None
    adaptive: bool = False
    count_noise: float = 0.0  # std of the noise on the clipped-update count (adaptive)

    def rng(self, server_round: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, server_round, 0xD9])

    def adapt(self, norms: list[float], *, sampled: int, rng: np.random.Generator) -> None:
        """Andrew et al. (NeurIPS 2021): move the clip geometrically toward the update
        norms' TARGET_QUANTILE, from a noised count of the updates it did not clip."""
        self.adapt_count(sum(n <= self.clip for n in norms), sampled=sampled, rng=rng)

    def adapt_count(self, unclipped: int, *, sampled: int, rng: np.random.Generator) -> None:
        """:meth:`adapt` from the count alone (what secure aggregation reveals)."""
        if not self.adaptive:
            return
        noisy = unclipped + (rng.normal(0.0, self.count_noise) if self.count_noise else 0.0)
        self.clip *= math.exp(-CLIP_LR * (noisy / sampled - TARGET_QUANTILE))


TARGET_QUANTILE = 0.5  # the median update goes unclipped (Andrew et al.'s choice)
CLIP_LR = 0.2  # their geometric step


def update_noise(total: float, count_noise: float) -> float:
    """Andrew et al.'s split of one noise multiplier ``total`` between the update and the
    clip count: the count of unclipped updates, centred, has sensitivity 1/2, so its
    noise ``count_noise`` is a multiplier of 2 x count_noise, and two Gaussian queries
    compose as one with total^-2 = update^-2 + (2 count_noise)^-2. Returns the update's
    multiplier, which leaves the accountant's ``total`` unchanged."""
    count = 2 * count_noise
    if total >= count:
        raise ValueError(
            f"a noise multiplier of {total:.3g} leaves nothing for the update with "
            f"dp-adaptive-clip (it must stay under {count:.3g}, 2 x the count's noise of "
            f"clients asked / 20); sample more clients a round, or set dp-adaptive-clip=false"
        )
    return (total**-2 - count**-2) ** -0.5


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
    return noised_mean(total, bound=bound, noise=noise, divisor=sampled, rng=rng), norms


def noised_mean(total: np.ndarray, *, bound: float, noise: float, divisor: int,
                rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """(sum of clipped updates + N(0, (noise x bound)^2)) / divisor, as float32."""
    if noise:
        total = total + rng.normal(0.0, noise * bound, size=total.shape)
    return (total / divisor).astype(np.float32)
