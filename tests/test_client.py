"""The ClientApp's train function called directly (real torch, real Flower records)."""

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedslim.client.app import STATE, train
from fedslim.compression import decode
from fedslim.config import RunConfig
from fedslim.records import wire_bytes
from fedslim.transport import RESYNC, digest


@pytest.fixture(autouse=True)
def _identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1


def _context(**overrides):
    cfg = RunConfig(num_examples=200, local_steps=2, **overrides).to_mapping()
    return Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 0, "num-partitions": 2},
        state=RecordDict(),
        run_config=cfg,
    )


def _message(base: str, server_round=1):
    cfg = ConfigRecord(
        {"server-round": server_round, "down": b"", "down-mode": "keep", "base": base}
    )
    return Message(RecordDict({"config": cfg}), dst_node_id=7, message_type="train")


def test_first_contact_needs_no_download_and_state_persists():
    ctx = _context(uplink_codec="q4|zstd:3")
    probe = _context()
    with pytest.raises(RuntimeError, match=RESYNC):  # learn g0's digest the hard way
        train(_message("unknown"), probe)
    g0 = probe.state[STATE]["held"].numpy()
    reply = train(_message(digest(g0)), ctx)
    assert reply.content["config"]["held"] == digest(g0)
    update = decode(reply.content["config"]["up"], max_elements=g0.size)
    assert update.shape == g0.shape and np.abs(update).sum() > 0
    state = ctx.state[STATE]
    assert np.array_equal(state["held"].numpy(), g0) and "residual" in state
    # one record carries blob, digest and metrics: Flower's framing stays under 500 bytes
    assert set(reply.content.keys()) == {"config"}
    assert wire_bytes(reply) - len(reply.content["config"]["up"]) < 500


def test_a_diverged_copy_resets_to_g0_and_says_so():
    ctx = _context()
    with pytest.raises(RuntimeError, match=RESYNC):
        train(_message("not-what-i-hold"), ctx)
    held = ctx.state[STATE]["held"].numpy()
    reply = train(_message(digest(held), server_round=2), ctx)  # the next round works again
    assert reply.content["config"]["held"] == digest(held)
