"""The client's half of :class:`~fedslim.flower.CompressedStrategy`, as a ClientApp mod:

    app = ClientApp(mods=[compression_mod])

Before the ClientApp runs, the mod applies the downlink blob to the node's copy of the
model and hands the app the ArrayRecord the server meant; after it, the mod encodes the
trained arrays minus that copy with the uplink pipeline and error feedback. The copy and
the residual live in ``Context.state``, so they survive between rounds in simulation and
deployment alike. A message without the strategy's record passes through untouched.
"""

from __future__ import annotations

from logging import WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.logger import log

from .. import seeds
from ..compression import ErrorFeedback, build
from ..transport import apply_downlink
from ..vectors import digest
from . import wire

_HELD, _RESIDUAL = "held", "residual"


def compression_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    if not msg.has_content() or wire.DOWN not in msg.content.config_records:
        return call_next(msg, context)
    down = msg.content[wire.DOWN]
    try:
        layout = wire.Layout.from_json(wire.field(down, "layout", str))
        key = wire.field(down, "key", str)
        held, residual = _load(context, layout.size)
        if digest(held) != wire.field(down, "base", str):
            _save(context, np.zeros(layout.size, np.float32), None)
            reason = "this node's copy differs from the server's; both restart from zeros"
            log(WARNING, "compression_mod: %s", reason)
            return Message(RecordDict({wire.UP: ConfigRecord({wire.RESYNC: reason})}), reply_to=msg)
        blob, mode = wire.field(down, "blob", bytes), wire.field(down, "mode", str)
        new = apply_downlink(blob, mode, held)
        plain = msg.content.array_records.get(wire.PLAIN)
        arrays = wire.join(layout, new, {} if plain is None else dict(_numpy(plain)))
    except ValueError as exc:  # a message this mod cannot read: say so, keep the copy
        raise ValueError(f"compression_mod: unreadable instruction: {exc}") from exc
    content = msg.content
    del content[wire.DOWN]
    if plain is not None:
        del content[wire.PLAIN]
    content[key] = arrays
    reply = call_next(msg, context)
    if reply.has_error():  # the copy stays as it was: the server confirms only on a reply
        return reply
    up = ConfigRecord({"held": digest(new)})
    if down.get("uplink"):  # a train reply: its arrays become an update blob
        reply_key, record = wire.only_array_record(reply.content, "the ClientApp's reply")
        trained, others = wire.split_as(record, layout)
        ef = ErrorFeedback(build(str(down["uplink"])), enabled=bool(down.get("feedback", True)))
        seed = seeds.uplink(int(down.get("seed", 0)), int(down.get("round", 0)), context.node_id)
        up["blob"], residual = ef.encode((trained - new).astype(np.float32), residual, seed=seed)
        residual = residual if ef.enabled else None
        up["key"] = reply_key
        del reply.content[reply_key]
        if others:
            reply.content[wire.PLAIN] = wire.plain_record(others)
    reply.content[wire.UP] = up
    _save(context, new, residual)
    return reply


def _numpy(record: ArrayRecord):
    return ((k, a.numpy()) for k, a in record.items())


def _load(context: Context, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    rec = context.state.array_records.get(wire.STATE)
    if rec is None or _HELD not in rec or rec[_HELD].numpy().size != size:
        return np.zeros(size, np.float32), None
    residual = rec[_RESIDUAL].numpy() if _RESIDUAL in rec else None
    return rec[_HELD].numpy(), residual


def _save(context: Context, held: np.ndarray, residual: np.ndarray | None) -> None:
    arrays = {_HELD: held} | ({} if residual is None else {_RESIDUAL: residual})
    context.state[wire.STATE] = wire.plain_record(arrays)
