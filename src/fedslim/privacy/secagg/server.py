"""The server's half of one SecAgg+ round: route, sum, unmask (``protocol.py`` explains).

What it keeps, by design: public keys, sealed shares it cannot open, one running sum of
masked inputs (each is added and let go), and after unmasking the secrets that remove
masks. No individual update, masked or not, is ever stored; a test inspects this object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import crypto
from .encoding import Encoding
from .protocol import MASK_INFO, graph, holders, threshold


@dataclass
class ServerSession:
    rnd: int
    neighbors: int = 0  # 0: every sampled client masks with every other
    seed: int = 0
    keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)  # id -> (seal, mask)
    nbrs: dict[int, list[int]] = field(default_factory=dict)
    shared: set[int] = field(default_factory=set)  # clients whose shares were routed
    survivors: set[int] = field(default_factory=set)  # clients whose masked input is summed
    total: np.ndarray | None = None

    def advertised(self, keys: dict[int, tuple[bytes, bytes]]) -> dict[int, dict]:
        """Each client's neighbours' public keys, from the keys that arrived."""
        if len(keys) < 2:
            raise ValueError(f"{len(keys)} client(s) sent keys; secure aggregation needs 2")
        self.keys = dict(keys)
        self.nbrs = graph(list(keys), self.neighbors, self.seed)
        return {u: {v: self.keys[v] for v in vs} for u, vs in self.nbrs.items()}

    def route(self, shares: dict[int, dict[int, bytes]]) -> dict[int, dict[int, bytes]]:
        """Sealed shares by receiver, among the clients that shared (the rest are out)."""
        for u, out in shares.items():
            if u not in self.nbrs or set(out) != set(self.nbrs[u]):
                raise ValueError(f"client {u} sent shares to other clients than its neighbours")
        self.shared = set(shares)
        routed: dict[int, dict[int, bytes]] = {u: {} for u in self.shared}
        for u, out in shares.items():
            for v, sealed in out.items():
                if v in self.shared:
                    routed[v][u] = sealed
        return routed

    def add(self, client: int, masked: np.ndarray, enc: Encoding) -> None:
        """Fold one masked input into the sum (it is not kept)."""
        if client not in self.shared or client in self.survivors:
            raise ValueError("a masked input from a client that did not share, or a second one")
        if masked.shape != (enc.length,):
            raise ValueError(f"masked input of {masked.size} values, expected {enc.length}")
        self.total = masked.copy() if self.total is None else enc.add(self.total, masked)
        self.survivors.add(client)

    def request(self) -> tuple[set[int], set[int]]:
        """(survivors, dropped) to send every survivor."""
        return set(self.survivors), self.shared - self.survivors

    def finish(
        self, answers: dict[int, tuple[dict[int, bytes], dict[int, bytes]]], enc: Encoding
    ) -> np.ndarray:
        """The sum of the survivors' codes, from the revealed shares: ``answers`` maps a
        survivor to (self-mask shares by owner, mask-key shares by owner)."""
        if self.total is None:
            raise ValueError("no masked input to unmask")
        total, dropped = self.total, self.shared - self.survivors
        for u in sorted(self.survivors):
            b = self._rebuild(u, answers, 0)
            total = enc.add(total, crypto.prg(b, enc.length), -1)
        for u in sorted(dropped):
            sk = self._rebuild(u, answers, 1)
            for v in self.nbrs[u]:
                if v in self.survivors:  # v added -(u<v? -: +) PRG(s_uv): take it out
                    seed = crypto.agree(sk, self.keys[v][1], info=MASK_INFO)
                    total = enc.add(total, crypto.prg(seed, enc.length), -1 if v < u else 1)
        self.total = total
        return total

    def _rebuild(self, owner: int, answers: dict, which: int) -> bytes:
        who = holders(owner, self.nbrs)
        got = {who.index(h): a[which][owner] for h, a in answers.items()
               if h in who and owner in a[which]}  # fmt: skip
        need = threshold(len(who))
        if len(got) < need:
            kind = "self-mask" if which == 0 else "mask-key"
            raise ValueError(
                f"{len(got)} of {need} {kind} shares of client {owner} came back: too many "
                f"clients dropped during the round to unmask the sum"
            )
        return crypto.combine(got)
