"""FedAvg over adapter tensors, made deterministic.

Flower's FedAvg samples nodes with the global ``random`` module and averages replies in
arrival order; both break "same seed, same result" and resume equivalence. This
subclass samples by partition id from a generator seeded by (seed, round) and averages
replies sorted by partition id.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg


class AdapterFedAvg(FedAvg):
    def __init__(
        self,
        *,
        partitions: dict[int, int],
        seed: int,
        fraction_train: float,
        min_train_nodes: int = 1,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=0.0,
            min_train_nodes=min_train_nodes,
            min_available_nodes=1,
        )
        self.partitions = dict(partitions)  # node id -> partition id
        self.seed = seed

    def sample(self, server_round: int) -> list[int]:
        """Nodes for this round: a seeded draw over partition ids, stable across runs."""
        nodes = sorted(self.partitions, key=self.partitions.__getitem__)
        size = max(int(len(nodes) * self.fraction_train), self.min_train_nodes)
        rng = np.random.default_rng([self.seed, server_round])
        picked = sorted(rng.choice(len(nodes), size=min(size, len(nodes)), replace=False))
        return [nodes[i] for i in picked]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return list(self._construct_messages(record, self.sample(server_round), "train"))

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ordered = sorted(replies, key=lambda m: self.partitions[m.metadata.src_node_id])
        return super().aggregate_train(server_round, ordered)
