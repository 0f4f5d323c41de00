"""Wrap any Flower strategy so every update crosses the network through a codec pipeline.

Downlink: the inner strategy picks the nodes; each message then carries, instead of
the adapter, a blob that turns what that node holds into its view of the global adapter
(see ``fedslim.transport``; a view is the whole adapter, or a rank slice of it, see
``ranks.py``). Nodes holding the same vector share one encoding.
Uplink: each reply's blob is decoded into the client's update and added to the global
adapter sent this round (not to the client's lossy copy of it, so what the downlink
codec dropped stays in the global and goes out next round) before the inner strategy
sees it, so the inner strategy (FedAvg, FedOpt, ...) only ever handles plain arrays. A
reply that fails to decode, is not finite, is too large, or lacks what aggregation
needs is dropped with a logged reason; the round goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from ..records import arrays_to_record, record_to_arrays
from ..task.adapters import flatten
from ..transport import RESYNC, digest, make_downlink, reconstruct
from .ranks import RankMap

NEEDED_METRICS = ("num-examples", "train-loss", "train-s", "flops")


class Compressed(Strategy):
    def __init__(
        self,
        inner: Strategy,
        *,
        uplink: str,
        downlink: str,
        views: RankMap,
        partitions: dict[int, int],
        seed: int,
        min_replies: int = 1,
        max_norm: float = 0.0,
    ) -> None:
        self.inner, self.uplink, self.downlink = inner, uplink, downlink
        self.views, self.seed = views, seed
        self.partitions = partitions  # node id -> partition id
        self.min_replies = min_replies  # fewer valid replies than this: the round is skipped
        self.max_norm = max_norm  # an update (local - sent) longer than this is dropped
        self.held: dict[int, np.ndarray] = {}  # partition id -> vector the client holds
        self.pending: dict[int, np.ndarray] = {}  # sent this round, confirmed by the reply
        self.dropped: dict[int, str] = {}  # node id -> reason, this round
        self.sent: dict[int, np.ndarray] = {}  # rank -> this round's global, that rank's view

    def holds(self, partition: int) -> np.ndarray:
        return self.held.get(partition, self.views.initials[self.views.of(partition)])

    # ---- downlink -----------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.pending, self.dropped = {}, {}
        target = flatten(record_to_arrays(arrays))
        self.sent = {r: self.views.project(target, r) for r in self.views.all_ranks()}
        cache: dict[tuple[int, str], object] = {}
        out = []
        for msg in self.inner.configure_train(server_round, arrays, config, grid):
            part = self.partitions[msg.metadata.dst_node_id]
            rank, held = self.views.of(part), self.holds(part)
            key = (rank, digest(held))
            if key not in cache:  # one encoding per (view, held vector)
                cache[key] = make_downlink(
                    self.downlink,
                    self.sent[rank],
                    held,
                    seed=_seed(self.seed, server_round, key[1]),
                )
            down = cache[key]
            self.pending[part] = down.held
            cfg = ConfigRecord(
                {
                    **dict(config),
                    "server-round": server_round,
                    "down": down.blob,
                    "down-mode": down.mode,
                    "base": down.base,
                }
            )
            msg.content = RecordDict({"config": cfg})
            out.append(msg)
        return out

    # ---- uplink -------------------------------------------------------------------
    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted, seen = [], set()
        for msg in replies:
            node = msg.metadata.src_node_id
            part = self.partitions.get(node)
            try:
                if node in seen:
                    raise ValueError("a second reply from this node in one round")
                seen.add(node)
                local = self._decode(msg, part)
            except ValueError as exc:
                self._drop(server_round, node, part, str(exc))
                continue
            accepted.append((msg, part, local))
        if len(accepted) < self.min_replies:
            log(
                WARNING,
                "round %d skipped: %d valid replies, min-train-clients is %d",
                server_round,
                len(accepted),
                self.min_replies,
            )
            return None, None
        merged = self.views.merge(
            self.sent[self.views.rank],
            [
                (self.views.of(part), local, float(msg.content["config"]["num-examples"]))
                for msg, part, local in accepted
            ],
        )
        for (msg, _, _), arrays in zip(accepted, merged, strict=True):
            metrics = MetricRecord({k: msg.content["config"][k] for k in NEEDED_METRICS})
            msg.content = RecordDict({"arrays": arrays_to_record(arrays), "metrics": metrics})
        return self.inner.aggregate_train(server_round, [msg for msg, _, _ in accepted])

    def _decode(self, msg: Message, part: int | None) -> np.ndarray:
        if part is None or part not in self.pending:
            raise ValueError("reply from a node that was not asked this round")
        if msg.has_error():
            raise ValueError(f"client error: {msg.error.reason}")
        content = msg.content
        if "config" not in content.config_records:
            raise ValueError("reply lacks its 'config' record")
        cfg = content["config"]
        if cfg.get("held") != digest(self.pending[part]):
            raise ValueError("client trained from another adapter than the one sent")
        self.held[part] = self.pending[part]  # proven: it holds what was sent, used or not
        missing = [k for k in NEEDED_METRICS if k not in cfg]
        if missing:
            raise ValueError(f"metrics lack {missing}")
        # type(), not isinstance: a bool is an int to Python but not to a MetricRecord
        if any(type(cfg[k]) not in (int, float) for k in NEEDED_METRICS):
            raise ValueError("metrics must be numbers")
        if not all(np.isfinite(cfg[k]) for k in NEEDED_METRICS):
            raise ValueError("metrics must be finite")
        if not (type(cfg["num-examples"]) is int and cfg["num-examples"] > 0):
            raise ValueError("num-examples must be a positive integer")
        blob = cfg.get("up")
        if not isinstance(blob, bytes):
            raise ValueError("reply carries no update blob")
        # clients send the leading (trainable) part of their view; residuals only go down
        rank = self.views.of(part)
        size = sum(int(np.prod(s)) for _, s in self.views.client_layout(rank, up=True))
        start = self.sent[rank][:size]
        local = reconstruct(blob, start)
        if not np.isfinite(local).all():
            raise ValueError("update is not finite")
        norm = float(np.linalg.norm(local - start))
        if self.max_norm and norm > self.max_norm:
            raise ValueError(f"update norm {norm:.3g} exceeds max-update-norm {self.max_norm:g}")
        return local

    def _drop(self, server_round: int, node: int, part: int | None, reason: str) -> None:
        if RESYNC in reason and part is not None:
            self.held.pop(part, None)  # the client reset itself to g0; so do we
        self.dropped[node] = reason
        log(
            WARNING,
            "round %d: dropped reply from client %s: %s",
            server_round,
            part if part is not None else f"node {node}",
            reason,
        )

    # ---- everything else is the inner strategy's ----------------------------------
    def configure_evaluate(self, server_round, arrays, config, grid):
        return []

    def aggregate_evaluate(self, server_round, replies):
        return None

    def summary(self) -> None:
        self.inner.summary()


def _seed(seed: int, server_round: int, base: str) -> int:
    return (seed * 1_000_003 + server_round * 7919 + int(base[:8], 16)) % (2**31)
