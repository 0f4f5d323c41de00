"""Fault injection: a ClientApp whose chosen clients send broken replies.

For robustness tests and benchmarks: the server must drop each kind with a logged
reason and finish the round with the others. Faults are applied by a Flower mod on
the real client's reply, so everything else about the client stays genuine.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from ..compression import decode, encode
from . import app as client

KINDS = ("garbage", "truncate", "bitflip", "nan", "huge", "wrong-size", "no-metrics", "error")


def _break(kind: str, msg: Message, reply: Message, rng: np.random.Generator) -> Message:
    content = reply.content
    cfg = content["config"]
    blob = cfg["up"]
    n = decode(blob, max_elements=1 << 30).size
    if kind == "garbage":
        cfg["up"] = rng.bytes(len(blob))
    elif kind == "truncate":
        cfg["up"] = blob[: len(blob) // 2]
    elif kind == "bitflip":
        raw = bytearray(blob)
        raw[len(raw) // 2] ^= 0x10
        cfg["up"] = bytes(raw)
    elif kind == "nan":
        cfg["up"] = encode("none", np.full(n, np.nan, np.float32))
    elif kind == "huge":
        cfg["up"] = encode("none", np.full(n, 1e30, np.float32))
    elif kind == "wrong-size":
        cfg["up"] = encode("none", np.zeros(n + 7, np.float32))
    elif kind == "no-metrics":
        kept = {k: cfg[k] for k in ("up", "held")}
        return Message(RecordDict({"config": ConfigRecord(kept)}), reply_to=msg)
    return Message(RecordDict({"config": cfg}), reply_to=msg)


def faulty_app(faults: dict[int, str]) -> ClientApp:
    """The fedslim ClientApp, except that partition ``p`` breaks its replies as ``faults[p]``."""
    unknown = set(faults.values()) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; accepted: {', '.join(KINDS)}")

    def mod(msg: Message, context: Context, call_next) -> Message:
        kind = faults.get(int(context.node_config.get("partition-id", -1)))
        if kind is None or msg.metadata.message_type != "train":
            return call_next(msg, context)
        if kind == "error":
            raise RuntimeError("injected client failure")
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        return _break(kind, msg, reply, np.random.default_rng(0))

    faulty = ClientApp(mods=[mod])
    faulty.train()(client.train)
    faulty.query()(client.query)
    return faulty
