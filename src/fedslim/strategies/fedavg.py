"""FedAvg over adapter tensors, made deterministic.

Flower's FedAvg samples nodes with the global ``random`` module and averages replies in
arrival order; both break "same seed, same result" and resume equivalence. This
subclass samples by partition id from a generator seeded by (seed, round) and averages
replies sorted by partition id. Flower's FedAvg family (FedAvgM, FedOpt, FedProx,
FedMedian, ...) gets the same behaviour by putting this class under it in the MRO
(see ``catalog.py``): their ``super()`` calls land here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from .. import seeds
from .spec import StrategySpec


def sample_size(nodes: int, fraction: float, minimum: int) -> int:
    """Clients asked a round: the fraction of the nodes, at least ``minimum``, at most all."""
    return min(max(int(nodes * fraction), minimum), nodes)


class AdapterFedAvg(FedAvg):
    partitions: dict[int, int]  # node id -> partition id; set by catalog.make
    seed: int = 0
    over_select: float = 0.0  # sample this fraction more (the first to finish count)
    wanted: int = 0  # replies a round aggregates, set by each draw

    def available(self, server_round: int, partition: int) -> bool:
        """Whether a client can be sampled this round (a simulated clock replaces this)."""
        return True

    def sample(self, server_round: int) -> list[int]:
        """Nodes for this round: a seeded draw over the available partition ids, stable
        across runs (with every client available and no over-selection, the same draw
        whatever the population's behaviour)."""
        nodes = sorted(self.partitions, key=self.partitions.__getitem__)
        self.wanted = sample_size(len(nodes), self.fraction_train, self.min_train_nodes)
        pool = [n for n in nodes if self.available(server_round, self.partitions[n])]
        draw = min(len(pool), math.ceil(self.wanted * (1 + self.over_select)))
        rng = seeds.sampling(self.seed, server_round)
        picked = sorted(rng.choice(len(pool), size=draw, replace=False))
        return [pool[i] for i in picked]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Addressed, empty messages: the strategies above keep their state (FedOpt's
        current arrays) on the way down, and ``Compressed`` fills in each node's content."""
        return [
            Message(RecordDict(), message_type="train", dst_node_id=node)
            for node in self.sample(server_round)
        ]

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ordered = sorted(replies, key=lambda m: self.partitions[m.metadata.src_node_id])
        return super().aggregate_train(server_round, ordered)


SPEC = StrategySpec(name="fedavg", help="weighted mean of the clients' adapters", flower=FedAvg)
