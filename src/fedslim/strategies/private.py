"""The privacy stage between decoding and the inner strategy: one mean of the clipped
updates stands in for every reply, so the inner strategy (FedAvg, a server optimizer)
only post-processes it. Under ``dp = central`` the server clips each decoded update and
noises the sum (DP-FedAvg, ``privacy/dpfedavg.py``); under ``secagg`` the clients clip and
the server only ever holds the unmasked sum (``secure.py``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..privacy.dpfedavg import CentralDP, noisy_mean


def dp_mean(
    dp: CentralDP, server_round: int, start: np.ndarray, accepted: list, *, sampled: int
) -> np.ndarray:
    """DP-FedAvg's mean update over the decoded replies (one rank: the config refuses
    mixed ones), divided by the clients asked; each row gets its update's norm."""
    updates = [local - start for _, _, _, local, _ in accepted]
    rng = dp.rng(server_round)
    mean, norms = noisy_mean(updates, bound=dp.clip, noise=dp.noise, sampled=sampled, rng=rng)
    dp.adapt(norms, sampled=sampled, rng=rng)  # the next round's clip
    for (*_, row), norm in zip(accepted, norms, strict=True):
        row.update_norm = norm
    return mean


def one_reply(accepted: list, local: np.ndarray) -> tuple:
    """One accepted reply of weight 1 carrying ``local`` and the replies' mean loss."""
    node, part, res, _, row = accepted[0]
    loss = float(np.mean([a[2].train_loss for a in accepted]))
    return node, part, dataclasses.replace(res, num_examples=1, train_loss=loss), local, row
