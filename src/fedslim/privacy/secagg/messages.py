"""Secure aggregation's records: its own namespace beside ``fedslim.protocol``.

The three extra exchanges are ``query.secagg_*`` messages; the train instruction gains
one record (the round's public encoding and the sealed shares routed to that client), and
the train reply's update blob is the packed masked codes. Everything a peer sends is
validated here and raises ``ValueError`` naming what is wrong.
"""

from __future__ import annotations

from typing import Any

from flwr.app import ConfigRecord, RecordDict

from .encoding import Encoding
from .protocol import ClientSession

KEYS, SHARE, UNMASK = "query.secagg_keys", "query.secagg_share", "query.secagg_unmask"
_REC = "secagg"
_STATE = "fedslim-secagg"
_ROUND, _SEAL, _MASK, _IDS, _BLOBS = "round", "seal-pk", "mask-pk", "ids", "blobs"
_IDS2, _BLOBS2 = "ids-2", "blobs-2"
_SIZE, _CLIP, _BITS, _CLIENTS, _SEED, _COUNT = "size", "clip", "bits", "clients", "seed", "count"


def _record(values: dict[str, Any]) -> RecordDict:
    return RecordDict({_REC: ConfigRecord(values)})


def _cfg(content: RecordDict, what: str) -> ConfigRecord:
    if _REC not in content.config_records:
        raise ValueError(f"{what} lacks its {_REC!r} record")
    return content[_REC]


def _typed(cfg: ConfigRecord, key: str, kind: type) -> Any:
    value = cfg.get(key)
    if type(value) is not kind:
        raise ValueError(f"secure aggregation: {key!r} must be {kind.__name__}")
    return value


def _pairs(cfg: ConfigRecord, ids: str, blobs: str) -> dict[int, bytes]:
    keys, values = cfg.get(ids, []), cfg.get(blobs, [])
    if not isinstance(keys, list) or not isinstance(values, list) or len(keys) != len(values):
        raise ValueError(f"secure aggregation: {ids!r} and {blobs!r} must be lists of one length")
    if any(type(k) is not int for k in keys) or any(type(v) is not bytes for v in values):
        raise ValueError(f"secure aggregation: {ids!r} must hold ints, {blobs!r} bytes")
    return dict(zip(keys, values, strict=True))


def _lists(pairs: dict[int, bytes], ids: str, blobs: str) -> dict[str, list]:
    order = sorted(pairs)
    return {ids: order, blobs: [pairs[k] for k in order]}


# ---- 1. keys ------------------------------------------------------------------------------
def keys_ins(rnd: int) -> RecordDict:
    return _record({_ROUND: rnd})


def round_of(content: RecordDict) -> int:
    return _typed(_cfg(content, "secure aggregation"), _ROUND, int)


def keys_res(seal_pk: bytes, mask_pk: bytes) -> RecordDict:
    return _record({_SEAL: seal_pk, _MASK: mask_pk})


def keys_from(content: RecordDict) -> tuple[bytes, bytes]:
    cfg = _cfg(content, "key reply")
    pks = (_typed(cfg, _SEAL, bytes), _typed(cfg, _MASK, bytes))
    if any(len(k) != 32 for k in pks):
        raise ValueError("secure aggregation: public keys must be 32 bytes")
    return pks


# ---- 2. shares ----------------------------------------------------------------------------
def share_ins(rnd: int, keys: dict[int, tuple[bytes, bytes]]) -> RecordDict:
    seal = {v: k[0] for v, k in keys.items()}
    mask = {v: k[1] for v, k in keys.items()}
    return _record({_ROUND: rnd, **_lists(seal, _IDS, _BLOBS), **_lists(mask, _IDS2, _BLOBS2)})


def share_ins_from(content: RecordDict) -> dict[int, tuple[bytes, bytes]]:
    cfg = _cfg(content, "share request")
    seal, mask = _pairs(cfg, _IDS, _BLOBS), _pairs(cfg, _IDS2, _BLOBS2)
    if set(seal) != set(mask):
        raise ValueError("secure aggregation: seal and mask keys of different clients")
    return {v: (seal[v], mask[v]) for v in seal}


