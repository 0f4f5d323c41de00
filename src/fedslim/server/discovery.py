"""Who is connected: each node's partition id and LoRA rank, asked once before round 1.

Node ids are random per run, so partitions (data, seeds, tracked copies) are keyed by the
partition id each node reports. A node's rank comes from its own node config (``lora-r``:
a device class only the device knows) or from the run config's ``lora-ranks`` mapping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from logging import INFO, WARNING

from flwr.app import Message
from flwr.common.logger import log
from flwr.serverapp import Grid

from .. import protocol
from ..config import RunConfig
from ..resources import profiles
from ..resources.profiles import Device, Link
from ..strategies.catalog import mixed_ranks_refusal
from .exchange import exchange


@dataclass(frozen=True)
class Nodes:
    partitions: dict[int, int]  # node id -> partition id
    ranks: dict[int, int]  # partition id -> LoRA rank
    # partition -> (device, link) profiles its node config names (None: not given)
    profiles: dict[int, tuple[Device | None, Link | None]] = field(default_factory=dict)
    noted: set[int] = field(default_factory=set)  # late nodes left out, logged once
    asking: dict[str, int] = field(default_factory=dict)  # query message id -> late node


def _ask(grid: Grid, nodes: list[int], wait_s: float):
    """(node, NodeInfo or the reason it has none) for every node that answers."""
    msgs = [
        Message(content=protocol.query_content(), message_type="query", dst_node_id=n)
        for n in nodes
    ]
    for reply in exchange(grid, msgs, timeout=wait_s):
        node = reply.metadata.src_node_id
        if reply.has_error():
            yield node, f"failed to start: {reply.error.reason}"
            continue
        try:
            yield node, protocol.node_info_from(reply.content)
        except ValueError as exc:
            yield node, f"answered the query wrongly: {exc}"


def _rank(cfg: RunConfig, node: int, info) -> int:
    rank = info.lora_r if info.lora_r is not None else cfg.adapter.rank_of(info.partition_id)
    if not 1 <= rank <= cfg.adapter.lora_r:
        raise RuntimeError(f"node {node} reports lora-r {rank}, outside 1..{cfg.adapter.lora_r}")
    return rank


def _profiles(info) -> tuple[Device | None, Link | None]:
    """The node's declared profiles, by name from the built-in catalogue (a deployment
    takes no simulator keys, so no ``profiles`` file)."""
    devices, links = profiles.DEVICES, profiles.LINKS
    for name, known, what in ((info.device, devices, "device"), (info.link, links, "link")):
        if name and name not in known:
            raise ValueError(
                f"node config {what}-profile {name!r} is not a profile; known: {', '.join(known)}"
            )
    return devices.get(info.device), links.get(info.link)


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
    partitions, ranks, found = {}, {}, {}
    for node, info in _ask(grid, nodes, wait_s):
        if isinstance(info, str):
            raise RuntimeError(f"node {node} {info}")
        part = info.partition_id
        if part in ranks:  # two nodes on one partition would share one tracked copy
            other = next(n for n, p in partitions.items() if p == part)
            raise RuntimeError(
                f"nodes {other} and {node} both report partition-id {part}; "
                "give every SuperNode its own partition-id in --node-config"
            )
        partitions[node], ranks[part] = part, _rank(cfg, node, info)
        try:
            found[part] = _profiles(info)
        except ValueError as exc:
            raise RuntimeError(f"node {node}: {exc}") from None
    if not partitions:
        raise RuntimeError("no node answered the partition-id query")
    refusal = mixed_ranks_refusal(cfg.strategy.name)
    if refusal and set(ranks.values()) != {cfg.adapter.lora_r}:
        raise RuntimeError(
            f"node config lora-r: nodes train ranks {sorted(set(ranks.values()))}, but {refusal}"
        )
    return Nodes(partitions, ranks, found)


def admit(grid: Grid, cfg: RunConfig, nodes: Nodes, ranks: set[int]) -> None:
    """Nodes that connected after the start (a late device, a restarted SuperNode), asked
    who they are without holding up a round: the query goes out before one round and its
    answer is read before a later one (a fresh node takes seconds to load its app). A
    node that can join is added in place; one on a partition another online node holds,
    or on a rank no view serves, is left out with a logged reason and asked again (the
    holder may leave); a restarted SuperNode takes its partition over from its departed
    node id."""
    online = set(grid.get_node_ids())
    replies = list(grid.pull_messages(list(nodes.asking))) if nodes.asking else []
    for reply in replies:
        node = nodes.asking.pop(reply.metadata.reply_to_message_id, None)
        if node is None or reply.has_error():
            continue
        try:
            info = protocol.node_info_from(reply.content)
        except ValueError as exc:
            _left_out(nodes, node, f"answered the query wrongly: {exc}")
            continue
        _join(cfg, nodes, ranks, online, node, info)
    waiting = set(nodes.asking.values())
    new = sorted(online - set(nodes.partitions) - waiting)
    msgs = [Message(content=protocol.query_content(), message_type="query", dst_node_id=n)
            for n in new]  # fmt: skip
    for msg_id, node in zip(grid.push_messages(msgs), new, strict=True) if msgs else ():
        nodes.asking[msg_id] = node


def _join(cfg: RunConfig, nodes: Nodes, ranks: set[int], online: set[int], node: int, info):
    part = info.partition_id
    holder = [n for n, p in nodes.partitions.items() if p == part]
    rank = (
        info.lora_r if info.lora_r is not None else nodes.ranks.get(part, cfg.adapter.rank_of(part))
    )
    if any(n in online for n in holder):
        return _left_out(nodes, node, f"reports partition-id {part}, which node {holder[0]} holds")
    if rank not in ranks:
        return _left_out(nodes, node, f"trains rank {rank}, which no view of this run serves")
    try:
        nodes.profiles[part] = _profiles(info)
    except ValueError as exc:
        return _left_out(nodes, node, str(exc))
    for old in holder:  # a restarted SuperNode: the same device under a new node id
        del nodes.partitions[old]
    nodes.partitions[node] = part
    nodes.ranks.setdefault(part, rank)
    log(INFO, "node %d joined as partition %d", node, part)


def _left_out(nodes: Nodes, node: int, why: str) -> None:
    if node not in nodes.noted:
        log(WARNING, "node %d connected but is left out: %s", node, why)
        nodes.noted.add(node)
