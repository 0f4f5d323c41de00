"""What strategy tests that play the clients share: a grid that only lists its nodes (all
``Compressed.configure`` asks of one), fedslim's strategy over FedAvg on a flat layout,
and a client's train reply as fedslim's ClientApp writes it."""

import numpy as np
from flwr.app import Message

from fedslim import protocol
from fedslim.config import RunConfig
from fedslim.strategies.catalog import make
from fedslim.strategies.compressed import Compressed
from fedslim.strategies.ranks import RankMap
from fedslim.vectors import digest


class Grid:
    def __init__(self, nodes):
        self.nodes = list(nodes)

    def get_node_ids(self):
        return self.nodes


def views(layout, rank: int = 8) -> RankMap:
    """Every client's view is the whole adapter, starting from zeros."""
    size = sum(int(np.prod(shape)) for _, shape in layout)
    return RankMap(layout=tuple(layout), up_keys={k for k, _ in layout}, rank=rank, ranks={},
                   initials={rank: np.zeros(size, np.float32)})  # fmt: skip


def fedavg(parts: dict, layout, *, cfg: RunConfig | None = None, fraction: float = 1.0, **kw):
    """``Compressed`` around Flower's FedAvg; ``kw`` go to ``Compressed`` (uplink "none"
    unless given)."""
    cfg = cfg or RunConfig.of()
    inner = make("fedavg", partitions=parts, seed=0, fraction_train=fraction, min_train_nodes=1,
                 options=cfg.to_mapping())  # fmt: skip
    kw = {"uplink": "none", "downlink": "none", **kw}
    return Compressed(inner, views=views(layout), partitions=parts, seed=0, **kw)


def train_reply(strategy, msg: Message, part: int, blob: bytes, examples: int = 10,
                flops: int = 1) -> Message:  # fmt: skip
    """The reply to ``msg``: ``blob`` as the update, proving the copy the strategy sent."""
    held = digest(strategy.pending[part])
    res = protocol.TrainRes(blob, held, examples, 1.0, 0.1, flops)
    return Message(protocol.train_res_content(res), reply_to=msg)
