"""Wrap any Flower strategy so every update crosses the network through a codec pipeline.

Downlink: the inner strategy picks the nodes (and keeps its own state on the way);
each node then gets a :class:`~fedslim.protocol.TrainIns` whose blob turns what that node
holds into its view of the global adapter (see ``fedslim.transport``; a view is the whole
adapter, or a rank slice of it, see ``ranks.py``), plus the strategy's client options.
Nodes holding the same vector share one encoding.
Uplink: each reply's blob is decoded, with the pipeline that client was told to use (the
run's, or its own under ``uplink-codec=auto|by-link:``, ``uplinks.py``), into the
client's update and added to the global adapter sent this round (not to the client's
lossy copy of it, so what the downlink codec dropped stays in the global and goes out
next round) before the inner strategy sees it, so the inner strategy (FedAvg, FedOpt,
...) only ever handles plain arrays. Under a pipeline per client, a lossless update in a
round of one-bit ones is first scaled to their step (``gains.py``), so clients weigh by
their data whatever their link. A reply that fails to decode, is not finite, is too
large, or lacks what aggregation needs is dropped with a logged reason; the round goes
on. :meth:`Compressed.aggregate`
returns the new adapter and one ledger row per client; replies are never rewritten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from logging import INFO, WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from .. import protocol, seeds
from ..adapter import Adapter
from ..compression.wire import max_blob_bytes
from ..flower_internals.messages import wire_bytes
from ..ledger import ClientRow
from ..privacy.dpfedavg import CentralDP
from ..transport import RESYNC, make_downlink, reconstruct
from ..vectors import digest, size_of
from . import gains, private
from .clock import Clock, Unmetered
from .ranks import RankMap
from .secure import SecureRounds
from .state import restore, snapshot
from .uplinks import UplinkPlan

NO_REPLY = "no reply before the round timeout"


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
        client_options: dict[str, float] | None = None,
        min_replies: int = 1,
        max_norm: float = 0.0,
        max_ratio: float = 0.0,
        clock: Clock | None = None,
        uplinks: UplinkPlan | None = None,
        dp: CentralDP | None = None,
        secure: SecureRounds | None = None,
    ) -> None:
        self.inner, self.uplink, self.downlink = inner, uplink, downlink
        # each client's own pipeline (uplink-codec=auto, by-link:), sent in its instruction
        self.uplinks = uplinks if uplinks is not None and uplinks.per_client else None
        self.match_gains = self.uplinks is not None and self.uplinks.match_gains  # gains.py
        self.views, self.seed = views, seed
        self.partitions = partitions  # node id -> partition id
        self.client_options = dict(client_options or {})  # sent in every instruction
        self.min_replies = min_replies  # fewer valid replies than this: the round is skipped
        self.max_norm = max_norm  # an update (local - sent) longer than this is dropped
        self.max_ratio = max_ratio  # ... or longer than this multiple of the adapter sent
        self.held: dict[int, np.ndarray] = {}  # partition id -> vector the client holds
        self.pending: dict[int, np.ndarray] = {}  # sent this round, confirmed by the reply
        self.sent: dict[int, np.ndarray] = {}  # rank -> this round's global, that rank's view
        self.asked: dict[int, tuple[Message, ClientRow]] = {}  # node -> instruction, its row
        self.refused: list[ClientRow] = []  # sampled, but unable to train on their device
        self.rows: list[ClientRow] = []  # the last round's, for callers of aggregate_train
        self.dp = dp  # DP-FedAvg: clip each decoded update, noise the sum (privacy/)
        self.secure = secure  # secure aggregation: the server sees only the sum (secure.py)
        self.clock = clock or Unmetered()  # simulated availability, costs and deadlines
        inner.available = self.clock.available  # the inner strategy samples among these
        inner.over_select = self.clock.over_select
        # values a client's update holds (the trainable head of its view), per rank
        self.up_sizes = {r: size_of(views.client_layout(r, up=True)) for r in views.all_ranks()}

    def uplink_of(self, partition: int) -> str:
        if self.uplinks is None:
            return self.uplink
        return self.uplinks(partition, self.up_sizes[self.views.of(partition)])

    def holds(self, partition: int) -> np.ndarray:
        return self.held.get(partition, self.views.initials[self.views.of(partition)])

    # ---- downlink -----------------------------------------------------------------
    def configure(self, server_round: int, adapter: Adapter, grid: Grid):
        """One instruction per node the inner strategy samples."""
        self.pending, self.asked = {}, {}
        self.sent = {r: self.views.project(adapter.vec, r) for r in self.views.all_ranks()}
        envelopes = self.inner.configure_train(server_round, adapter.record(), ConfigRecord(), grid)
        cache: dict[tuple[int, str], object] = {}
        out = []
        self.refused = []  # sampled clients that cannot train on their device
        for envelope in envelopes:
            node = envelope.metadata.dst_node_id
            part = self.partitions.get(node)
            if part is None:  # connected, but not admitted to this run (see discovery.admit)
                continue
            reason = self.clock.refuse(part)
            if reason:
                self.refused.append(ClientRow(round=server_round, client=part, status=reason))
                continue
            rank, held = self.views.of(part), self.holds(part)
            key = (rank, digest(held))
            if key not in cache:  # one encoding per (view, held vector)
                seed = seeds.downlink(self.seed, server_round, key[1])
                cache[key] = make_downlink(self.downlink, self.sent[rank], held, seed=seed)
            down = cache[key]
            self.pending[part] = down.held
            uplink = self.uplink_of(part)
            ins = protocol.TrainIns(
                server_round,
                down.blob,
                down.mode,
                down.base,
                dict(self.client_options),
                setting=self.clock.setting(part),
                uplink=uplink if self.uplinks else "",  # "": the run's uplink-codec
            )
            msg = Message(protocol.train_ins_content(ins), message_type="train", dst_node_id=node)
            row = ClientRow(
                round=server_round,
                client=part,
                downlink_bytes=wire_bytes(msg),
                downlink_payload_bytes=len(down.blob),
                uplink_codec=uplink,
            )
            self.asked[node] = (msg, row)
            out.append(msg)
        return out

    # ---- uplink -------------------------------------------------------------------
    def aggregate(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[Adapter | None, list[ClientRow]]:
        """The new global adapter (None: the round is skipped) and one row per client."""
        accepted, rows, seen = [], [], set()
        for msg in replies:
            node = msg.metadata.src_node_id
            part = self.partitions.get(node)
            row = self._row(server_round, node, part, msg)
            rows.append(row)
            try:
                if node in seen:
                    raise ValueError("a second reply from this node in one round")
                seen.add(node)
                res, local = self._decode(msg, part)
            except ValueError as exc:
                self._drop(server_round, node, part, str(exc), row)
                continue
            row.num_examples, row.train_loss = res.num_examples, res.train_loss
            row.train_s, row.flops, row.setting = res.train_s, res.flops, res.setting
            accepted.append((node, part, res, local, row))
        left = self.secure.why if self.secure else {}
        for node, (_, row) in self.asked.items():
            if node not in seen:
                self._drop(server_round, node, row.client, left.get(row.client, NO_REPLY), row)
                rows.append(row)
        rows += self.refused
        if self.secure:
            self.secure.charge(rows)
        for row in rows:
            self.clock.price(row)
        self.clock.admit([a[-1] for a in accepted], getattr(self.inner, "wanted", 0))
        accepted = [a for a in accepted if a[-1].ok]  # late ones spent their energy all the same
        rows.sort(key=lambda r: r.client)
        if len(accepted) < self.min_replies:
            log(
                WARNING,
                "round %d skipped: %d valid replies, min-train-clients is %d",
                server_round,
                len(accepted),
                self.min_replies,
            )
            return None, rows
        ok_rows = [r for r in rows if r.ok]
        if self.match_gains:
            accepted = self._matched(server_round, accepted)
        return self._merge(server_round, accepted, ok_rows), rows

    def _matched(self, server_round: int, accepted: list) -> list:
        """Lossless replies at the step of the round's lossy pipelines (``gains.py``)."""
        specs = [self.uplink_of(part) for _, part, *_ in accepted]
        starts = [self.sent[self.views.of(part)][: local.size] for _, part, _, local, _ in accepted]
        locals_, scales = gains.match([a[3] for a in accepted], starts, specs)
        for (_, part, _, _, row), scale in zip(accepted, scales, strict=True):
            if scale != 1.0:
                row.update_scale = scale
                log(INFO, "round %d: client %d's lossless update entered at %.3f of its step",
                    server_round, part, scale)  # fmt: skip
        return [(*a[:3], local, a[4]) for a, local in zip(accepted, locals_, strict=True)]

    def _merge(self, server_round: int, accepted: list, rows: list[ClientRow]) -> Adapter | None:
        if self.secure is not None or self.dp is not None:
            try:  # one (noised) mean of the clipped updates stands in for every reply
                accepted = [self._stand_in(server_round, accepted, rows)]
            except ValueError as exc:
                return self._skip(server_round, str(exc), rows)
        weighted = [
            (self.views.of(p), local, float(res.num_examples)) for _, p, res, local, _ in accepted
        ]
        merged = self.views.merge(self.sent[self.views.rank], weighted)
        up = self.views.up_layout
        inner_replies = [
            Message(
                protocol.aggregation_content(Adapter(up, vec).record(), res),
                reply_to=self.asked[node][0],
            )
            for (node, _, res, _, _), vec in zip(accepted, merged, strict=True)
        ]
        saved = snapshot(self.inner)
        record, _ = self.inner.aggregate_train(server_round, inner_replies)
        if record is None:
            return None
        new = Adapter.from_record(record)
        reason = self._refusal(new.vec)
        if reason:  # undo what the inner strategy learnt from this round, keep the global
            restore(self.inner, saved)
            return self._skip(server_round, reason, rows)
        return new

    def _skip(self, server_round: int, reason: str, rows: list[ClientRow]) -> None:
        log(WARNING, "round %d skipped: %s", server_round, reason)
        for row in rows:
            row.status = f"round skipped: {reason}"

    def _stand_in(self, server_round: int, accepted: list, rows: list[ClientRow]) -> tuple:
        """One reply of weight 1 for all (``private.py``): the mean secure aggregation
        unmasks (its last exchange's bytes charged to the survivors' rows), or DP-FedAvg's."""
        rank = self.views.rank
        start = self.sent[rank][: self.up_sizes[rank]]
        sampled = len(self.asked)
        if self.secure is None:
            mean = private.dp_mean(self.dp, server_round, start, accepted, sampled=sampled)
        else:
            masked = {part: local for _, part, _, local, _ in accepted}
            mean = self.secure.mean(server_round, masked, sampled=sampled)
            self.secure.charge(rows)
            for row in rows:
                self.clock.price(row)
        return private.one_reply(accepted, start + mean)

    def _refusal(self, new: np.ndarray) -> str | None:
        """Why an aggregate must not become the global adapter (None: it may)."""
        if not np.isfinite(new).all():
            return "the aggregate is not finite"
        before = self.sent[self.views.rank]
        step = float(np.linalg.norm(new - before))
        if self.max_ratio and step > self.max_ratio * _scale(before):
            return (
                f"the aggregate moved {step:.3g}, over max-update-ratio {self.max_ratio:g} x "
                f"the adapter's {_scale(before):.3g}"
            )
        return None

    def _row(self, server_round: int, node: int, part: int | None, msg: Message) -> ClientRow:
        asked = self.asked.get(node)
        if asked:  # a copy: a repeated reply gets a row of its own
            row = dataclasses.replace(asked[1])
        else:
            row = ClientRow(round=server_round, client=-1 if part is None else part)
        row.uplink_payload_bytes = protocol.update_bytes(msg)
        if part in self.pending and row.uplink_payload_bytes > self._blob_limit(part):
            row.uplink_bytes = row.uplink_payload_bytes  # a lower bound: serializing the
            return row  # message again to measure it would cost a multiple of its size
        row.uplink_bytes = wire_bytes(msg)
        return row

    def _blob_limit(self, part: int) -> int:
        return max_blob_bytes(self.up_sizes[self.views.of(part)])

    def _decode(self, msg: Message, part: int | None) -> tuple[protocol.TrainRes, np.ndarray]:
        """A reply through two stages, each refusing with its reason: the reply (who sent
        it, from which copy, within the size bound), then its update."""
        res = self._admit(msg, part)
        if self.secure is not None:  # masked codes: checked for length, summed later
            return res, self.secure.masked(res.blob)
        return res, self._update(res, part)

    def _admit(self, msg: Message, part: int | None) -> protocol.TrainRes:
        if part is None or part not in self.pending:
            raise ValueError("reply from a node that was not asked this round")
        if msg.has_error():
            raise ValueError(f"client error: {msg.error.reason}")
        if protocol.is_resync(msg.content):
            self.held.pop(part, None)  # the client reset itself to g0; so do we
            raise ValueError(f"{RESYNC}: the client's copy differed; both ends restart at g0")
        if protocol.train_res_held(msg.content) != digest(self.pending[part]):
            raise ValueError("client trained from another adapter than the one sent")
        self.held[part] = self.pending[part]  # proven: it holds what was sent, used or not
        res = protocol.train_res_from(msg.content)
        if len(res.blob) > self._blob_limit(part):
            raise ValueError(f"update blob of {len(res.blob)} bytes exceeds the adapter's bound")
        return res

    def _update(self, res: protocol.TrainRes, part: int) -> np.ndarray:
        # clients send the leading (trainable) part of their view; residuals only go down
        rank = self.views.of(part)
        start = self.sent[rank][: self.up_sizes[rank]]
        local = reconstruct(res.blob, start, spec=self.uplink_of(part))
        if not np.isfinite(local).all():
            raise ValueError("update is not finite")
        norm = float(np.linalg.norm(local - start))
        if self.max_norm and norm > self.max_norm:
            raise ValueError(f"update norm {norm:.3g} exceeds max-update-norm {self.max_norm:g}")
        if self.max_ratio and norm > self.max_ratio * _scale(start):
            raise ValueError(
                f"update norm {norm:.3g} exceeds max-update-ratio {self.max_ratio:g} x the "
                f"adapter's {_scale(start):.3g}"
            )
        return local

    def _drop(
        self, server_round: int, node: int, part: int | None, reason: str, row: ClientRow
    ) -> None:
        row.status = reason
        log(
            WARNING,
            "round %d: dropped reply from client %s: %s",
            server_round,
            part if part is not None else f"node {node}",
            reason,
        )

    # ---- Flower's Strategy interface: the typed calls above, evaluation passed through ----
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.configure(server_round, Adapter.from_record(arrays), grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        new, self.rows = self.aggregate(server_round, replies)
        return (None if new is None else new.record()), None

    def configure_evaluate(self, server_round, arrays, config, grid):
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round, replies):
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()


def _scale(vec: np.ndarray) -> float:
    """The norm updates are measured against (at least 1, so a near-zero adapter such as
    LoRA's B = 0 at the start does not forbid the first steps)."""
    return max(float(np.linalg.norm(vec)), 1.0)
