"""Who is connected: each node's partition id and LoRA rank, asked once before round 1.

Node ids are random per run, so partitions (data, seeds, tracked copies) are keyed by the
partition id each node reports. A node's rank comes from its own node config (``lora-r``:
a device class only the device knows) or from the run config's ``lora-ranks`` mapping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flwr.app import Message
from flwr.serverapp import Grid

from .. import protocol
from ..config import RunConfig
from ..strategies.catalog import mixed_ranks_refusal
from .exchange import exchange


@dataclass(frozen=True)
class Nodes:
    partitions: dict[int, int]  # node id -> partition id
    ranks: dict[int, int]  # partition id -> LoRA rank


def discover(grid: Grid, cfg: RunConfig, *, wait_s: float = 120.0) -> Nodes:
    """Ask every connected node who it is; refuse a federation that cannot run correctly.

    Waits until ``min-train-clients`` nodes are connected (SuperNodes join over time).
    """
    deadline = time.monotonic() + wait_s
    need = cfg.rounds.min_train_clients
    while len(nodes := sorted(grid.get_node_ids())) < need:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(nodes)} of {need} nodes connected within {wait_s:.0f} s (min-train-clients)"
            )
        time.sleep(0.2)
    msgs = [
        Message(content=protocol.query_content(), message_type="query", dst_node_id=n)
        for n in nodes
    ]
    partitions, ranks = {}, {}
    for reply in exchange(grid, msgs, timeout=wait_s):
        node = reply.metadata.src_node_id
        if reply.has_error():
            raise RuntimeError(f"node {node} failed to start: {reply.error.reason}")
        try:
            info = protocol.node_info_from(reply.content)
        except ValueError as exc:
            raise RuntimeError(f"node {node} answered the query wrongly: {exc}") from None
        part = info.partition_id
        if part in ranks:  # two nodes on one partition would share one tracked copy
            other = next(n for n, p in partitions.items() if p == part)
            raise RuntimeError(
                f"nodes {other} and {node} both report partition-id {part}; "
                "give every SuperNode its own partition-id in --node-config"
            )
        rank = info.lora_r if info.lora_r is not None else cfg.adapter.rank_of(part)
        if not 1 <= rank <= cfg.adapter.lora_r:
            raise RuntimeError(
                f"node {node} reports lora-r {rank}, outside 1..{cfg.adapter.lora_r}"
            )
        partitions[node], ranks[part] = part, rank
    if not partitions:
        raise RuntimeError("no node answered the partition-id query")
    refusal = mixed_ranks_refusal(cfg.strategy.name)
    if refusal and set(ranks.values()) != {cfg.adapter.lora_r}:
        raise RuntimeError(
            f"node config lora-r: nodes train ranks {sorted(set(ranks.values()))}, but {refusal}"
        )
    return Nodes(partitions, ranks)