def sealed_res(sealed: dict[int, bytes]) -> RecordDict:
    """Sealed shares by receiver (2.), or routed to a client by sender (3.)."""
    return _record(_lists(sealed, _IDS, _BLOBS))


def sealed_from(content: RecordDict) -> dict[int, bytes]:
    return _pairs(_cfg(content, "shares"), _IDS, _BLOBS)


# ---- 3. the train instruction's record -----------------------------------------------------
def add_to_train(content: RecordDict, enc: Encoding, routed: dict[int, bytes]) -> None:
    params = {_SIZE: enc.size, _CLIP: enc.clip, _BITS: enc.bits, _CLIENTS: enc.clients}
    params |= {_SEED: enc.seed, _COUNT: enc.count}
    content[_REC] = ConfigRecord({**params, **_lists(routed, _IDS, _BLOBS)})


def train_part(content: RecordDict) -> tuple[Encoding, dict[int, bytes]] | None:
    """(the round's encoding, shares routed here), or None without secure aggregation."""
    if _REC not in content.config_records:
        return None
    cfg = content[_REC]
    enc = Encoding(
        size=_typed(cfg, _SIZE, int),
        clip=_typed(cfg, _CLIP, float),
        bits=_typed(cfg, _BITS, int),
        clients=_typed(cfg, _CLIENTS, int),
        seed=_typed(cfg, _SEED, int),
        count=_typed(cfg, _COUNT, bool),
    )
    return enc, _pairs(cfg, _IDS, _BLOBS)


# ---- 4. unmask ----------------------------------------------------------------------------
def unmask_ins(rnd: int, survivors: set[int], dropped: set[int]) -> RecordDict:
    return _record({_ROUND: rnd, "survivors": sorted(survivors), "dropped": sorted(dropped)})


def unmask_ins_from(content: RecordDict) -> tuple[set[int], set[int]]:
    cfg = _cfg(content, "unmask request")
    sets = []
    for key in ("survivors", "dropped"):
        ids = cfg.get(key, [])
        if not isinstance(ids, list) or any(type(i) is not int for i in ids):
            raise ValueError(f"secure aggregation: {key!r} must be a list of ints")
        sets.append(set(ids))
    return sets[0], sets[1]


def unmask_res(b_shares: dict[int, bytes], s_shares: dict[int, bytes]) -> RecordDict:
    return _record(_lists(b_shares, _IDS, _BLOBS) | _lists(s_shares, _IDS2, _BLOBS2))


def unmask_from(content: RecordDict) -> tuple[dict[int, bytes], dict[int, bytes]]:
    cfg = _cfg(content, "unmask reply")
    return _pairs(cfg, _IDS, _BLOBS), _pairs(cfg, _IDS2, _BLOBS2)


# ---- the client's session between stages (Context.state) ------------------------------------
def save_session(state: RecordDict, s: ClientSession) -> None:
    values = {_ROUND: s.rnd, "me": s.me, "seal-sk": s.seal_sk, "mask-sk": s.mask_sk}
    values |= {"self-seed": s.self_seed, "own": s.own, "answered": s.answered}
    values |= _lists(s.mask_pks, _IDS2, _BLOBS2) | _lists(s.received, _IDS, _BLOBS)
    values |= _lists(s.seal_pks, "seal-ids", "seal-pks")
    state[_STATE] = ConfigRecord(values)


def load_session(state: RecordDict, rnd: int) -> ClientSession:
    """This round's session; a request for another round than the stored one fails."""
    if _STATE not in state.config_records or state[_STATE].get(_ROUND) != rnd:
        raise ValueError(f"no secure-aggregation session for round {rnd} on this client")
    c = state[_STATE]
    return ClientSession(
        rnd=rnd, me=c["me"], seal_sk=c["seal-sk"], mask_sk=c["mask-sk"],
        self_seed=c["self-seed"], own=c["own"], answered=c["answered"],
        mask_pks=_pairs(c, _IDS2, _BLOBS2), received=_pairs(c, _IDS, _BLOBS),
        seal_pks=_pairs(c, "seal-ids", "seal-pks"),
    )  # fmt: skip
