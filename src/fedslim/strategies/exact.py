"""Exact aggregation of LoRA updates (FedEx-LoRA's residual correction).

Why the residual and not FLoRA's stacking: stacking sends every client's factors to
every client (rank grows with the number of clients, and a client must merge them all),
while the residual keeps the adapter at rank r and adds one dense correction per wrapped
module. Its downlink cost is bounded by the base matrices' size, never growing across
rounds, and it is what the lossy downlink codecs compress (it has rank <= (N+1) r).
Uplink is unchanged: clients send their adapter only. Nodes fold the residual into their
base weights (``task.residual``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from ..adapter import arrays_record, record_arrays
from ..protocol import aggregation_parts
from .fedavg import AdapterFedAvg
from .spec import ONE_A, StrategySpec

Module = tuple[str, str, str, float]  # (residual key, A key, B key, LoRA scaling)


def exact_residuals(
    clients: list[dict], weights: np.ndarray, averaged: dict, modules: Iterable[Module]
) -> dict[str, np.ndarray]:
    """Per module: scaling * (sum_i w_i B_i A_i - mean(B) mean(A))."""
    out = {}
    for rkey, akey, bkey, scaling in modules:
        exact = sum(
            w * (c[bkey].astype(np.float64) @ c[akey])
            for w, c in zip(weights, clients, strict=True)
        )
        approx = averaged[bkey].astype(np.float64) @ averaged[akey]
        out[rkey] = (scaling * (exact - approx)).astype(np.float32)
    return out


class ExactLoRA(AdapterFedAvg):
    modules: tuple[Module, ...] = ()  # of the model; set by the server (spec.base_residual)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.current = arrays  # the round's global: its residuals are the base of the fix
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = sorted(replies, key=lambda m: self.partitions[m.metadata.src_node_id])
        record, metrics = super().aggregate_train(server_round, replies)
        if record is None:
            return None, None
        averaged = record_arrays(record)
        clients, weights = zip(*(aggregation_parts(m.content) for m in replies), strict=True)
        weights = np.array(weights, float)
        fix = exact_residuals(list(clients), weights / weights.sum(), averaged, self.modules)
        residuals = {k: self.current[k].numpy() + v for k, v in fix.items()}
        return arrays_record({**averaged, **residuals}), metrics


SPEC = StrategySpec(
    "exact", "FedEx-LoRA: the exact mean of B_i A_i via a residual folded into the base",
    ExactLoRA, base_residual=True, one_rank=ONE_A,
    dp_refusal="its residual is a product of client factors, which clipping does not bound",
)  # fmt: skip
