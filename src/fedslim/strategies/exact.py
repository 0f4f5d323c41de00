"""Exact aggregation of LoRA updates (FedEx-LoRA's residual correction).

Why the residual and not FLoRA's stacking: stacking sends every client's factors to
every client (rank grows with the number of clients, and a client must merge them all),
while the residual keeps the adapter at rank r and adds one dense correction per wrapped
module. Its downlink cost is bounded by the base matrices' size, never growing across
rounds, and it is what the lossy downlink codecs compress (it has rank <= (N+1) r).
Uplink is unchanged: clients send their adapter only.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from ..records import arrays_to_record, record_to_arrays
from ..task.residual import exact_residuals
from .fedavg import AdapterFedAvg


class ExactLoRA(AdapterFedAvg):
    modules: tuple = ()  # ((residual, A, B, scaling), ...) of the model; set by the server

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.current = record_to_arrays(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = sorted(replies, key=lambda m: self.partitions[m.metadata.src_node_id])
        record, metrics = super().aggregate_train(server_round, replies)
        if record is None:
            return None, None
        averaged = record_to_arrays(record)
        clients = [record_to_arrays(m.content["arrays"]) for m in replies]
        weights = np.array([m.content["metrics"][self.weighted_by_key] for m in replies], float)
        fix = exact_residuals(clients, weights / weights.sum(), averaged, self.modules)
        residuals = {k: self.current[k] + v for k, v in fix.items()}
        return arrays_to_record({**averaged, **residuals}), metrics
