"""The client's half of secure aggregation (``fedslim.privacy.secagg``): answer the key,
share and unmask requests, and turn the update into masked codes.

The round's secrets live in ``Context.state`` between the stages (deployment may run
each message in a fresh process); a request for another round finds no session and fails,
which the server logs as that client dropping out.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message, RecordDict

from .. import protocol
from ..privacy.secagg import messages as sm
from ..privacy.secagg.encoding import pack
from ..privacy.secagg.protocol import ClientSession


def _me(context: Context) -> int:
    return protocol.node_identity(context.node_config)[0]


def keys(msg: Message, context: Context) -> Message:
    session = ClientSession(rnd=sm.round_of(msg.content), me=_me(context))
    seal_pk, mask_pk = session.advertise()
    sm.save_session(context.state, session)
    return Message(sm.keys_res(seal_pk, mask_pk), reply_to=msg)


def share(msg: Message, context: Context) -> Message:
    session = sm.load_session(context.state, sm.round_of(msg.content))
    sealed = session.share(sm.share_ins_from(msg.content))
    sm.save_session(context.state, session)
    return Message(sm.sealed_res(sealed), reply_to=msg)


def unmask(msg: Message, context: Context) -> Message:
    session = sm.load_session(context.state, sm.round_of(msg.content))
    b_shares, s_shares = session.unmask(*sm.unmask_ins_from(msg.content))
    sm.save_session(context.state, session)
    return Message(sm.unmask_res(b_shares, s_shares), reply_to=msg)


def masked_update(
    content: RecordDict, context: Context, server_round: int, delta: np.ndarray, seed: int
) -> bytes | None:
    """The packed masked codes of ``delta`` (None: the round is not secure)."""
    part = sm.train_part(content)
    if part is None:
        return None
    enc, routed = part
    session = sm.load_session(context.state, server_round)
    codes = enc.encode(delta, np.random.default_rng(seed))
    masked = session.mask(codes, enc, routed)
    sm.save_session(context.state, session)
    return pack(masked, enc.mod_bits)


def register(app) -> None:
    """Add the three secure-aggregation requests to a ClientApp."""
    for kind, handler in ((sm.KEYS, keys), (sm.SHARE, share), (sm.UNMASK, unmask)):
        app.query(kind.split(".", 1)[1])(handler)
