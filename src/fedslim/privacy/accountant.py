"""Client-level epsilon of a run, from Google's ``dp-accounting``.

Each round is one Gaussian mechanism on the sum of clipped client updates (noise standard
deviation ``z x clip``), subsampled with the round's sampling rate q = sampled / clients.
fedslim samples a fixed number of clients without replacement; like TensorFlow Federated
and Opacus it accounts for that as Poisson sampling at the same rate, the standard
approximation (fixed-size sampling has its own, tighter analyses). RDP uses integer
orders (exact and quiet); PLD is tighter for many rounds.
"""

from __future__ import annotations

import math
from collections import Counter

ACCOUNTANTS = ("rdp", "pld")
ORDERS = (*range(2, 129), 256, 512, 1024)


def _accountant(kind: str):
    import dp_accounting as dpa

    if kind == "rdp":
        return dpa.rdp.RdpAccountant(list(ORDERS))
    if kind == "pld":
        return dpa.pld.PLDAccountant()
    raise ValueError(f"accountant: expected one of {', '.join(ACCOUNTANTS)}, got {kind!r}")


def event(sampling: float, noise: float):
    """One round as a dp-accounting event."""
    import dp_accounting as dpa

    gaussian = dpa.GaussianDpEvent(noise)
    return gaussian if sampling >= 1 else dpa.PoissonSampledDpEvent(sampling, gaussian)


def epsilon(kind: str, *, samplings: list[float], noise: float, delta: float) -> float:
    """Epsilon at ``delta`` after one round per sampling rate (none: 0; no noise: inf)."""
    if not samplings:
        return 0.0
    if noise <= 0:
        return math.inf
    accountant = _accountant(kind)
    for rate, count in Counter(samplings).items():
        accountant.compose(event(rate, noise), count)
    return float(accountant.get_epsilon(delta))


def noise_for(kind: str, *, sampling: float, rounds: int, delta: float, target: float) -> float:
    """The smallest noise multiplier (to 0.1%) whose epsilon after ``rounds`` rounds is at
    most ``target``: epsilon falls as the noise grows, so bisect on its logarithm."""
    low, high, rates = 1e-2, 1e3, [sampling] * rounds
    if epsilon(kind, samplings=rates, noise=high, delta=delta) > target:
        raise ValueError(f"no noise multiplier up to {high:g} reaches epsilon {target:g}")
    while high / low > 1.001:
        mid = math.sqrt(low * high)
        if epsilon(kind, samplings=rates, noise=mid, delta=delta) > target:
            low = mid
        else:
            high = mid
    return high
