"""fedslim's compression around any Flower Message-API strategy, as Flower's DP wrappers do:

    strategy = CompressedStrategy(FedAvg(), uplink="q4|zstd:3", downlink="q8|zstd:3")
    app = ClientApp(mods=[compression_mod])          # the client's half

Every hook delegates to the wrapped strategy, which samples, weighs and aggregates as it
always does and only ever sees plain ArrayRecords. On the way down each message's arrays
become the blob that turns the node's copy into the global model (one encoding per
distinct copy: nodes that hold the same copy share it); on the way up each reply's blob
is decoded against what that node was sent. A reply that is an error, fails to decode,
is not finite, is longer than ``max_update_norm``, or proves another copy than the one
sent is dropped with a logged reason and the round goes on. Every client-round gets a
ledger row with its exact wire bytes (``rows``; ``clients_csv`` writes them after every
round).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from .. import ledger, seeds
from ..compression import RECOMMENDED, build
from ..flower_internals.messages import wire_bytes
from ..ledger import ClientRow
from ..transport import Downlink, make_downlink, reconstruct
from ..vectors import digest
from . import wire


@dataclasses.dataclass
class _Sent:
    msg: Message  # what went to the node
    row: ClientRow
    target: np.ndarray  # the global vector this round (an update is decoded against it)
    held: np.ndarray  # the node's copy once it applies the blob
    layout: wire.Layout
    key: str  # the ArrayRecord's key in the inner strategy's messages


class CompressedStrategy(Strategy):
    def __init__(
        self,
        strategy: Strategy,
        *,
        uplink: str = RECOMMENDED,
        downlink: str = "none",
        error_feedback: bool = True,
        max_update_norm: float = 0.0,
        seed: int = 0,
        clients_csv: str | Path | None = None,
    ) -> None:
        super().__init__()
        for name, spec in (("uplink", uplink), ("downlink", downlink)):
            try:
                build(spec)
            except ValueError as exc:
                raise ValueError(f"CompressedStrategy {name}={spec!r}: {exc}") from exc
        if max_update_norm < 0:
            raise ValueError(f"max_update_norm must be >= 0, got {max_update_norm}")
        self.strategy, self.uplink, self.downlink = strategy, uplink, downlink
        self.error_feedback, self.max_update_norm, self.seed = error_feedback, max_update_norm, seed
        self.clients_csv = Path(clients_csv) if clients_csv else None
        self.held: dict[int, np.ndarray] = {}  # node -> the copy it has proven to hold
        self.sent: dict[int, _Sent] = {}  # node -> this round's instruction
        self.rows: list[ClientRow] = []  # every training client-round so far
        self.evaluate_rows: list[ClientRow] = []  # and every evaluation one

    def __repr__(self) -> str:
        return f"CompressedStrategy({self.strategy!r}, uplink={self.uplink!r})"

    def summary(self) -> None:
        log(INFO, "\t├──> fedslim compression: uplink %s, downlink %s", self.uplink, self.downlink)
        self.strategy.summary()

    # ---- down -------------------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        msgs = self.strategy.configure_train(server_round, arrays, config, grid)
        return self._compress(server_round, msgs, train=True)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        msgs = self.strategy.configure_evaluate(server_round, arrays, config, grid)
        return self._compress(server_round, msgs, train=False)

    def _compress(self, server_round: int, msgs: Iterable[Message], train: bool) -> list:
        self.sent, out = {}, []
        records: dict[int, tuple] = {}  # the inner strategy sends one record to every node
        downs: dict[tuple[int, str], Downlink] = {}  # one encoding per (record, copy held)
        for msg in msgs:
            node = msg.metadata.dst_node_id
            key, record = wire.only_array_record(msg.content, "the strategy's instruction")
            if id(record) not in records:
                records[id(record)] = wire.split(record)
            layout, target, plain = records[id(record)]
            held = self.held.get(node)
            if held is None or held.size != target.size:
                held = self.held[node] = np.zeros(target.size, np.float32)
            copy = (id(record), digest(held))
            if copy not in downs:
                seed = seeds.downlink(self.seed, server_round, copy[1])
                downs[copy] = make_downlink(self.downlink, target, held, seed=seed)
            down = downs[copy]
            ours = wire.Down(
                down.blob, down.mode, down.base, key, layout, server_round, self.seed,
                uplink=self.uplink if train else "", feedback=self.error_feedback,
            )  # fmt: skip
            content = RecordDict({k: r for k, r in msg.content.items() if k != key})
            content[wire.DOWN] = ours.record()
            if plain:
                content[wire.PLAIN] = wire.plain_record(plain)
            new = Message(
                content,
                dst_node_id=node,
                message_type=msg.metadata.message_type,
                group_id=msg.metadata.group_id,
            )
            row = ClientRow(
                round=server_round,
                client=node,
                downlink_bytes=wire_bytes(new),
                downlink_payload_bytes=len(down.blob),
                uplink_codec=self.uplink if train else "",
            )
            self.sent[node] = _Sent(new, row, target, down.held, layout, key)
            out.append(new)
        return out

    # ---- up ---------------------------------------------------------------------------
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.strategy.aggregate_train(server_round, self._receive(server_round, replies))

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        kept = self._receive(server_round, replies, record=False)
        return self.strategy.aggregate_evaluate(server_round, kept)

    def _receive(self, server_round: int, replies: Iterable[Message], record: bool = True):
        kept, rows = [], []
        for reply in replies:
            node = reply.metadata.src_node_id
            sent = self.sent.pop(node, None)
            row = dataclasses.replace(sent.row) if sent else ClientRow(server_round, node)
            row.uplink_bytes = wire_bytes(reply)
            rows.append(row)
            try:
                if sent is None:
                    raise ValueError("reply from a node that was not asked this round")
                kept.append(self._decode(reply, sent, row))
            except ValueError as exc:
                row.status = str(exc)
                log(WARNING, "round %d: dropped reply from node %d: %s", server_round, node, exc)
        for sent in self.sent.values():  # asked, never answered
            rows.append(dataclasses.replace(sent.row, status="no reply"))
        self.sent = {}
        rows.sort(key=lambda r: r.client)
        if not record:
            self.evaluate_rows += rows
        else:
            self.rows += rows
            if self.clients_csv is not None:
                ledger.write_csv(self.clients_csv, self.rows, ClientRow)
        return kept

    def _decode(self, reply: Message, sent: _Sent, row: ClientRow) -> Message:
        node = reply.metadata.src_node_id
        if reply.has_error():
            raise ValueError(f"client error: {reply.error.reason}")
        up = wire.Up.of(reply.content)
        if up.resync:
            self.held.pop(node, None)  # the node restarted from zeros; so do we
            raise ValueError(f"resync: {up.resync}")
        if up.held != digest(sent.held):
            raise ValueError("the node holds another copy than the one sent")
        self.held[node] = sent.held  # proven, whatever else is wrong with the reply
        ours = (wire.UP, wire.PLAIN)
        content = RecordDict({k: r for k, r in reply.content.items() if k not in ours})
        if not up.key:  # an evaluation reply: nothing to decode
            return Message(content, reply_to=sent.msg)
        row.uplink_payload_bytes = len(up.blob)
        local = reconstruct(up.blob, sent.target, spec=self.uplink)
        if not np.isfinite(local).all():
            raise ValueError("update is not finite")
        norm = float(np.linalg.norm(local - sent.target))
        if self.max_update_norm and norm > self.max_update_norm:
            raise ValueError(f"update norm {norm:.3g} exceeds max_update_norm")
        content[up.key] = wire.join(sent.layout, local, wire.plain_arrays(reply.content))
        row.num_examples, row.train_loss = wire.examples_and_loss(content)
        return Message(content, reply_to=sent.msg)
