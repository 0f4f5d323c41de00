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
from flwr.app import Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.logger import log

from .. import seeds
from ..compression import ErrorFeedback, build
from ..transport import apply_downlink
from ..vectors import digest
from . import wire


def compression_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    try:
        down = wire.Down.of(msg.content) if msg.has_content() else None
        if down is None:  # not from a CompressedStrategy
            return call_next(msg, context)
        held, residual = wire.load_state(context.state, down.layout.size)
        if digest(held) != down.base:
            wire.save_state(context.state, np.zeros(down.layout.size, np.float32), None)
            reason = "this node's copy differs from the server's; both restart from zeros"
            log(WARNING, "compression_mod: %s", reason)
            up = wire.Up(resync=reason).record()
            return Message(RecordDict({wire.UP: up}), reply_to=msg)
        new = apply_downlink(down.blob, down.mode, held)
        arrays = wire.join(down.layout, new, wire.plain_arrays(msg.content))
    except ValueError as exc:  # a message this mod cannot read: say so, keep the copy
        raise ValueError(f"compression_mod: unreadable instruction: {exc}") from exc
    content = msg.content
    del content[wire.DOWN]
    if wire.PLAIN in content.array_records:
        del content[wire.PLAIN]
    content[down.key] = arrays
    reply = call_next(msg, context)
    if reply.has_error():  # the copy stays as it was: the server confirms only on a reply
        return reply
    up = wire.Up(held=digest(new))
    if down.uplink:  # a train reply: its arrays become an update blob
        key, record = wire.only_array_record(reply.content, "the ClientApp's reply")
        trained, others = wire.split_as(record, down.layout)
        ef = ErrorFeedback(build(down.uplink), enabled=down.feedback)
        seed = seeds.uplink(down.seed, down.round, context.node_id)
        blob, residual = ef.encode((trained - new).astype(np.float32), residual, seed=seed)
        residual = residual if ef.enabled else None
        up = wire.Up(held=up.held, blob=blob, key=key)
        del reply.content[key]
        if others:
            reply.content[wire.PLAIN] = wire.plain_record(others)
    reply.content[wire.UP] = up.record()
    wire.save_state(context.state, new, residual)
    return reply
