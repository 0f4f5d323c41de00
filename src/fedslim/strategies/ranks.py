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
from ..vectors import size_of


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
    """Rank views as index arrays into the global vector, computed once per rank, so a
    round projects and pads vectors without going back to named arrays."""

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
        self.up_layout = self.client_layout(rank, up=True)
        leading = [key for key, _ in layout[: len(self.up_layout)]]
        if leading != [key for key, _ in self.up_layout]:  # a client sends its view's head
            raise ValueError("the trainable tensors must lead the adapter's layout")
        # rank -> (global index of each value of that view, its rank slice or -1); only
        # mixed ranks use them, and a homogeneous run (exact's dense residuals) pays nothing
        mixed = len(self.all_ranks()) > 1
        self.index = {r: _view_index(layout, r) for r in self.all_ranks()} if mixed else {}

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
        return global_vec[self.index[r][0]]

    def merge(
        self, global_vec: np.ndarray, replies: list[tuple[int, np.ndarray, float]]
    ) -> list[np.ndarray]:
        """Client up-vectors (rank r_c) -> rank-r up-vectors with rank-aware weights."""
        if all(r == self.rank for r, _, _ in replies):
            return [vec for _, vec, _ in replies]  # every reply whole: a plain mean
        total = sum(w for _, _, w in replies)
        # weight of the clients that hold each rank slice j
        held = np.array([sum(w for r, _, w in replies if r > j) for j in range(self.rank)])
        boost = np.where(held > 0, total / np.maximum(held, 1e-12), 0.0)
        current = global_vec[: size_of(self.up_layout)]
        out = []
        for r, vec, _ in replies:
            index, slot = (a[: vec.size] for a in self.index[r])  # the up-part leads a view
            full, plain = current.copy(), slot < 0
            full[index[plain]] = vec[plain]  # a tensor without a rank axis: taken whole
            ranked = index[~plain]
            full[ranked] += (vec[~plain] - current[ranked]) * boost[slot[~plain]]
            out.append(full)
        return out


def _view_index(layout: tuple, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(global positions, rank slice) of the values of the rank-``r`` view, in its order:
    the first ``r`` rows of every A, the first ``r`` columns of every B, the rest whole."""
    index, slots, at = [], [], 0
    for key, shape in layout:
        size = int(np.prod(shape, dtype=np.int64))
        pos = np.arange(at, at + size, dtype=np.int64).reshape(shape)
        at += size
        axis = rank_axis(key)
        if axis is None:
            index.append(pos.ravel())
            slots.append(np.full(size, -1, np.int64))
            continue
        view = pos[:r] if axis == 0 else pos[:, :r]
        slot = np.indices(view.shape)[axis]
        index.append(view.ravel())
        slots.append(slot.ravel())
    return np.concatenate(index), np.concatenate(slots)
