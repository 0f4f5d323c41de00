"""fedslim's transport, the client's half, as a mod around its train handler.

The same split as :func:`fedslim.flower.compression_mod` for any Flower app, on fedslim's
own protocol: a node starts from the seeded ``g0`` (so a first downlink is only what
differs from it), follows the pipeline the server chose for it, and may answer with
secure aggregation's masked codes. Before the handler: prove the node's copy against
the instruction (or reset both ends to ``g0``), apply the downlink blob and hand the
handler its view of the global adapter. After it: the update (trained - view) through
the client's pipeline with error feedback, or masked; the copy and the residual kept in
``Context.state``, never in module globals (deployment may run each message in a fresh
process). A handler that fails leaves the node's copy as it was.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from .. import protocol, seeds
from ..adapter import Adapter
from ..compression import ErrorFeedback, build
from ..config import RunConfig
from ..transport import apply_downlink
from ..vectors import digest, flatten
from . import secagg
from .node import rank_of, setting_of
from .workload import client_model, run_task


def transport_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    cfg = RunConfig.from_mapping(context.run_config)
    ins = protocol.train_ins_from(msg.content)
    pid, _, rank = rank_of(context, cfg)
    setting = setting_of(ins, cfg, pid)
    _, initial = client_model(cfg, run_task(cfg), rank, setting)
    g0 = Adapter.of(initial)
    state = protocol.load_state(context.state) or protocol.NodeState(g0.vec, None)
    if digest(state.held) != ins.base:  # start over from g0, as will the server
        protocol.save_state(context.state, protocol.NodeState(g0.vec, None))
        reason = "local copy differs from the server's; reset to g0"
        return Message(protocol.resync_content(reason), reply_to=msg)
    held = apply_downlink(ins.blob, ins.mode, state.held)
    protocol.set_view(msg.content, Adapter(g0.layout, held).record(), str(setting))
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    adapter, res = protocol.trained_from(reply.content)
    trained = flatten(adapter)  # the adapter: the head of the global layout
    delta = (trained - held[: trained.size]).astype(np.float32)
    feedback = cfg.codecs.error_feedback
    uplink_seed = seeds.uplink(cfg.seed, ins.server_round, pid)
    blob = secagg.masked_update(msg.content, context, ins.server_round, delta, uplink_seed)
    if blob is None:
        ef = ErrorFeedback(build(ins.uplink or cfg.codecs.uplink), enabled=feedback)
        blob, residual = ef.encode(delta, state.residual, seed=uplink_seed)
    else:  # secure aggregation's codes are unbiased: nothing to feed back
        residual, feedback = None, False
    protocol.save_state(context.state, protocol.NodeState(held, residual if feedback else None))
    res = dataclasses.replace(res, blob=blob, held=digest(held))
    return Message(protocol.train_res_content(res), reply_to=msg)
