"""Heterogeneous LoRA ranks: each client trains a rank-``r_c`` slice of a rank-``r`` adapter.

HetLoRA-style zero padding with rank-aware weighting. Client ``c`` receives the first
``r_c`` rows of every ``A`` and columns of every ``B`` (its LoRA alpha is scaled by
``r_c / r`` so ``alpha / r``, the scaling, is the same on every node and a slice is the
same function everywhere). Its reply is padded back to rank ``r``: slices it lacks get
the current global values (no update), and each slice's update is re-weighted over the
clients that trained it, so the inner strategy's plain weighted mean becomes
``sum_{c has j} w_c delta_cj / sum_{c has j} w_c`` for slice ``j``. Homogeneous runs are
the special case where every map is the identity.
"""

from __future__ import annotations

import numpy as np

from ..task.lora_names import rank_axis
from ..vectors import flatten, unflatten


def _take(arr: np.ndarray, axis: int | None, r: int) -> np.ndarray:
    if axis is None:
        return arr
    return arr[:r] if axis == 0 else arr[:, :r]


def parse_ranks(spec: str, rank: int) -> list[int]:
    """``"4,8"`` -> [4, 8]: partition p trains ranks[p % len]; "" -> everyone at ``rank``."""
    if not spec.strip():
        return [rank]
    try:
        ranks = [int(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(
            f"config key 'lora-ranks': expected integers like '4,8', got {spec!r}"
        ) from None
    if any(not 1 <= r <= rank for r in ranks):
        raise ValueError(f"config key 'lora-ranks': every rank must be in 1..lora-r ({rank})")
    return ranks


class RankMap:
    def __init__(
        self,
        *,
        layout: tuple,
        up_keys: set[str],
        rank: int,
        ranks: dict[int, int],
        initials: dict[int, np.ndarray],
    ) -> None:
        self.layout, self.up_keys, self.rank = layout, up_keys, rank
        self.ranks = ranks  # partition -> its rank (missing: the global rank)
        self.initials = initials  # rank -> a node's seeded initial vector at that rank

    def of(self, partition: int) -> int:
        return self.ranks.get(partition, self.rank)

    def all_ranks(self) -> set[int]:
        return {self.rank, *self.ranks.values()}

    def client_layout(self, r: int, *, up: bool = False) -> tuple:
        out = []
        for key, shape in self.layout:
            if up and key not in self.up_keys:
                continue
            axis = rank_axis(key)
            if axis is not None:
                shape = tuple(r if i == axis else s for i, s in enumerate(shape))
            out.append((key, tuple(shape)))
        return tuple(out)

    def project(self, global_vec: np.ndarray, r: int) -> np.ndarray:
        if r == self.rank:
            return global_vec
        arrays = unflatten(global_vec, self.layout)
        return flatten({k: _take(v, rank_axis(k), r) for k, v in arrays.items()})

    def merge(
        self, global_vec: np.ndarray, replies: list[tuple[int, np.ndarray, float]]
    ) -> list[dict[str, np.ndarray]]:
        """Client up-vectors (rank r_c) -> rank-r up-arrays with rank-aware weights."""
        current = unflatten(global_vec, self.layout)
        total = sum(w for _, _, w in replies)
        # weight of the clients that hold each rank slice j
        held = np.array([sum(w for r, _, w in replies if r > j) for j in range(self.rank)])
        boost = np.where(held > 0, total / np.maximum(held, 1e-12), 0.0)
        uniform = all(r == self.rank for r, _, _ in replies)
        out = []
        for r, vec, _ in replies:
            local = unflatten(vec, self.client_layout(r, up=True))
            padded = {}
            for key, arr in local.items():
                axis = rank_axis(key)
                if axis is None or uniform:
                    padded[key] = arr  # every reply has this tensor whole: plain mean
                    continue
                full = current[key].copy()
                delta = arr - _take(current[key], axis, r)
                scale = boost[:r].reshape((-1, 1) if axis == 0 else (1, -1))
                if axis == 0:
                    full[:r] += delta * scale
                else:
                    full[:, :r] += delta * scale
                padded[key] = full.astype(np.float32)
            out.append(padded)
        return out
