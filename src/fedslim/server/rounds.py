"""One federated round: send, receive, aggregate, with an exact ledger of the bytes."""

from __future__ import annotations

import time

from flwr.serverapp import Grid

from ..adapter import Adapter
from ..ledger import ClientRow
from ..strategies.compressed import Compressed
from .exchange import exchange


def play_round(
    strategy: Compressed, grid: Grid, rnd: int, adapter: Adapter, timeout: float
) -> tuple[Adapter | None, list[ClientRow], float]:
    """Returns (new adapter or None if the round was skipped, client rows, seconds)."""
    t0 = time.monotonic()
    messages = strategy.configure(rnd, adapter, grid)
    if strategy.secure is not None:  # two exchanges set up the round's masks
        size = strategy.up_sizes[strategy.views.rank]
        messages = strategy.secure.prepare(rnd, list(messages), strategy.partitions, size)
    replies = exchange(grid, messages, timeout=timeout)
    new, rows = strategy.aggregate(rnd, replies)
    return new, rows, time.monotonic() - t0
