"""Secure aggregation's stages around a round of :class:`~.compressed.Compressed`.

Before the train messages go out, two exchanges (keys, then sealed shares) set up the
round; each train message gains the round's public encoding and the shares routed to
that client; its reply's blob is the client's masked codes. After the replies are
admitted, their masked codes are folded into one sum, a third exchange unmasks it, and
:meth:`SecureRounds.mean` returns the mean of the clipped updates (noised when
``dp = central``). Clients are named by partition id (small and stable, unlike node ids).
Every byte of the extra exchanges lands in the client's ledger row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from logging import WARNING

import numpy as np
from flwr.app import Message
from flwr.common.logger import log

from .. import seeds
from ..errors import ConfigError
from ..flower_internals.messages import wire_bytes
from ..ledger import ClientRow
from ..privacy.dpfedavg import CentralDP, noised_mean
from ..privacy.secagg import messages as sm
from ..privacy.secagg.encoding import Encoding, unpack
from ..privacy.secagg.server import ServerSession
from .fedavg import sample_size

Send = Callable[[list[Message]], list[Message]]  # push, and the replies within the timeout
MIN_CLIENTS = 3  # a majority threshold below this protects nothing


def check_clients(nodes: int, fraction: float, minimum: int) -> None:
    """Fail before the run when a round would ask fewer than ``MIN_CLIENTS`` clients."""
    asked = sample_size(nodes, fraction, minimum)
    if asked < MIN_CLIENTS:
        raise ConfigError(
            f"config key 'secagg': secure aggregation needs {MIN_CLIENTS} clients a round; "
            f"{nodes} node(s) at fraction-train {fraction:g} ask {asked} (add nodes, or raise "
            "fraction-train or min-train-clients)"
        )


class SecureRounds:
    def __init__(self, send: Send, *, bits: int, neighbors: int, seed: int, dp: CentralDP):
        self.send, self.bits, self.neighbors, self.seed = send, bits, neighbors, seed
        self.dp = dp  # clip (adaptive or not) and noise (0 without dp = central)
        self.session: ServerSession | None = None
        self.enc: Encoding | None = None
        self.node: dict[int, int] = {}  # partition -> node, this round
        self.why: dict[int, str] = {}  # partition -> why it left before training
        # partition -> [down bytes, up bytes, exchanges] not yet in its ledger row
        self.owed: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])

    # ---- before training ----------------------------------------------------------------
    def prepare(self, rnd: int, messages: list[Message], parts: dict[int, int], size: int):
        """The train messages of the clients that completed the key and share exchanges,
        each carrying the round's encoding and its routed shares."""
        self.node = {parts[m.metadata.dst_node_id]: m.metadata.dst_node_id for m in messages}
        self.why, self.enc = {}, None
        self.owed.clear()
        self.session = ServerSession(rnd, self.neighbors, seeds.secagg(self.seed, rnd))
        keys = self._ask(rnd, sm.KEYS, {p: sm.keys_ins(rnd) for p in self.node}, sm.keys_from)
        if len(keys) < MIN_CLIENTS:
            return self._abort(f"{len(keys)} clients sent keys; secure aggregation needs 3")
        neighbours = self.session.advertised(keys)
        asks = {p: sm.share_ins(rnd, neighbours[p]) for p in keys}
        shares = self._ask(rnd, sm.SHARE, asks, sm.sealed_from)
        for p in [p for p, out in shares.items() if set(out) != set(neighbours[p])]:
            self.why[p] = "secure aggregation: sent shares to others than its neighbours"
            del shares[p]
        if len(shares) < MIN_CLIENTS:
            return self._abort(f"{len(shares)} clients shared; secure aggregation needs 3")
        routed = self.session.route(shares)
        self.enc = Encoding(size=size, clip=self.dp.clip, bits=self.bits, clients=len(routed),
                            seed=seeds.secagg(self.seed, rnd), count=self.dp.adaptive)  # fmt: skip
        out = []
        for msg in messages:
            part = parts[msg.metadata.dst_node_id]
            if part not in routed:
                self.why.setdefault(part, "secure aggregation: no shares before the timeout")
                continue
            before = wire_bytes(msg)
            sm.add_to_train(msg.content, self.enc, routed[part])
            self.owed[part][0] += wire_bytes(msg) - before
            out.append(msg)
        return out

    def _abort(self, reason: str) -> list[Message]:
        log(WARNING, "round %d: %s", self.session.rnd, reason)
        for part in self.node:
            self.why.setdefault(part, f"secure aggregation: {reason}")
        return []

    def _ask(self, rnd: int, kind: str, contents: dict, parse) -> dict:
        """Each partition's parsed answer to ``kind``; a missing or bad one is noted."""
        asks = {p: Message(c, message_type=kind, dst_node_id=self.node[p])
                for p, c in contents.items()}  # fmt: skip
        for p, msg in asks.items():
            self.owed[p][0] += wire_bytes(msg)
            self.owed[p][2] += 1
        by_node = {n: p for p, n in self.node.items()}
        answers = {}
        for reply in self.send(list(asks.values())):
            part = by_node.get(reply.metadata.src_node_id)
            if part not in asks or part in answers:
                continue
            self.owed[part][1] += wire_bytes(reply)
            try:
                if reply.has_error():
                    raise ValueError(f"client error: {reply.error.reason}")
                answers[part] = parse(reply.content)
            except ValueError as exc:
                self.why[part] = f"secure aggregation: {exc}"
        for part in set(asks) - set(answers) - set(self.why):
            self.why[part] = f"secure aggregation: no {kind.split('_')[-1]} reply in time"
        return answers

    # ---- after training -----------------------------------------------------------------
    def masked(self, blob: bytes) -> np.ndarray:
        """A reply's masked codes (checked for length, not kept)."""
        return unpack(blob, self.enc.mod_bits, self.enc.length)

    def mean(self, rnd: int, masked: dict[int, np.ndarray], sampled: int) -> np.ndarray:
        """The mean of the survivors' clipped updates: unweighted, divided by the clients
        sampled under DP (a dropped client adds zero) or else by those summed."""
        for part in sorted(masked):
            self.session.add(part, masked.pop(part), self.enc)
        survivors, dropped = self.session.request()
        asks = {p: sm.unmask_ins(rnd, survivors, dropped) for p in survivors}
        answers = self._ask(rnd, sm.UNMASK, asks, sm.unmask_from)
        total, unclipped = self.enc.decode_sum(self.session.finish(answers, self.enc))
        rng = self.dp.rng(rnd)
        divisor = sampled if self.dp.noise else len(survivors)
        mean = noised_mean(total, bound=self.enc.clip, noise=self.dp.noise, divisor=divisor,
                           rng=rng)  # fmt: skip
        self.dp.adapt_count(unclipped, sampled=divisor, rng=rng)
        return mean

    def charge(self, rows: list[ClientRow]) -> None:
        """Add the extra exchanges and their bytes to the clients' rows (once)."""
        for row in rows:
            down, up, exchanges = self.owed.pop(row.client, (0, 0, 0))
            row.downlink_bytes += down
            row.uplink_bytes += up
            row.exchanges += exchanges
