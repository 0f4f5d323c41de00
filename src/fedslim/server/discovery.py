"""Who is connected: each node's partition id and LoRA rank, asked once before round 1.

Node ids are random per run, so partitions (data, seeds, tracked copies) are keyed by the
partition id each node reports. A node's rank comes from its own node config (``lora-r``:
a device class only the device knows) or from the run config's ``lora-ranks`` mapping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from ..config import RunConfig
from ..strategies.catalog import mixed_ranks_refusal


@dataclass(frozen=True)
class Nodes:
    partitions: dict[int, int]  # node id -> partition id
    ranks: dict[int, int]  # partition id -> LoRA rank


def discover(grid: Grid, cfg: RunConfig, *, wait_s: float = 120.0) -> Nodes:
    """Ask every connected node who it is; refuse a federation that cannot run correctly.

    Waits until ``min-train-clients`` nodes are connected (SuperNodes join over time).
    """
    deadline = time.monotonic() + wait_s
    while len(nodes := sorted(grid.get_node_ids())) < cfg.min_train_clients:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(nodes)} of {cfg.min_train_clients} nodes connected within "
                f"{wait_s:.0f} s (min-train-clients)"
            )
        time.sleep(1.0)
    msgs = [
        Message(
            content=RecordDict({"config": ConfigRecord({"ask": "partition-id"})}),
            message_type="query",
            dst_node_id=n,
        )
        for n in nodes
    ]
    partitions, ranks = {}, {}
    for reply in grid.send_and_receive(msgs, timeout=wait_s):
        node = reply.metadata.src_node_id
        if reply.has_error():
            raise RuntimeError(f"node {node} failed to start: {reply.error.reason}")
        info = reply.content["info"]
        part = int(info["partition-id"])
        if part in ranks:  # two nodes on one partition would share one tracked copy
            other = next(n for n, p in partitions.items() if p == part)
            raise RuntimeError(
                f"nodes {other} and {node} both report partition-id {part}; "
                "give every SuperNode its own partition-id in --node-config"
            )
        rank = int(info.get("lora-r", cfg.rank_of(part)))
        if not 1 <= rank <= cfg.lora_r:
            raise RuntimeError(f"node {node} reports lora-r {rank}, outside 1..{cfg.lora_r}")
        partitions[node], ranks[part] = part, rank
    if not partitions:
        raise RuntimeError("no node answered the partition-id query")
    refusal = mixed_ranks_refusal(cfg.strategy)
    if refusal and set(ranks.values()) != {cfg.lora_r}:
        raise RuntimeError(
            f"node config lora-r: nodes train ranks {sorted(set(ranks.values()))}, but {refusal}"
        )
    return Nodes(partitions, ranks)
