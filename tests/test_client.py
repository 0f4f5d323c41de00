"""The ClientApp called directly, as Flower calls it: its train handler behind the transport
mod (real torch, real Flower records)."""

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedslim import protocol
from fedslim.client.app import app
from fedslim.compression import decode
from fedslim.config import ConfigError, RunConfig
from fedslim.flower_internals.messages import wire_bytes
from fedslim.vectors import digest


def train(msg: Message, context: Context) -> Message:
    return app(msg, context)


@pytest.fixture(autouse=True)
def _identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1


def _context(**overrides):
    cfg = RunConfig.of(num_examples=200, local_steps=2, **overrides).to_mapping()
    return Context(
        run_id=1,
        node_id=7,
        node_config={"partition-id": 0, "num-partitions": 2},
        state=RecordDict(),
        run_config=cfg,
    )


def _message(base: str, server_round=1):
    ins = protocol.TrainIns(server_round, b"", "keep", base)
    return Message(protocol.train_ins_content(ins), dst_node_id=7, message_type="train")


def test_first_contact_needs_no_download_and_state_persists():
    ctx = _context(uplink_codec="q4|zstd:3")
    probe = _context()
    # learn g0's digest the hard way: the node resets itself and says so, typed
    assert protocol.is_resync(train(_message("unknown"), probe).content)
    g0 = protocol.load_state(probe.state).held
    reply = train(_message(digest(g0)), ctx)
    res = protocol.train_res_from(reply.content)
    assert res.held == digest(g0)
    update = decode(res.blob, max_elements=g0.size)
    assert update.shape == g0.shape and np.abs(update).sum() > 0
    state = protocol.load_state(ctx.state)
    assert np.array_equal(state.held, g0) and state.residual is not None
    # one record carries blob, digest and metrics: Flower's framing stays under 500 bytes
    assert len(reply.content.keys()) == 1
    assert wire_bytes(reply) - len(res.blob) < 500


def test_a_diverged_copy_resets_to_g0_and_says_so():
    ctx = _context()
    assert protocol.is_resync(train(_message("not-what-i-hold"), ctx).content)
    held = protocol.load_state(ctx.state).held
    reply = train(_message(digest(held), server_round=2), ctx)  # the next round works again
    assert protocol.train_res_from(reply.content).held == digest(held)


def test_train_seed_moves_only_the_sgd_draws():
    """``train-seed`` -1 is ``seed``; another value trains the same partition from the
    same start under other batches: a different update of the same data."""

    def update(**overrides):
        probe = _context(**overrides)
        assert protocol.is_resync(train(_message("unknown"), probe).content)
        g0 = protocol.load_state(probe.state).held
        res = protocol.train_res_from(train(_message(digest(g0)), probe).content)
        return g0, res.num_examples, decode(res.blob, max_elements=g0.size)

    g0, n, default = update(seed=3)
    *_, same = update(seed=3, train_seed=3)
    other_g0, other_n, other = update(seed=3, train_seed=4)
    assert np.array_equal(default, same)
    assert np.array_equal(g0, other_g0) and n == other_n  # the same start and data
    assert not np.allclose(default, other)
    with pytest.raises(ConfigError, match="train-seed"):
        RunConfig.of(train_seed=-2)
