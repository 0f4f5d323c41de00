"""Fault injection: a ClientApp whose chosen clients send broken replies.

For robustness tests and benchmarks: the server must drop each kind with a logged
reason and finish the round with the others. Faults are applied by a Flower mod on
the real client's reply, so everything else about the client stays genuine.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from .. import protocol
from ..compression import decode, encode
from ..compression.wire import loads
from . import app as client
from . import secagg
from .transport_mod import transport_mod

KINDS = (
    "garbage",  # random bytes of the blob's length
    "truncate",  # the first half of the blob
    "bitflip",  # one bit flipped
    "nan",  # raw fp32 NaN
    "huge",  # finite 1e30 everywhere, in the run's codec
    "wrong-size",  # seven values too many, in the run's codec
    "oversized",  # the honest blob with 8 MiB appended
    "no-metrics",  # blob and digest only
    "wrong-types",  # bytes and strings where numbers belong
    "stale",  # claims to hold another adapter than the one sent
    "error",  # the ClientApp raises
)


def _broken_blob(kind: str, blob: bytes, rng: np.random.Generator) -> bytes:
    n = decode(blob, max_elements=1 << 30).size
    spec = loads(blob, max_elements=n).spec  # the run's own codec, which the server enforces
    if kind == "garbage":
        return rng.bytes(len(blob))
    if kind == "truncate":
        return blob[: len(blob) // 2]
    if kind == "bitflip":
        raw = bytearray(blob)
        raw[len(raw) // 2] ^= 0x10
        return bytes(raw)
    if kind == "nan":  # only a lossless pipeline carries NaN: raw fp32, whatever the run's
        return encode("none", np.full(n, np.nan, np.float32))
    if kind == "huge":
        return encode(spec, np.full(n, 1e30, np.float32))
    if kind == "wrong-size":
        return encode(spec, np.ones(n + 7, np.float32))
    if kind == "oversized":
        return blob + bytes(8 << 20)
    return blob


def _break(kind: str, msg: Message, reply: Message, rng: np.random.Generator) -> Message:
    res = protocol.train_res_from(reply.content)
    res = dataclasses.replace(res, blob=_broken_blob(kind, res.blob, rng))
    if kind == "stale":
        res = dataclasses.replace(res, held="0" * len(res.held))
    content = protocol.train_res_content(res, metrics=kind != "no-metrics")
    if kind == "wrong-types":  # what no typed TrainRes can hold: written raw on purpose
        protocol.corrupt_metrics(content)
    return Message(content, reply_to=msg)


def faulty_app(faults: dict[int, str]) -> ClientApp:
    """The fedslim ClientApp, except that partition ``p`` breaks its replies as ``faults[p]``."""
    unknown = set(faults.values()) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; accepted: {', '.join(KINDS)}")
    return _app(lambda context: faults.get(protocol.node_identity(context.node_config)[0]))


def _own_fault(context: Context) -> str | None:
    kind = context.node_config.get(FAULT_KEY)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"node config {FAULT_KEY}={kind!r}: accepted: {', '.join(KINDS)}")
    return kind


def _app(kind_of) -> ClientApp:
    def mod(msg: Message, context: Context, call_next) -> Message:
        kind = kind_of(context)
        if kind is None or msg.metadata.message_type != "train":
            return call_next(msg, context)
        if kind == "error":
            raise RuntimeError("injected client failure")
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        return _break(kind, msg, reply, np.random.default_rng(0))

    faulty = ClientApp(mods=[mod, transport_mod])  # faults break what goes on the wire
    faulty.train()(client.train)
    faulty.query()(client.query)
    secagg.register(faulty)
    return faulty


# On the Deployment Engine: each SuperNode breaks its replies as its own node config says
# (``--node-config "... fault=truncate"``); the app component ``fedslim.client.faults:app``.
FAULT_KEY = "fault"
app = _app(_own_fault)
