"""Every random stream of a run, derived from the run's ``seed`` in one place.

Same seed, same result: data, base weights, sampling, training and codec draws each get
their own stream here, so a resumed run replays an uninterrupted one bit for bit. The
formulas are those the stored benchmark runs were made with; changing one changes every
stored trajectory (re-run them with ``--fresh``).
"""

from __future__ import annotations

import hashlib

import numpy as np


def eval_split(seed: int) -> int:
    """The held-out split's permutation (independent of the task's own generation)."""
    return seed + 7919


def base_weights(seed: int) -> int:
    """torch's seed for a base model built from a config (the embedded tiny model, heads)."""
    return seed


def adapter_init(seed: int) -> int:
    """torch's seed for LoRA's initial factors: identical ``g0`` on every node."""
    return seed + 1


def sampling(seed: int, server_round: int) -> np.random.Generator:
    """Which partitions train in a round."""
    return np.random.default_rng([seed, server_round])


def local_training(seed: int, server_round: int, partition: int) -> int:
    """A client's batches and dropout in one round: reproducible, uncorrelated across nodes."""
    digest = hashlib.sha256(f"{seed}/{server_round}/{partition}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def uplink(seed: int, server_round: int, partition: int) -> int:
    """A client's stochastic codec draws (rand-k, stochastic rounding) in one round."""
    return local_training(seed + 1, server_round, partition)


def downlink(seed: int, server_round: int, held_digest: str) -> int:
    """The server's codec draws for one encoding (one per distinct copy a client holds)."""
    return (seed * 1_000_003 + server_round * 7919 + int(held_digest[:8], 16)) % (2**31)


def secagg(seed: int, server_round: int) -> int:
    """Secure aggregation's public draws of a round: the rotation and the masking graph
    (public by design: they hide nothing, the masks come from the clients' own keys)."""
    return (seed * 1_000_033 + server_round * 104_729 + 0x5EC) % (2**31)


def population(seed: int, stream: int) -> np.random.Generator:
    """How a mix's profiles are dealt to the partitions (stream 0: devices, 1: links)."""
    return np.random.default_rng([seed, 17, stream])


def availability(seed: int, server_round: int, partition: int) -> float:
    """A uniform draw per client and round: the client is available if below its rate."""
    return float(np.random.default_rng([seed, 19, server_round, partition]).random())
