"""FedAvg over adapter tensors, made deterministic and accountable.

Flower's FedAvg samples nodes with the global ``random`` module and aggregates replies
in arrival order; both break "same seed, same result" and resume equivalence. This
subclass samples by partition id from a seeded generator, sorts replies before
averaging, validates every reply against the adapter layout (a bad reply is dropped
with a logged reason, the round goes on) and records exact wire bytes per client.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from .accounting import RoundLedger, wire_bytes

CLIENT_METRICS = ("num-examples", "train-loss", "train-s", "flops")


class AdapterFedAvg(FedAvg):
    def __init__(
        self,
        *,
        partitions: dict[int, int],
        layout: tuple,
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
        self.layout = layout  # ((name, shape), ...) every reply must match
        self.seed = seed
        self.ledger = RoundLedger()

    # ---- downlink -----------------------------------------------------------------
    def sample(self, server_round: int) -> list[int]:
        """Nodes for this round: a seeded draw over partition ids, stable across runs."""
        nodes = sorted(self.partitions, key=self.partitions.__getitem__)
        size = max(int(len(nodes) * self.fraction_train), self.min_train_nodes)
        size = min(size, len(nodes))
        rng = np.random.default_rng([self.seed, server_round])
        picked = sorted(rng.choice(len(nodes), size=size, replace=False))
        return [nodes[i] for i in picked]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.ledger = RoundLedger()
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        messages = list(self._construct_messages(record, self.sample(server_round), "train"))
        for msg in messages:
            self.ledger.downlink[msg.metadata.dst_node_id] = wire_bytes(msg)
        return messages

    # ---- uplink -------------------------------------------------------------------
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted = []
        for msg in sorted(replies, key=lambda m: self.partitions.get(m.metadata.src_node_id, -1)):
            node = msg.metadata.src_node_id
            reason = self.reject_reason(msg)
            if reason:
                log(WARNING, "round %d: dropped reply from node %d: %s", server_round, node, reason)
                self.ledger.dropped.append((node, reason))
                continue
            accepted.append(msg)
            self.ledger.uplink[node] = wire_bytes(msg)
            metrics = msg.content["metrics"]
            self.ledger.clients.append(
                {
                    "round": server_round,
                    "client": self.partitions.get(node, -1),
                    **{k.replace("-", "_"): metrics[k] for k in CLIENT_METRICS},
                    "uplink_bytes": self.ledger.uplink[node],
                    "downlink_bytes": self.ledger.downlink.get(node, 0),
                }
            )
        if not accepted:
            return None, None
        return super().aggregate_train(server_round, accepted)

    def reject_reason(self, msg: Message) -> str | None:
        """Why a reply cannot be aggregated, or None when it can."""
        if msg.has_error():
            return f"client error: {msg.error.reason}"
        content = msg.content
        if len(content.array_records) != 1 or "metrics" not in content.metric_records:
            return "reply must carry one ArrayRecord and a 'metrics' MetricRecord"
        metrics = content["metrics"]
        missing = [k for k in CLIENT_METRICS if k not in metrics]
        if missing:
            return f"metrics lack {missing}"
        if not metrics["num-examples"] or metrics["num-examples"] <= 0:
            return "num-examples must be positive"
        arrays = next(iter(content.array_records.values()))
        try:
            got = tuple((k, tuple(a.shape)) for k, a in arrays.items())
        except (AttributeError, TypeError):
            return "arrays unreadable"
        if got != self.layout:
            return "adapter layout (names/shapes) differs from the global adapter"
        for name, arr in arrays.items():
            values = arr.numpy()
            if values.dtype != np.float32 or not np.isfinite(values).all():
                return f"tensor {name!r} is not finite float32"
        return None
