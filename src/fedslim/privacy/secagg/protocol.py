"""SecAgg+ (Bell et al., CCS 2020; Bonawitz et al., CCS 2017) for one round, both ends.

Four exchanges, fresh keys each round:
1. *keys*: each sampled client sends two X25519 public keys (one to seal shares, one for
   masks).
2. *share*: the server sends each client its neighbours' keys (every other client, or a
   ring of ``neighbors`` over a seeded order: SecAgg+'s sparse graph). The client draws a
   self-mask seed ``b``, Shamir-shares ``b`` and its mask key among its neighbours and
   itself (threshold: a majority), seals each neighbour's shares for that neighbour alone,
   and hands them to the server.
3. *masked input* (the train reply): the update's codes plus PRG(b) plus, for each
   neighbour whose shares arrived, +-PRG(pairwise seed) (the lower id adds, the higher
   subtracts, so the pairs cancel in the sum).
4. *unmask*: the server names who sent a masked input and who dropped. Each client opens
   its shares and reveals ``b`` shares of survivors, mask-key shares of dropped clients,
   never both for one client (asked for both, it refuses): the server removes every
   survivor's PRG(b) and the dropped clients' pairwise masks, and holds only the sum.

Threat model (what the README says): an honest-but-curious server, and any minority of
colluding clients, learn nothing of one client's update beyond the sum. A server that
forges public keys (no PKI) or a client that sends garbage codes are not stopped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from . import crypto
from .encoding import Encoding

SEAL_INFO, MASK_INFO = b"fedslim secagg seal", b"fedslim secagg mask"


def graph(ids: list[int], neighbors: int, seed: int) -> dict[int, list[int]]:
    """Each client's neighbours: all others (``neighbors`` 0 or >= clients - 1), else a
    ring of ``neighbors`` (rounded up to even) over a seeded order of the ids."""
    ids = sorted(ids)
    if not neighbors or neighbors >= len(ids) - 1:
        return {u: [v for v in ids if v != u] for u in ids}
    order = [ids[i] for i in np.random.default_rng([seed, 0x6A]).permutation(len(ids))]
    half, n = -(-neighbors // 2), len(order)
    return {
        u: sorted({order[(i + d) % n] for d in range(-half, half + 1)} - {u})
        for i, u in enumerate(order)
    }


def holders(u: int, nbrs: dict[int, list[int]]) -> list[int]:
    """Who holds a share of ``u``'s secrets, in share-index order."""
    return sorted([*nbrs[u], u])


def threshold(count: int) -> int:
    """A majority of the holders: no two disjoint groups can both rebuild a secret, so
    the server cannot get ``b`` from some and the mask key from others."""
    return count // 2 + 1


def _aad(rnd: int, src: int, dst: int) -> bytes:
    return struct.pack("<QQQ", rnd, src, dst)


@dataclass
class ClientSession:
    """A client's secrets for one round (kept in its ``Context.state`` between stages)."""

    rnd: int
    me: int
    seal_sk: bytes = b""
    mask_sk: bytes = b""
    self_seed: bytes = b""
    seal_pks: dict[int, bytes] = field(default_factory=dict)  # neighbours' public keys
    mask_pks: dict[int, bytes] = field(default_factory=dict)
    received: dict[int, bytes] = field(default_factory=dict)  # src -> sealed shares for me
    own: bytes = b""  # my share of my own secrets
    answered: bool = False

    def advertise(self) -> tuple[bytes, bytes]:
        """(seal key, mask key): the public halves of two fresh key pairs."""
        self.seal_sk, seal_pk = crypto.keypair()
        self.mask_sk, mask_pk = crypto.keypair()
        return seal_pk, mask_pk

    def share(self, keys: dict[int, tuple[bytes, bytes]]) -> dict[int, bytes]:
        """Sealed shares, one per neighbour; ``keys`` maps each neighbour to its (seal,
        mask) public keys."""
        if self.me in keys:
            raise ValueError("the server listed this client among its own neighbours")
        self.self_seed = crypto.random_secret()
        self.seal_pks = {v: k[0] for v, k in keys.items()}
        self.mask_pks = {v: k[1] for v, k in keys.items()}
        who = sorted([*keys, self.me])
        t = threshold(len(who))
        b = crypto.split(self.self_seed, threshold=t, holders=len(who))
        s = crypto.split(self.mask_sk, threshold=t, holders=len(who))
        out = {}
        for i, v in enumerate(who):
            if v == self.me:
                self.own = b[i] + s[i]
                continue
            key = crypto.agree(self.seal_sk, keys[v][0], info=SEAL_INFO)
            out[v] = crypto.seal(key, b[i] + s[i], aad=_aad(self.rnd, self.me, v))
        return out

    def mask(self, codes: np.ndarray, enc: Encoding, received: dict[int, bytes]) -> np.ndarray:
        """Masked codes; ``received`` is every neighbour's sealed shares that reached us,
        so also the neighbours whose pairwise masks the sum must cancel."""
        unknown = set(received) - set(self.mask_pks)
        if unknown:
            raise ValueError(f"shares from clients that are not neighbours: {sorted(unknown)}")
        self.received = dict(received)
        out = enc.add(codes.astype(np.uint32), crypto.prg(self.self_seed, enc.length))
        for v in sorted(received):
            seed = crypto.agree(self.mask_sk, self.mask_pks[v], info=MASK_INFO)
            out = enc.add(out, crypto.prg(seed, enc.length), 1 if self.me < v else -1)
        self.self_seed = b""  # only its shares remain
        return out

    def unmask(
        self, survivors: set[int], dropped: set[int]
    ) -> tuple[dict[int, bytes], dict[int, bytes]]:
        """(self-mask shares of survivors, mask-key shares of dropped clients), by owner."""
        if self.answered:
            raise ValueError("already answered an unmask request this round")
        if survivors & dropped:
            raise ValueError("asked to reveal both secrets of the same client")
        if self.me not in survivors:
            raise ValueError("asked to unmask while counted as dropped")
        mine = [*self.received, self.me]
        if sum(u in survivors for u in mine) < threshold(len(self.mask_pks) + 1):
            raise ValueError("too few survivors among this client's neighbours")
        self.answered = True
        b_shares, s_shares = {}, {}
        for src, sealed in self.received.items():
            if src not in survivors and src not in dropped:
                continue
            key = crypto.agree(self.seal_sk, self.seal_pks[src], info=SEAL_INFO)
            both = crypto.unseal(key, sealed, aad=_aad(self.rnd, src, self.me))
            if src in survivors:
                b_shares[src] = both[:32]
            else:
                s_shares[src] = both[32:]
        b_shares[self.me] = self.own[:32]
        return b_shares, s_shares
